"""The in-app inbox over HTTP, for the city super-app (its backend, not the citizens' phones).

    GET    /accounts/{account_id}/inbox?limit=50     the newest notices first (200)
    PUT    /accounts/{account_id}/contact            {"email": "..."}: set the address (204)
    DELETE /accounts/{account_id}/contact            forget the address (204)
    Authorization: Bearer <SIMPUL_NOTIFIER_TOKEN>

401 without the right token; 400 for an account id that is not a UUID, or a body nested deeper
than 32 levels or with a number of more than 64 digits (:func:`bus.parse_json`); 413 for a body
over 4 KiB (refused before it is read whole); 422 for a body that is not ``{"email": "..."}``
or an address the notifier will not send to; 503 when no token is configured (nothing is
served then), or when the store is unavailable (retry: nothing was changed). An unknown account
has an empty inbox: the answer does not say whether an account exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus import BadRequestBody, StoreUnavailable, get_logger, parse_json, read_body
from services._common import bearer_token, same_token
from services.notifier.mail import InvalidAddress

MAX_LIMIT = 200
MAX_BODY = 4 * 1024  # a contact is one address of at most 254 characters
_log = get_logger("services.notifier")


class Item(Protocol):
    """A notice as the inbox serves it."""

    def as_json(self) -> dict[str, str]: ...


class Inbox(Protocol):
    """What the API reads and writes: the notifier service (typed by use, so this module does
    not import the service that mounts it)."""

    async def inbox(self, account_id: str | uuid.UUID, *, limit: int = 50) -> Sequence[Item]: ...

    async def set_contact(self, account_id: str | uuid.UUID, email: str | None) -> None: ...


def inbox_app(notifier: Inbox, token: str | None) -> Starlette:
    """The ASGI app serving ``notifier``'s inbox to holders of ``token``."""
    secret = token.encode() if token is not None else None

    def refused(request: Request) -> Response | None:
        if secret is None:
            _log.warning("api_refused", status=503, reason="no_token_configured")
            return JSONResponse(
                {"error": "the notifier API is disabled: set SIMPUL_NOTIFIER_TOKEN"},
                status_code=503,
            )
        given = bearer_token(request.headers)
        if given is None or not same_token(given, secret):
            client = request.client.host if request.client else "unknown"
            _log.info("api_refused", status=401, reason="unauthorised", client=client)
            return JSONResponse(
                {"error": "send the header Authorization: Bearer <token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    async def inbox(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return JSONResponse({"error": f"limit is 1 to {MAX_LIMIT}"}, status_code=400)
        try:
            items = await notifier.inbox(request.path_params["account_id"], limit=int(raw_limit))
        except ValueError:
            return JSONResponse({"error": "an account id is a UUID"}, status_code=400)
        except StoreUnavailable:
            return _unavailable()
        _log.info("inbox_read", items=len(items))
        return JSONResponse({"items": [item.as_json() for item in items]})

    async def contact(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        email: str | None = None
        if request.method == "PUT":
            given = await _email_of(request)
            if isinstance(given, Response):
                return given
            email = given
        try:
            await notifier.set_contact(request.path_params["account_id"], email)
        except InvalidAddress as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except ValueError:
            return JSONResponse({"error": "an account id is a UUID"}, status_code=400)
        except StoreUnavailable:
            return _unavailable()
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/accounts/{account_id}/inbox", inbox, methods=["GET"]),
            Route("/accounts/{account_id}/contact", contact, methods=["PUT", "DELETE"]),
        ]
    )


async def _email_of(request: Request) -> str | Response:
    """The address of a ``{"email": "..."}`` body, or the answer refusing the body."""
    try:
        body = parse_json(await read_body(request, MAX_BODY))
    except BadRequestBody as exc:
        if exc.reason == "too_large":
            return JSONResponse({"error": str(exc)}, status_code=413)
        if exc.reason != "bad_json":  # nested or numbered past what a request can be
            return JSONResponse({"error": str(exc)}, status_code=400)
        body = None
    given = body.get("email") if isinstance(body, dict) else None
    if not isinstance(given, str):
        return JSONResponse({"error": 'send {"email": "<address>"}'}, status_code=422)
    return given


def _unavailable() -> Response:
    """The store is down, or a write kept conflicting with concurrent ones: worth a retry."""
    _log.warning("api_refused", status=503, reason="store_unavailable")
    return JSONResponse(
        {"error": "the notifier's store is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )
