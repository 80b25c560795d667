"""``simpul keys ...``: the Ed25519 keys producers sign events with (bus.signing).

* ``generate`` — a new key pair: the private key file (0600) for the producer, the public key
  and the snippet for its principal's ``keys:`` in the topology (deploy/topology.yaml).
* ``show`` — the key id, public key and fingerprint of a private key file, or the keys of a
  keyring (or topology) file with whether each is valid now.
* ``rotate`` — the next key of a producer, the validity windows of the overlap, and the steps.

Exit codes: 0 done, 2 bad usage (unreadable key, existing file, bad option).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field
from rich.console import Console
from rich.table import Column, Table

from bus.cli.common import AsJson, fail
from bus.devmaterial import is_dev_key
from bus.envelope import format_time
from bus.errors import ConfigurationError, SimpulError
from bus.signing import (
    DEFAULT_MAX_AGE,
    KeyRing,
    PublicSigningKey,
    Signer,
    SignerSettings,
    check_key_id,
    fingerprint,
    load_keyring_file,
)


class KeySettings(SignerSettings):
    """The signing variables and ``SIMPUL_KEYRING_FILE``: what `simpul keys show` shows when
    given no file."""

    keyring_file: str | None = Field(default=None, validation_alias="SIMPUL_KEYRING_FILE")


keys_app = typer.Typer(
    help="Signing keys: generate, show, rotate (producers sign every event; services verify).",
    no_args_is_help=True,
)
_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True)
TOPOLOGY = "deploy/topology.yaml"

Principal = Annotated[
    str | None,
    typer.Option(help="the producer's principal, named in the snippet (e.g. adapter-dukcapil)"),
]


@keys_app.command()
def generate(
    *,
    key_id: Annotated[
        str, typer.Option("--id", help="the new key's id, e.g. dukcapil-siak-2026-12")
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for KEY_ID.key and KEY_ID.pub")],
    principal: Principal = None,
    not_before: Annotated[
        str | None, typer.Option(help="RFC 3339 time the key becomes valid (default: now)")
    ] = None,
    not_after: Annotated[
        str | None, typer.Option(help="RFC 3339 time the key expires (default: never)")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Generate a key pair: OUT/KEY_ID.key (private, 0600) and OUT/KEY_ID.pub (public).

    Give the private key file to the producer only (SIMPUL_SIGNING_KEY_FILE); add the printed
    snippet to its principal's keys in the topology, which every consuming service trusts.
    """
    try:
        begins = _time("--not-before", not_before) or _now()
        ends = _time("--not-after", not_after)
        if ends is not None and ends <= begins:
            raise ConfigurationError("--not-after must be later than --not-before")
        signer, files = _new_key(key_id, out)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    entry = _entry(signer, begins, ends)
    text = snippet([entry], principal)
    if as_json:
        _out.print_json(
            json.dumps(
                {
                    "key_id": signer.key_id,
                    "public_key": _b64(signer.public_key),
                    "fingerprint": fingerprint(signer.public_key),
                    "key_file": str(files[0]),
                    "public_key_file": str(files[1]),
                    "entry": _jsonable(entry),
                    "snippet": text,
                }
            )
        )
        return
    _say(
        f"wrote {files[0]} (private key, 0600: give it to this producer only, never commit it)",
        f"wrote {files[1]} (public key)",
        f"key id       {signer.key_id}",
        f"public key   {_b64(signer.public_key)}",
        f"fingerprint  {fingerprint(signer.public_key)}",
        f"producer     SIMPUL_SIGNING_KEY_FILE={files[0]} SIMPUL_SIGNER={signer.key_id}",
        "",
        text,
    )


@keys_app.command()
def show(
    key_file: Annotated[
        Path | None,
        typer.Argument(help="a private key file (default: $SIMPUL_SIGNING_KEY_FILE)"),
    ] = None,
    *,
    key_id: Annotated[
        str | None, typer.Option("--id", help="its key id (default: $SIMPUL_SIGNER, or the name)")
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option(help="list the keys of a keyring or topology file instead"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show a private key file's key id, public key and fingerprint (never the private key),
    or the keys of a keyring (default: $SIMPUL_KEYRING_FILE) and whether each is valid now."""
    try:
        env = KeySettings.load()
        if keyring is None and key_file is None and not env.key_file:
            ring_file = env.keyring_file
            if ring_file is None:
                raise ConfigurationError(
                    "which key? give a key file, --keyring FILE, or set SIMPUL_SIGNING_KEY_FILE "
                    "or SIMPUL_KEYRING_FILE"
                )
            keyring = Path(ring_file)
        if keyring is not None:
            _show_keyring(keyring, as_json)
            return
        path = key_file or Path(env.key_file or "")
        signer = Signer.from_file(path, key_id or env.signer)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    mode = path.stat().st_mode & 0o777
    facts = {
        "key_id": signer.key_id,
        "public_key": _b64(signer.public_key),
        "fingerprint": fingerprint(signer.public_key),
        "key_file": str(path),
        "mode": oct(mode),
        "development": is_dev_key(signer.public_key),
    }
    if as_json:
        _out.print_json(json.dumps(facts))
        return
    _say(*(f"{name.replace('_', ' '):<12} {value}" for name, value in facts.items()))
    if mode & 0o077:
        _err.print(f"[yellow]warning:[/yellow] {path} is readable by others: chmod 600 it")
    if facts["development"]:
        _err.print(_DEV_WARNING.format(what=signer.key_id))


@keys_app.command()
def rotate(
    *,
    current: Annotated[
        Path, typer.Option("--current", help="the producer's current private key file")
    ],
    key_id: Annotated[str, typer.Option("--id", help="the next key's id")],
    out: Annotated[Path, typer.Option("--out", help="folder for the next key's files")],
    keyring: Annotated[
        Path | None,
        typer.Option(help="keyring or topology file holding the current key (its not_before)"),
    ] = None,
    current_id: Annotated[
        str | None, typer.Option(help="the current key's id (default: its file name)")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="RFC 3339 time the next key becomes valid (default: now)")
    ] = None,
    overlap_days: Annotated[
        float, typer.Option(min=0.0, help="days both keys are valid: time to switch the producer")
    ] = 7.0,
    lifetime_days: Annotated[
        float, typer.Option(min=0.0, help="days the next key is valid (0: no end)")
    ] = 365.0,
    principal: Principal = None,
    as_json: AsJson = False,
) -> None:
    """Generate a producer's next key, with the validity windows of the overlap.

    The next key is valid from START (for LIFETIME days); the current key's not_after becomes
    START + OVERLAP: what it signs after that is refused (signer_expired). Prints the
    principal's keys as they should be, and the steps in order.
    """
    try:
        old = Signer.from_file(current, current_id)
        check_key_id(key_id)
        if key_id == old.key_id:
            raise ConfigurationError("the next key needs a new id (e.g. with the month in it)")
        known = _known(keyring, old) if keyring is not None else None
        begins = _time("--start", start) or _now()
        ends = begins + timedelta(days=lifetime_days) if lifetime_days else None
        retired = begins + timedelta(days=overlap_days)
        signer, files = _new_key(key_id, out)
    except SimpulError as exc:
        raise fail(_err, exc) from None
    since = _aware(known.not_before) if known and known.not_before else None
    entries = [_entry(old, since, retired), _entry(signer, begins, ends)]
    if known is None:
        entries[0]["note"] = "keep its not_before, if it has one (--keyring reads it)"
    who = principal or (known.principal if known else None)
    text = snippet(entries, who)
    steps = _rotation_steps(old.key_id, signer.key_id, files[0], begins, retired)
    if as_json:
        _out.print_json(
            json.dumps(
                {
                    "key_file": str(files[0]),
                    "public_key_file": str(files[1]),
                    "current": _jsonable(entries[0]),
                    "next": _jsonable(entries[1]),
                    "snippet": text,
                    "steps": steps,
                }
            )
        )
        return
    _say(
        f"wrote {files[0]} (private key, 0600) and {files[1]}",
        f"key id       {signer.key_id}",
        f"public key   {_b64(signer.public_key)}",
        f"fingerprint  {fingerprint(signer.public_key)}",
        "",
        text,
        "Steps:",
        *(f"{number}. {step}" for number, step in enumerate(steps, 1)),
    )


# -- helpers ------------------------------------------------------------------------------------


def snippet(entries: Iterable[dict[str, Any]], principal: str | None = None) -> str:
    """The principal's ``keys:`` for the topology, indented as in deploy/topology.yaml."""
    where = f"the principal {principal}" if principal else "the producer's principal"
    lines = [
        f"# {TOPOLOGY}, under {where} (in producers: or services:),",
        "# which may sign the types it publishes:",
        "    keys:",
    ]
    for entry in entries:
        lines.append(f"      - id: {json.dumps(entry['id'])}")
        for name in ("public_key", "not_before", "not_after"):
            value = entry.get(name)
            if value is not None:
                shown = format_time(value) if isinstance(value, datetime) else value
                lines.append(f"        {name}: {json.dumps(shown)}")
        if entry.get("note"):
            lines.append(f"        # {entry['note']}")
    return "\n".join(lines) + "\n"


def _entry(
    signer: Signer, not_before: datetime | None, not_after: datetime | None
) -> dict[str, Any]:
    return {
        "id": signer.key_id,
        "public_key": _b64(signer.public_key),
        "not_before": not_before,
        "not_after": not_after,
    }


def _new_key(key_id: str, out: Path) -> tuple[Signer, tuple[Path, Path]]:
    check_key_id(key_id)
    private, public = out / f"{key_id}.key", out / f"{key_id}.pub"
    for file in (private, public):
        if file.exists():
            raise ConfigurationError(f"{file} exists: not overwriting a key")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create {out}: {exc.strerror}") from None
    signer = Signer.generate(key_id)
    signer.write(private)
    public.write_text(_b64(signer.public_key) + "\n", encoding="ascii")
    return signer, (private, public)


def _show_keyring(path: Path, as_json: bool) -> None:
    ring = KeyRing(load_keyring_file(path))
    now = _now()
    keys = list(ring)
    if as_json:
        _out.print_json(json.dumps([_key_facts(key, now) for key in keys]))
        return
    # Key ids are copied into SIMPUL_SIGNER and `keys rotate`: never cut, on any terminal.
    longest = max((len(key.key_id) for key in keys), default=6)
    table = Table(
        Column("key id", min_width=longest, overflow="fold"),
        "principal",
        "department",
        "fingerprint",
        "types",
        "not before",
        "not after",
        Column("now", overflow="fold"),  # what the reader looks for: valid, expired, ...
        title=f"{len(keys)} key(s) in {path}",
    )
    for key in keys:
        types = sorted(key.types)
        shown = ", ".join(types[:2]) + (f" +{len(types) - 2}" if len(types) > 2 else "")
        status = _status(key, now) + (", DEVELOPMENT" if is_dev_key(key.public_key) else "")
        table.add_row(
            key.key_id,
            key.principal,
            key.department,
            fingerprint(key.public_key),
            shown or "(none)",
            _text(key.not_before) or "-",
            _text(key.not_after) or "-",
            status,
        )
    _out.print(table)
    development = [key.key_id for key in keys if is_dev_key(key.public_key)]
    if development:
        _err.print(_DEV_WARNING.format(what=", ".join(development)))


_DEV_WARNING = (
    "[yellow]warning:[/yellow] {what}: DEVELOPMENT key(s), whose private halves are public "
    "(deploy/keys, docs/wire-format.md): services and adapters refuse them unless "
    "SIMPUL_DEV_MODE=1; never trust them in production"
)


def _key_facts(key: PublicSigningKey, now: datetime) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "principal": key.principal,
        "department": key.department,
        "public_key": _b64(bytes(key.public_key)),
        "fingerprint": fingerprint(key.public_key),
        "types": sorted(key.types),
        "not_before": _text(key.not_before),
        "not_after": _text(key.not_after),
        "status": _status(key, now),
        "development": is_dev_key(key.public_key),
    }


def _status(key: PublicSigningKey, now: datetime) -> str:
    if key.not_before is not None and now < _aware(key.not_before):
        return "not yet valid"
    if key.not_after is not None and now >= _aware(key.not_after):
        return "expired"
    return "valid"


def _known(path: Path, signer: Signer) -> PublicSigningKey:
    key = KeyRing(load_keyring_file(path)).get(signer.key_id)
    if key is None:
        raise ConfigurationError(f"key {signer.key_id} is not in {path}")
    if bytes(key.public_key) != signer.public_key:
        raise ConfigurationError(f"{path} has another public key for {signer.key_id}")
    return key


def _rotation_steps(
    old_id: str, new_id: str, key_file: Path, begins: datetime, retired: datetime
) -> list[str]:
    forget = retired + DEFAULT_MAX_AGE
    return [
        f"Replace the principal's keys in {TOPOLOGY} with the above (the next key added, "
        f"not_after {format_time(retired)} on {old_id}) and deploy it to every consuming "
        "service: they then accept both keys.",
        f"Between {format_time(begins)} and {format_time(retired)}, give the producer {key_file} "
        f"(SIMPUL_SIGNING_KEY_FILE={key_file} SIMPUL_SIGNER={new_id}) and restart it. What "
        f"{old_id} signed before {format_time(retired)} stays valid; what it signs later is "
        "refused (signer_expired).",
        f"After {format_time(forget)} (the overlap plus the replay window, "
        "SIMPUL_SIGNATURE_MAX_AGE_S, default 7 days) nothing signed by "
        f"{old_id} can be accepted any more: remove its entry and destroy its private key file.",
        f"If a private key leaks, do not wait: remove {old_id}'s entry at once (its events then "
        "fail as unknown_signer); a not_after alone still accepts signatures dated before it.",
    ]


def _say(*lines: str) -> None:
    for line in lines:
        _out.print(line, markup=False, end="" if line.endswith("\n") else "\n")


def _time(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{option} {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"{option} {value!r} needs an offset (Z or +07:00)")
    return moment


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(_aware(moment))


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _jsonable(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: format_time(v) if isinstance(v, datetime) else v for k, v in entry.items()}
