"""imgpipe.avatar_doc, the pure half of the processor: event ordering and the avatar.json document."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from imgpipe import avatar_doc, imaging


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E5", 0),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6", -1),
        ("0055AED6DCD90281F0", "0055AED6DCD90281E6", 1),
        # Different lengths: the shorter is right-padded with zeros before comparing.
        ("0055AED6DCD9028", "0055AED6DCD90280", 0),
        ("0055AED6DCD9028", "0055AED6DCD902801", -1),
        ("0055AED6DCD9029", "0055AED6DCD90280FF", 1),
        # Padding on the right, not the left: "1" means 0x10.., not 0x..01.
        ("1", "0F", 1),
        ("FF", "1000", 1),
        # Hex case does not matter.
        ("00abc", "00ABC", 0),
        # No stored sequencer: anything real is newer.
        ("00", None, 1),
        (None, None, 0),
    ],
)
def test_compare_sequencers(a: str | None, b: str | None, expected: int) -> None:
    assert avatar_doc.compare_sequencers(a, b) == expected
    assert avatar_doc.compare_sequencers(b, a) == -expected


def test_skip_reason_orders_events_against_the_stored_sequencer() -> None:
    doc = {"sequencer": "0066A4E39C2F8B1D27"}
    assert avatar_doc.skip_reason("0066A4E39C2F8B1D27", doc) == "duplicate"
    assert avatar_doc.skip_reason("0066A4E39C2F8B1D", doc) == "stale"
    assert avatar_doc.skip_reason("0066A4E39C2F8B1D28", doc) is None
    assert avatar_doc.skip_reason("0066A4E39C2F8B1E", doc) is None
    assert avatar_doc.skip_reason("00", None) is None


def _result() -> imaging.Result:
    big, small = imaging.Rendition(512, 512, "cover"), imaging.Rendition(128, 128, "contain")
    outputs = tuple(
        imaging.Output(
            rendition=rendition,
            format=fmt,
            extension=ext,
            content_type=ctype,
            width=rendition.width,
            height=rendition.height,
            data=b"x" * size,
        )
        for rendition, fmt, ext, ctype, size in [
            (big, "jpeg", "jpg", "image/jpeg", 100),
            (big, "webp", "webp", "image/webp", 80),
            (small, "jpeg", "jpg", "image/jpeg", 20),
        ]
    )
    return imaging.Result(
        outputs=outputs,
        version="0123456789abcdef",
        source_format="png",
        source_width=2000,
        source_height=1000,
        placeholder="data:image/jpeg;base64,AAAA",
    )


def test_avatar_section_lists_every_output_with_both_urls() -> None:
    avatar = avatar_doc.avatar_section("u1", _result())
    assert avatar["version"] == "0123456789abcdef"
    assert avatar["source"] == {"format": "png", "width": 2000, "height": 1000}
    assert avatar["placeholder"].startswith("data:")
    assert avatar["renditions"][0] == {
        "name": "512x512",
        "format": "jpeg",
        "contentType": "image/jpeg",
        "width": 512,
        "height": 512,
        "bytes": 100,
        "url": "avatars/u1/v/0123456789abcdef/512x512.jpg",
        "stableUrl": "avatars/u1/512x512.jpg",
    }
    assert [(r["stableUrl"], r["bytes"]) for r in avatar["renditions"][1:]] == [
        ("avatars/u1/512x512.webp", 80),
        ("avatars/u1/128x128.jpg", 20),
    ]


def test_ready_doc_has_the_contract_shape_and_is_json() -> None:
    avatar = avatar_doc.avatar_section("u1", _result())
    doc = avatar_doc.ready_doc(
        user="u1", upload_id="up-1", sequencer="0A", avatar=avatar, at="2026-11-28T15:00:00Z"
    )
    assert json.loads(json.dumps(doc)) == doc
    assert doc == {
        "schema": 1,
        "user": "u1",
        "latest": {
            "uploadId": "up-1",
            "state": "ready",
            "reason": None,
            "message": None,
            "at": "2026-11-28T15:00:00Z",
            "originalVersionId": None,
        },
        "avatar": avatar,
        "sequencer": "0A",
    }


def test_rejected_doc_keeps_the_previous_avatar() -> None:
    avatar = avatar_doc.avatar_section("u1", _result())
    previous = avatar_doc.ready_doc(user="u1", upload_id="up-1", sequencer="0A", avatar=avatar, at="t0")
    doc = avatar_doc.rejected_doc(
        previous,
        user="u1",
        upload_id="up-2",
        sequencer="0B",
        reason="not_an_image",
        message="This file is not an image.",
        at="t1",
    )
    assert doc["avatar"] == avatar
    assert doc["sequencer"] == "0B"
    assert doc["latest"] == {
        "uploadId": "up-2",
        "state": "rejected",
        "reason": "not_an_image",
        "message": "This file is not an image.",
        "at": "t1",
        "originalVersionId": None,
    }


def test_rejected_first_upload_has_no_avatar() -> None:
    doc = avatar_doc.rejected_doc(
        None, user="u1", upload_id=None, sequencer="01", reason="truncated", message="m", at="t"
    )
    assert doc["avatar"] is None
    assert doc["latest"]["state"] == "rejected"


def test_too_big_message_is_readable() -> None:
    assert avatar_doc.too_big_message(12_582_912, 10_485_760) == (
        "The file is 12,582,912 bytes; the largest accepted upload is 10,485,760 bytes."
    )


def test_utc_now_is_iso_utc() -> None:
    assert avatar_doc.utc_now().endswith("Z")
    assert "T" in avatar_doc.utc_now()


def test_a_replay_is_another_stored_version_of_the_upload_id_avatar_json_reports_on() -> None:
    doc = avatar_doc.ready_doc(
        user="u1", upload_id="up-1", sequencer="0A", avatar={}, at="t", original_version="v1"
    )
    assert avatar_doc.is_replay(doc, upload_id="up-1", original_version="v2")
    # the very version avatar.json came from (an event delivered again under a newer sequencer)
    assert not avatar_doc.is_replay(doc, upload_id="up-1", original_version="v1")
    # another upload, or nothing to compare with
    assert not avatar_doc.is_replay(doc, upload_id="up-2", original_version="v2")
    assert not avatar_doc.is_replay(doc, upload_id=None, original_version="v2")
    assert not avatar_doc.is_replay(doc, upload_id="up-1", original_version=None)
    assert not avatar_doc.is_replay(None, upload_id="up-1", original_version="v2")
    older = {**doc, "latest": {**doc["latest"], "originalVersionId": None}}  # written before the field
    assert not avatar_doc.is_replay(older, upload_id="up-1", original_version="v2")


def test_a_rerender_applies_on_the_same_sequencer_but_not_on_a_newer_one() -> None:
    doc = {"sequencer": "0066A4E39C2F8B1D27"}
    assert avatar_doc.skip_reason("0066A4E39C2F8B1D27", doc, rerender=True) is None
    assert avatar_doc.skip_reason("0066A4E39C2F8B1D", doc, rerender=True) == "stale"


def test_stale_copies_are_those_not_holding_the_avatars_version() -> None:
    avatar = avatar_doc.avatar_section("u1", _result())
    held = {
        "avatars/u1/512x512.jpg": "0123456789abcdef",
        "avatars/u1/512x512.webp": "fedcba9876543210",
        # 128x128.jpg: missing
    }
    stale = avatar_doc.stale_copies(avatar, held)
    assert [(c.stable_key, c.versioned_key, c.content_type) for c in stale] == [
        ("avatars/u1/512x512.webp", "avatars/u1/v/0123456789abcdef/512x512.webp", "image/webp"),
        ("avatars/u1/128x128.jpg", "avatars/u1/v/0123456789abcdef/128x128.jpg", "image/jpeg"),
    ]


def test_shown_version_is_the_avatar_a_doc_shows_whatever_its_latest_state() -> None:
    avatar = avatar_doc.avatar_section("u1", _result())
    ready = avatar_doc.ready_doc(user="u1", upload_id="a", sequencer="0A", avatar=avatar, at="t")
    rejected = avatar_doc.rejected_doc(
        ready, user="u1", upload_id="b", sequencer="0B", reason="empty", message="m", at="t"
    )
    assert avatar_doc.shown_version(ready) == avatar_doc.shown_version(rejected) == "0123456789abcdef"
    assert avatar_doc.shown_version(None) is None
    assert (
        avatar_doc.shown_version(
            avatar_doc.rejected_doc(
                None, user="u1", upload_id="b", sequencer="0B", reason="empty", message="m", at="t"
            )
        )
        is None
    )


def test_renditions_expire_unless_kept_or_young() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    old, young = now - timedelta(hours=2), now - timedelta(seconds=5)

    def stored(
        version: str, when: datetime, names: tuple[str, ...] = ("a.jpg", "a.webp")
    ) -> list[avatar_doc.StoredObject]:
        return [avatar_doc.StoredObject(f"avatars/u1/v/{version}/{name}", when) for name in names]

    objects = [
        *stored("current", old),
        *stored("previous", old),
        *stored("replaced", old),
        *stored("in-flight", young),
        # one young object keeps its whole version (its other renditions may be older)
        avatar_doc.StoredObject("avatars/u1/v/mixed/a.jpg", old),
        avatar_doc.StoredObject("avatars/u1/v/mixed/a.webp", young),
        # never touched: not a versioned rendition of this user
        avatar_doc.StoredObject("avatars/u1/a.jpg", old),
        avatar_doc.StoredObject("avatars/u2/v/replaced/a.jpg", old),
    ]

    expired = avatar_doc.renditions_to_expire(
        "u1", objects, keep={"current", "previous", None}, written_before=now - timedelta(minutes=15)
    )

    assert expired == ["avatars/u1/v/replaced/a.jpg", "avatars/u1/v/replaced/a.webp"]
