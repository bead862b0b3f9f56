from dataclasses import dataclass

import pytest

from imgpipe.settings import SettingsError, env, load


@dataclass(frozen=True)
class Example:
    bucket: str = env("BUCKET")
    limit: int = env("LIMIT", 10)
    debug: bool = env("DEBUG", False)
    formats: tuple[str, ...] = env("FORMATS", ("jpeg",))


def test_required_variable_missing_fails_with_its_name():
    with pytest.raises(SettingsError, match="BUCKET"):
        load(Example, {})


def test_empty_string_counts_as_unset():
    with pytest.raises(SettingsError, match="BUCKET"):
        load(Example, {"BUCKET": ""})
    assert load(Example, {"BUCKET": "b", "LIMIT": ""}).limit == 10


def test_values_are_converted_to_the_declared_types():
    settings = load(Example, {"BUCKET": "b", "LIMIT": "42", "DEBUG": "true", "FORMATS": "jpeg, webp,"})
    assert settings == Example(bucket="b", limit=42, debug=True, formats=("jpeg", "webp"))


@pytest.mark.parametrize(("name", "raw"), [("LIMIT", "ten"), ("DEBUG", "maybe")])
def test_malformed_values_fail_naming_the_variable(name, raw):
    with pytest.raises(SettingsError, match=name):
        load(Example, {"BUCKET": "b", name: raw})
