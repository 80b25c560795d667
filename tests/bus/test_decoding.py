"""bus.decoding: Redis replies as text, one rule (malformed bytes never crash a reader)."""

from bus.decoding import text, texts


def test_text_decodes_bytes_and_replaces_what_is_not_utf8() -> None:
    assert text(b"dukcapil") == "dukcapil"
    assert text(b"ab\xffc") == "ab\ufffdc"
    assert text(None) == ""
    assert text(7) == "7"


def test_texts_decodes_keys_and_values() -> None:
    assert texts({b"id": b"e1", b"data": b"\xff"}) == {"id": "e1", "data": "\ufffd"}
