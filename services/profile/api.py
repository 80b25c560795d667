"""The read-only HTTP API of the profile (Starlette), served while the service runs.

    POST /persons/by-nik  {"nik": "..."}   the profile of a NIK (in the body: out of URLs)
    GET /persons/by-nik/{nik}              the same, the NIK in the path (kept for existing
                                           clients; logged as profile_nik_in_url)
    GET /persons/by-account/{account_id}   the profile of the person a city account is linked to
    GET /access-records?limit=N            who looked up whom (roles with access_records)

Every request carries ``Authorization: Bearer <token>``. The token's role decides which
lookups it may make (else 403) and which sections it sees; an answer names the sections it
withheld. Malformed identifiers get 422 with the rule they break, never the value. Every
authenticated lookup leaves an access record (role, token fingerprint, time, the subject's
pseudonym, outcome, sections disclosed); logs carry neither the NIK nor the account id.

Each token may make ``burst`` requests at once and ``per_minute`` sustained
(:mod:`services.profile.ratelimit`, shared by the replicas); past that it gets 429 with
``Retry-After``, counted in ``simpul_profile_lookups_total`` and logged once per episode
(``profile_rate_limited``). Refusals (401, 403, 429) are logged with the client's address.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bus import BadRequestBody, StoreUnavailable, get_logger, parse_json, read_body
from schemas.common import NIK, AccountId
from services._common import bearer_token
from services.profile.metrics import LookupMetrics
from services.profile.policy import Caller, Tokens
from services.profile.ratelimit import RateLimit, Verdict

_log = get_logger("services.profile.api")
_NIK: TypeAdapter[str] = TypeAdapter(NIK)
_ACCOUNT: TypeAdapter[Any] = TypeAdapter(AccountId)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="simpul-profile"'}
MAX_RECORDS = 1000
MAX_BODY = 1024  # {"nik": "<16 digits>"} with room to spare


class Profile(Protocol):
    """What the API uses of the profile service (typed by use, so this module does not import
    the service that builds it)."""

    tokens: Tokens
    rate: RateLimit
    lookup_metrics: LookupMetrics

    async def person(self, nik: str) -> dict[str, Any] | None: ...

    async def by_account(self, account_id: str | uuid.UUID) -> dict[str, Any] | None: ...

    async def admit(self, caller: Caller) -> Verdict: ...

    async def record_access(
        self,
        caller: Caller,
        lookup: str,
        *,
        nik: str | None,
        outcome: int,
        sections: tuple[str, ...],
    ) -> None: ...

    async def access_records(self, limit: int = 100) -> list[dict[str, Any]]: ...


def build(profile: Profile) -> Starlette:
    """The API over ``profile``'s store, policy and tokens."""

    async def by_nik(request: Request) -> JSONResponse:
        # Every proxy and access log in between writes a URL down: the POST keeps it out.
        _log.info("profile_nik_in_url", client=_client(request))
        return await _lookup(profile, request, "by-nik", _NIK, _given(request.path_params["nik"]))

    async def by_nik_posted(request: Request) -> JSONResponse:
        return await _lookup(profile, request, "by-nik", _NIK, lambda: _posted_nik(request))

    async def by_account(request: Request) -> JSONResponse:
        value = request.path_params["account_id"]
        return await _lookup(profile, request, "by-account", _ACCOUNT, _given(value))

    async def access_records(request: Request) -> JSONResponse:
        lookup = "access-records"
        caller = await _admitted(profile, request, lookup)
        if isinstance(caller, JSONResponse):
            return caller
        counted = _Counted(profile, caller, lookup)
        if not caller.role.access_records:
            _log.info(
                "profile_lookup_forbidden",
                role=caller.role.name,
                lookup=lookup,
                client=_client(request),
            )
            role = caller.role.name
            return counted(_error(403, "forbidden", f"role {role} may not read access records"))
        limit = request.query_params.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_RECORDS:
            message = f"limit is a whole number 1-{MAX_RECORDS}"
            return counted(_error(422, "invalid-limit", message))
        try:
            records = await profile.access_records(int(limit))
        except StoreUnavailable:
            return counted(_unavailable(lookup))
        _log.info("profile_access_records_read", role=caller.role.name, records=len(records))
        return counted(JSONResponse({"records": records}))

    return Starlette(
        routes=[
            Route("/persons/by-nik", by_nik_posted, methods=["POST"]),
            Route("/persons/by-nik/{nik}", by_nik, methods=["GET"]),
            Route("/persons/by-account/{account_id}", by_account, methods=["GET"]),
            Route("/access-records", access_records, methods=["GET"]),
        ]
    )


Value = Callable[[], Awaitable["str | JSONResponse"]]


def _given(value: str) -> Value:
    async def given() -> str:
        return value

    return given


async def _posted_nik(request: Request) -> str | JSONResponse:
    """The NIK of a ``{"nik": "..."}`` body, or the answer refusing the body (never quoting it)."""
    try:
        body = parse_json(await read_body(request, MAX_BODY))
    except BadRequestBody as exc:
        status = 413 if exc.reason == "too_large" else 400
        return _error(status, f"bad-body-{exc.reason}".replace("_", "-"), str(exc))
    given = body.get("nik") if isinstance(body, dict) else None
    if not isinstance(given, str):
        return _error(422, "malformed-body", 'send {"nik": "<16 digits>"} as JSON')
    return given


async def _lookup(
    profile: Profile, request: Request, lookup: str, rule: TypeAdapter[Any], value: Value
) -> JSONResponse:
    caller = await _admitted(profile, request, lookup)
    if isinstance(caller, JSONResponse):
        return caller
    counted = _Counted(profile, caller, lookup)
    given: str | JSONResponse = ""  # a forbidden lookup is refused without reading its value
    if lookup not in caller.role.lookups:
        _log.info(
            "profile_lookup_forbidden",
            role=caller.role.name,
            lookup=lookup,
            client=_client(request),
        )
    else:
        given = await value()  # a body is read only once the caller may make the lookup
    if isinstance(given, JSONResponse):
        return counted(given)
    try:
        return counted(await _answer(profile, caller, lookup, rule, given))
    except StoreUnavailable:
        # No answer without its access record: nothing is disclosed while the store is down.
        return counted(_unavailable(lookup))


async def _admitted(profile: Profile, request: Request, lookup: str) -> Caller | JSONResponse:
    """The caller, if its token is valid and within its rate; else the answer refusing it."""
    caller = _authenticate(profile, request)
    if caller is None:
        profile.lookup_metrics.refused(lookup)
        return _unauthorized(lookup, _client(request))
    try:
        verdict = await profile.admit(caller)
    except StoreUnavailable:
        return _Counted(profile, caller, lookup)(_unavailable(lookup))
    if verdict.allowed:
        return caller
    if verdict.first_refusal:  # the metric counts every one; the log says when it began
        _log.warning(
            "profile_rate_limited",
            role=caller.role.name,
            token=caller.fingerprint,
            lookup=lookup,
            client=_client(request),
            retry_after_s=verdict.retry_after_s,
        )
    rate = profile.rate
    message = (
        f"this token may make {rate.burst} requests at once and {rate.per_minute:g} a minute; "
        f"retry in {verdict.retry_after_s} s"
    )
    headers = {"Retry-After": str(verdict.retry_after_s)}
    return _Counted(profile, caller, lookup)(_error(429, "rate-limited", message, headers))


class _Counted:
    """Counts an answer to ``caller`` in the lookup metrics and passes it on."""

    def __init__(self, profile: Profile, caller: Caller, lookup: str) -> None:
        self.metrics, self.caller, self.lookup = profile.lookup_metrics, caller, lookup

    def __call__(self, response: JSONResponse) -> JSONResponse:
        self.metrics.answered(self.caller, self.lookup, response.status_code)
        return response


def _client(request: Request) -> str:
    """The connecting address (a proxy's, behind one): not a resident's data, logged on refusals."""
    return request.client.host if request.client else "unknown"


async def _answer(
    profile: Profile, caller: Caller, lookup: str, rule: TypeAdapter[Any], value: str
) -> JSONResponse:
    role = caller.role
    if lookup not in role.lookups:
        await _record(profile, caller, lookup, outcome=403)
        return _error(403, "forbidden", f"role {role.name} may not look up persons {lookup}")
    try:
        key = str(rule.validate_python(value))
    except ValidationError as exc:
        await _record(profile, caller, lookup, outcome=422)
        return _error(422, f"malformed-{lookup[3:]}", _rule(exc))
    found = await (profile.person(key) if lookup == "by-nik" else profile.by_account(key))
    if found is None:
        nik = key if lookup == "by-nik" else None
        await _record(profile, caller, lookup, outcome=404, nik=nik)
        return _error(404, "not-found", "no profile for this identifier")
    await _record(profile, caller, lookup, outcome=200, nik=found["nik"], sections=role.sections)
    sections = {name: found["sections"][name] for name in role.sections}
    return JSONResponse({"nik": found["nik"], "sections": sections, "withheld": role.withheld()})


def _authenticate(profile: Profile, request: Request) -> Caller | None:
    token = bearer_token(request.headers)
    return None if token is None else profile.tokens.authenticate(token)


async def _record(
    profile: Profile,
    caller: Caller,
    lookup: str,
    *,
    outcome: int,
    nik: str | None = None,
    sections: tuple[str, ...] = (),
) -> None:
    await profile.record_access(caller, lookup, nik=nik, outcome=outcome, sections=sections)
    _log.info(
        "profile_lookup",
        role=caller.role.name,
        lookup=lookup,
        outcome=outcome,
        sections=len(sections),
    )


def _unauthorized(lookup: str, client: str) -> JSONResponse:
    _log.info("profile_lookup_unauthorized", lookup=lookup, client=client)
    body = {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}
    return JSONResponse(body, status_code=401, headers=_CHALLENGE)


def _unavailable(lookup: str) -> JSONResponse:
    _log.warning("profile_store_unavailable", lookup=lookup)
    return _error(503, "unavailable", "the profile store is unavailable; retry later")


def _error(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _rule(exc: ValidationError) -> str:
    """The rule the value broke, from our own validators' messages (which never quote it)."""
    message = str(exc.errors(include_input=False, include_url=False)[0]["msg"])
    return message.removeprefix("Value error, ")
