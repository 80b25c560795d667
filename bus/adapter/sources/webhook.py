"""An HTTP webhook the legacy application POSTs its records to, one record per request.

The push counterpart of :mod:`bus.adapter.sources.sql`: the same :class:`bus.adapter.Record`,
the same mapper and the same :func:`bus.adapter.map_to_envelope`, so a record gets the event
id it would get from any other source kind, (source URN, source name, record key, record version).

What the answer means, and what the legacy app should do with it:

* **201** the event is new, **200** it was published before (a replay): either way it is durably
  in Redis, because we answer only after the publish returned. Mark the record sent.
* **422** the record did not map or fails its contract, **409** it reuses the key and version of
  a published record with a different payload, **400** the body is malformed (bad JSON, not an
  object, nested too deep or a number too long for :func:`bus.http.parse_json`, bad form
  encoding), **415** the content type is neither JSON nor a form: the body is
  in the adapter's quarantine with the reasons (``simpul quarantine list``), so nothing is lost;
  sending it again gives the same answer. Fix the record (a new version) rather than retry.
* **413** the body is larger than ``max_body`` (answered from Content-Length before reading it,
  or as soon as a streamed body passes the limit) and **401** a missing or wrong bearer token:
  nothing is kept, so the legacy app must keep the record and alert its operator.
* **503** with ``Retry-After``: Redis is unreachable and nothing was kept. Retry with backoff.

Logs (stable names, no payloads, no personal data): ``webhook_received``, ``webhook_published``,
``webhook_rejected`` (status, reason and the names of the failed fields; for a refused token the
client's address), ``webhook_unavailable``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, TypeAlias

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus import keys
from bus.adapter.quarantine import Quarantine
from bus.adapter.records import Mapper, Problem, Record, Rejected, map_to_envelope, record_event_id
from bus.adapter.sources._body import Malformed, TooLarge, decode, kept_body, read
from bus.connection import TRANSIENT
from bus.devmaterial import refuse_dev_token
from bus.envelope import Envelope
from bus.errors import ConfigurationError, RedisUnavailable
from bus.http import running, serve
from bus.logging import get_logger
from bus.privacy import mask_text
from bus.publisher import Published, Publisher

__all__ = ["MAX_BODY", "FieldSpec", "Webhook", "running", "serve", "webhook_app"]

MAX_BODY = 64 * 1024
FieldSpec: TypeAlias = str | Sequence[str] | Callable[[Mapping[str, Any]], object]
"""Where a record's key or version is: a field name, several (joined by ``/``), or a callable."""

_log = get_logger("bus.adapter.sources.webhook")


class Webhook:
    """One legacy app's webhook: receives, maps, publishes (or quarantines), then answers.

    ``name`` names the quarantine (like :class:`bus.adapter.Adapter`'s name); ``source_name``
    names the record set inside the legacy system and is part of every event id. ``time`` names
    a field with an ISO 8601 timestamp of the fact (naive ones are in ``naive_timezone``).
    """

    def __init__(
        self,
        name: str,
        *,
        source_name: str,
        mapper: Mapper,
        publisher: Publisher,
        quarantine: Quarantine,
        key: FieldSpec,
        version: FieldSpec,
        time: str | None = None,
        naive_timezone: tzinfo = UTC,
        max_body: int = MAX_BODY,
        token: str | None = None,
        retry_after: int = 5,
    ) -> None:
        if not 1 <= max_body <= 16 * 1024 * 1024:
            raise ConfigurationError(f"max_body must be 1 byte to 16 MiB, got {max_body}")
        if token is not None and len(token) < 16:
            raise ConfigurationError("a webhook token must be at least 16 characters")
        refuse_dev_token(token, f"the token of webhook {name}")
        self.name = name
        self.source_name = source_name
        self.mapper = mapper
        self.publisher = publisher
        self.quarantine = quarantine
        self.max_body = max_body
        self.retry_after = retry_after
        self._key = _extractor(key)
        self._version = _extractor(version)
        self._time_field = time
        self._naive_timezone = naive_timezone
        self._token = token.encode() if token is not None else None

    @property
    def open(self) -> bool:
        """Whether it takes records without a token (from anyone who reaches it)."""
        return self._token is None

    def app(self, *, path: str = "/") -> Starlette:
        """The ASGI app: ``POST <path>`` receives records, ``GET /healthz`` checks Redis."""
        return Starlette(
            routes=[
                Route(path, self.receive, methods=["POST"]),
                Route("/healthz", self.health, methods=["GET"]),
            ]
        )

    async def receive(self, request: Request) -> Response:
        if not self._authorised(request):
            message = "send the header Authorization: Bearer <token> with this webhook's token"
            client = request.client.host if request.client else "unknown"
            headers = {"WWW-Authenticate": "Bearer"}
            return self._refuse(401, "unauthorised", message, headers, client=client)
        try:
            body = await read(request, self.max_body)
        except TooLarge:
            return self._refuse(
                413,
                "too_large",
                f"the body must be at most {self.max_body} bytes; send one record per request",
            )
        except ClientDisconnect:
            return self._refuse(400, "disconnected", "the client went away mid-body")
        content_type = request.headers.get("content-type", "")
        _log.debug(
            "webhook_received", adapter=self.name, bytes=len(body), content_type=content_type[:100]
        )
        try:
            return await self._handle(body, content_type)
        except (RedisUnavailable, *TRANSIENT) as exc:
            _log.warning("webhook_unavailable", adapter=self.name, error=type(exc).__name__)
            return _unavailable(self.retry_after, "Redis is unreachable: nothing was kept")

    async def health(self, _: Request) -> Response:
        try:
            await self.publisher.redis.ping()
        except (RedisUnavailable, *TRANSIENT):
            return _unavailable(self.retry_after, "Redis is unreachable")
        return JSONResponse({"status": "ok", "adapter": self.name})

    async def _handle(self, body: bytes, content_type: str) -> Response:
        decoded = decode(body, content_type)
        if isinstance(decoded, Malformed):
            record = Record("", "", None, kept_body(body, content_type))
            await self._keep(record, [Problem("(body)", decoded.message)])
            return self._refuse(decoded.status, decoded.reason, decoded.message, quarantined=True)
        record = self._record(decoded)
        outcome = map_to_envelope(self.publisher, self.mapper, self.source_name, record)
        if outcome is None:  # the mapper says this record is no event: nothing to retry
            return JSONResponse({"event_id": None, "skipped": True}, status_code=200)
        if isinstance(outcome, Envelope):
            return await self._publish(record, outcome)
        return await self._reject(record, outcome, 422, "unmappable")

    async def _publish(self, record: Record, envelope: Envelope) -> Response:
        published = await self.publisher.publish(envelope)
        if published.duplicate and not await self._same_payload(published, envelope):
            return await self._reject(record, [_CONFLICT], 409, "conflict")
        if not published.duplicate and self.publisher.intake is not None:
            await self._remember_payload(published, envelope)
        _log.info(
            "webhook_published",
            adapter=self.name,
            record_key=mask_text(record.key),  # a legacy key may be a NIK
            record_version=record.version,
            event_id=published.event_id,
            type=envelope.type,
            duplicate=published.duplicate,
        )
        reply = {
            "event_id": published.event_id,
            "type": envelope.type,
            "duplicate": published.duplicate,
        }
        return JSONResponse(reply, status_code=200 if published.duplicate else 201)

    async def _same_payload(self, published: Published, envelope: Envelope) -> bool:
        """A replay is the same fact; the same key and version with other data is not."""
        redis = self.publisher.redis
        found: Any = await redis.xrange(published.stream, published.entry_id, published.entry_id)
        if found:
            return bool(found[0][1].get(b"data") == envelope.data.encode())
        if self.publisher.intake is not None:  # the router trimmed what it admitted
            digest = await redis.get(_payload_key(published))
            if digest is not None:
                return bool(digest == _digest(envelope))
        return True  # trimmed by retention, or its digest never written: nothing to compare

    async def _remember_payload(self, published: Published, envelope: Envelope) -> None:
        """On an intake the router trims an event within seconds of admitting it: the digest
        of its data, kept beside the dedupe marker as long as the marker, is what a resend
        under the same key and version is compared with."""
        ttl_ms = int(self.publisher.dedupe_ttl.total_seconds() * 1000)
        await self.publisher.redis.set(_payload_key(published), _digest(envelope), px=ttl_ms)

    async def _reject(
        self, record: Record, problems: Sequence[Problem], status: int, reason: str
    ) -> Response:
        await self._keep(record, problems)
        _log.info(
            "webhook_rejected",
            adapter=self.name,
            status=status,
            reason=reason,
            record_key=mask_text(record.key),  # a legacy key may be a NIK
            record_version=record.version,
            fields=[p.field for p in problems],
            quarantined=True,
        )
        answer = {
            "error": "the record was not published; it is in the quarantine with these problems",
            "problems": [{"field": p.field, "problem": mask_text(p.problem)} for p in problems],
            "quarantined": True,
        }
        return JSONResponse(answer, status_code=status)

    async def _keep(self, record: Record, problems: Sequence[Problem]) -> None:
        """Quarantine before answering: a 4xx promises the body is kept."""
        id = record_event_id(self.publisher.source, self.source_name, record)
        rejected = Rejected(self.source_name, id, record, tuple(problems))
        await self.quarantine.add([rejected])

    def _refuse(
        self,
        status: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        quarantined: bool = False,
        client: str | None = None,
    ) -> Response:
        named = {"client": client} if client is not None else {}  # a refused token: who tried
        _log.info(
            "webhook_rejected",
            adapter=self.name,
            status=status,
            reason=reason,
            quarantined=quarantined,
            **named,
        )
        body = {"error": message, "quarantined": quarantined}
        return JSONResponse(body, status_code=status, headers=headers)

    def _authorised(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token
        )

    def _record(self, data: Mapping[str, Any]) -> Record:
        return Record(self._key(data), self._version(data), None, data, self._time(data))

    def _time(self, data: Mapping[str, Any]) -> datetime | None:
        value = data.get(self._time_field) if self._time_field else None
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None  # the event is stamped when published instead
        return moment if moment.tzinfo else moment.replace(tzinfo=self._naive_timezone)


def webhook_app(
    *,
    adapter_name: str,
    source_name: str,
    mapper: Mapper,
    publisher: Publisher,
    quarantine: Quarantine,
    key: FieldSpec,
    version: FieldSpec,
    path: str = "/",
    **options: Any,
) -> Starlette:
    """The ASGI app of a :class:`Webhook` (``options``: time, max_body, token, ...)."""
    webhook = Webhook(
        adapter_name,
        source_name=source_name,
        mapper=mapper,
        publisher=publisher,
        quarantine=quarantine,
        key=key,
        version=version,
        **options,
    )
    return webhook.app(path=path)


def _extractor(spec: FieldSpec) -> Callable[[Mapping[str, Any]], str]:
    if callable(spec):
        return lambda data: _called(spec, data)
    names = (spec,) if isinstance(spec, str) else tuple(spec)
    if not names:
        raise ConfigurationError("a webhook key or version needs at least one field name")
    return lambda data: _joined(data, names)


def _called(spec: Callable[[Mapping[str, Any]], object], data: Mapping[str, Any]) -> str:
    try:
        value = spec(data)
    except (KeyError, ValueError, TypeError, AttributeError):
        return ""  # no key or version: map_to_envelope quarantines the record
    return "" if value is None else str(value)


def _joined(data: Mapping[str, Any], names: Sequence[str]) -> str:
    parts = [data.get(name) for name in names]
    if any(part is None or isinstance(part, dict | list) or str(part) == "" for part in parts):
        return ""  # a partial key would name another record
    return "/".join(str(part) for part in parts)


def _unavailable(retry_after: int, message: str) -> Response:
    body = {"error": f"{message}; retry later", "quarantined": False}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after)})


_CONFLICT = Problem(
    "(record)",
    "a record with the same key and version was published with a different payload: bump the "
    "record's version in the legacy application for a correction, then send it again",
)


def _payload_key(published: Published) -> str:
    """``<intake>:seen:<id>:data``: beside the producer's dedupe marker (the same grant)."""
    return f"{keys.seen(published.stream, published.event_id)}:data"


def _digest(envelope: Envelope) -> bytes:
    return hashlib.sha256(envelope.data.encode()).hexdigest().encode()
