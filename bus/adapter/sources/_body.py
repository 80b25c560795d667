"""Reading a webhook request's body into one record's fields (private to webhook.py).

JSON objects and HTML forms, in the charset the request declares, refused as soon as the body
passes its size limit; anything else becomes a :class:`Malformed` answer with a reason.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from bus import http
from bus.errors import BadRequestBody

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Malformed:
    """A body we could not turn into a record: answered ``status``, kept in the quarantine."""

    status: int
    reason: str
    message: str


class TooLarge(Exception):
    pass


async def read(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass ``limit`` (declared or streamed)."""
    try:
        return await http.read_body(request, limit)
    except BadRequestBody:  # too_large, its only refusal
        raise TooLarge from None


def decode(body: bytes, content_type: str) -> Mapping[str, Any] | Malformed:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in (JSON, FORM):
        return Malformed(
            415, "unsupported_media_type", f"send {JSON} or {FORM} (one record per request)"
        )
    charset = _charset(params)
    try:
        codecs.lookup(charset)
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return Malformed(400, "bad_encoding", f"the body is not valid text in charset {charset}")
    return parse_json(text) if media == JSON else parse_form(text)


def _charset(params: str) -> str:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or "utf-8"
    return "utf-8"


def parse_json(text: str) -> Mapping[str, Any] | Malformed:
    try:
        data = http.parse_json(text)
    except BadRequestBody as exc:  # not JSON, or deeper or longer than a record can be
        return Malformed(400, exc.reason, str(exc))
    if not isinstance(data, dict):
        return Malformed(
            400,
            "not_an_object",
            f"the JSON body must be an object of fields (one record), not a {type(data).__name__}",
        )
    return data


def parse_form(text: str) -> Mapping[str, Any] | Malformed:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        return Malformed(400, "bad_form", "the body is not a valid form (name=value&...)")
    data = dict(pairs)
    if len(data) != len(pairs):
        return Malformed(400, "repeated_field", "a form field appears more than once")
    return data


def kept_body(body: bytes, content_type: str) -> dict[str, str]:
    """A body that is not a record, as the quarantine keeps it: text if UTF-8, else hex."""
    try:
        return {"content_type": content_type, "body": body.decode(), "body_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"content_type": content_type, "body": body.hex(), "body_encoding": "hex"}
