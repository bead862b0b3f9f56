"""imgpipe.avatar_doc, the pure half of the processor: event ordering and the avatar.json document."""

from __future__ import annotations

import json

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
def test_compare_sequencers(a, b, expected):
    assert avatar_doc.compare_sequencers(a, b) == expected
    assert avatar_doc.compare_sequencers(b, a) == -expected


def test_skip_reason_orders_events_against_the_stored_sequencer():
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


def test_avatar_section_lists_every_output_with_both_urls():
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


def test_ready_doc_has_the_contract_shape_and_is_json():
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


def test_rejected_doc_keeps_the_previous_avatar():
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


def test_rejected_first_upload_has_no_avatar():
    doc = avatar_doc.rejected_doc(
        None, user="u1", upload_id=None, sequencer="01", reason="truncated", message="m", at="t"
    )
    assert doc["avatar"] is None
    assert doc["latest"]["state"] == "rejected"


def test_too_big_message_is_readable():
    assert avatar_doc.too_big_message(12_582_912, 10_485_760) == (
        "The file is 12,582,912 bytes; the largest accepted upload is 10,485,760 bytes."
    )


def test_utc_now_is_iso_utc():
    assert avatar_doc.utc_now().endswith("Z")
    assert "T" in avatar_doc.utc_now()
