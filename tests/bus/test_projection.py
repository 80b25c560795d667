"""Need-to-know projections (decision 0012): the router forwards each subscription only its
approved fields, signed with its own key and naming the original; consumers verify the router's
signature as any other, and tampering with a disclosed field or the reference is caught."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis

from bus import Service, keys
from bus.access.topology import Topology, TopologyError, load_topology
from bus.cli.contracts import docs_files
from bus.contracts import default_registry
from bus.deadletter import Reason
from bus.envelope import Envelope
from bus.errors import ConfigurationError
from bus.projection import (
    ORIGIN_DIGEST,
    ORIGIN_ENTRY,
    ORIGIN_SIGNER,
    Disclosure,
    check_against_original,
    disclosures,
    forward,
    forward_each,
    original_digest,
    withheld_required,
)
from bus.publisher import Publisher
from bus.settings import Settings
from bus.signing import (
    KeyRing,
    PublicSigningKey,
    Signer,
    canonical_bytes,
    load_keyring_file,
    verify_fields,
)
from bus.specs.catalogue import example_of, find_services
from bus.testing import wait_until
from schemas.dukcapil import CitizenBorn
from services.dinkes.service import BirthNotice
from tests.bus.access.test_topology import BASE
from tests.bus.test_wire_format import doc_block

SOURCE = "urn:malangkota:dukcapil:siak"
ADAPTER = Signer("adapter-dukcapil-test", bytes(range(1, 33)))
ROUTER = Signer("router-test", bytes(range(9, 41)))
ORIGIN = "1796000000000-0"
BORN = "dukcapil.citizen.born.v1"
DIED = "dukcapil.citizen.died.v1"
CHILD_NIK = "3573010101260001"  # synthetic
KK = "3573010101260099"  # synthetic


def born() -> CitizenBorn:
    return CitizenBorn(
        child_ref="abcdefghijklmnopqrstuvwxyz",
        nik=CHILD_NIK,
        kk=KK,
        born_on=date(2026, 11, 20),
        kelurahan="35.73.02.1001",
        registered_on=date(2026, 11, 25),
    )


def signed_original(at: datetime | None = None) -> dict[str, str]:
    publisher = Publisher(None, source=SOURCE, signer=ADAPTER)  # type: ignore[arg-type]
    envelope = ADAPTER.sign(publisher.envelope(born(), id="birth-1"), at=at)
    return envelope.to_fields()


def keyring() -> KeyRing:
    def key(signer: Signer, types: frozenset[str]) -> PublicSigningKey:
        return PublicSigningKey(signer.key_id, "p", "d", signer.public_key, types)

    return KeyRing([key(ADAPTER, frozenset({BORN})), key(ROUTER, frozenset({BORN}))])


def test_forward_keeps_only_the_disclosed_fields_and_signs_them_as_the_router() -> None:
    original = signed_original()
    disclosure = Disclosure("dinkes", BORN, frozenset({"child_ref", "born_on", "kelurahan"}))
    inbox = forward(original, disclosure=disclosure, signer=ROUTER, origin=ORIGIN)

    assert json.loads(inbox["data"]) == {
        "child_ref": "abcdefghijklmnopqrstuvwxyz",
        "born_on": "2026-11-20",
        "kelurahan": "35.73.02.1001",
    }
    assert all(CHILD_NIK not in value and KK not in value for value in inbox.values())
    assert (inbox["signer"], inbox[ORIGIN_ENTRY], inbox[ORIGIN_SIGNER]) == (
        ROUTER.key_id,
        ORIGIN,
        ADAPTER.key_id,
    )
    assert inbox[ORIGIN_DIGEST] == original_digest(original)
    assert verify_fields(ROUTER.public_key, inbox)
    assert keyring().check(Envelope.from_fields(inbox), inbox) is None
    assert check_against_original(inbox, original) is None


@pytest.mark.parametrize(
    "change",
    [
        {"data": '{"child_ref":"aaaaaaaaaaaaaaaaaaaaaaaaaa","born_on":"2026-11-20"}'},
        {ORIGIN_DIGEST: "0" * 64},
        {ORIGIN_ENTRY: "1796000000001-0"},
        {"signature": ADAPTER.signature_of({"x": "y"})},
    ],
)
def test_a_tampered_inbox_entry_is_a_bad_signature(change: dict[str, Any]) -> None:
    disclosure = Disclosure("dinkes", BORN, frozenset({"child_ref", "born_on"}))
    inbox = forward(signed_original(), disclosure=disclosure, signer=ROUTER, origin=ORIGIN)
    tampered = {**inbox, **change}
    rejection = keyring().check(Envelope.from_fields(tampered), tampered)
    assert rejection is not None and rejection.reason is Reason.BAD_SIGNATURE


def test_the_shipped_topology_keeps_the_childs_nik_from_dinkes() -> None:
    shown = disclosures(load_topology("deploy/topology.yaml"))
    assert "nik" not in (shown[("dinkes", BORN)].fields or {"nik"})
    assert shown[("audit", BORN)].fields is None


def test_subscriptions_that_may_see_the_same_fields_share_one_signed_entry() -> None:
    """The router signs once per distinct projection (its main cost per inbox entry): equal
    field sets get the very same entry, which is what forward() gives each of them."""
    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    original = signed_original(at - timedelta(seconds=1))
    narrow = frozenset({"child_ref", "born_on"})
    shown = [
        Disclosure("dinkes", BORN, narrow),
        Disclosure("audit", BORN, None),
        Disclosure("notifier", BORN, frozenset(narrow)),  # equal set, another object
        Disclosure("profile", BORN, narrow | {"kelurahan"}),
    ]
    entries = forward_each(original, shown, signer=ROUTER, origin=ORIGIN, at=at)
    assert entries[0] is entries[2]
    assert len({id(e) for e in entries}) == 3
    for disclosure, entry in zip(shown, entries, strict=True):
        as_text = {k.decode(): v.decode() for k, v in entry.items()}
        alone = forward(original, disclosure=disclosure, signer=ROUTER, origin=ORIGIN, at=at)
        assert as_text == alone and list(as_text) == list(alone)  # same fields, same order
        assert keyring().check(Envelope.from_fields(entry), entry) is None
        assert check_against_original(entry, original) is None


def test_forwarding_under_another_types_disclosure_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cannot be forwarded under the disclosure"):
        forward_each(
            signed_original(),
            [Disclosure("dinkes", BORN, None), Disclosure("dinsos", DIED, None)],
            signer=ROUTER,
            origin=ORIGIN,
        )


def test_forwarding_signs_at_the_given_time() -> None:
    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    disclosure = Disclosure("audit", BORN, None)
    original = signed_original(at - timedelta(seconds=1))
    inbox = forward(original, disclosure=disclosure, signer=ROUTER, origin=ORIGIN, at=at)
    assert inbox["signedat"] == "2026-12-01T08:00:00.000Z"
    assert inbox["data"] == original["data"]  # every field: byte for byte


def test_every_shipped_service_handler_fits_its_subscriptions_projection() -> None:
    shown = disclosures(load_topology("deploy/topology.yaml"))
    checked = 0
    for service in find_services():
        for event_type, handler in service.handlers.items():
            disclosure = shown.get((service.name, event_type))
            assert disclosure is not None, f"{service.name}: {event_type} has no subscription"
            assert withheld_required(handler.model, disclosure) == [], (service.name, event_type)
            checked += 1
    assert checked >= 25  # profile 14, dinsos 5, bapenda 3, dinkes 1, notifier 6
    # The contract itself would not fit dinkes' projection: the check can fail.
    assert withheld_required(CitizenBorn, shown[("dinkes", BORN)]) == ["kk", "nik"]


# -- the topology's approvals ----------------------------------------------------------------


def approvals(**subscription: Any) -> list[tuple[str, str]] | Topology:
    """Parse tests/bus/access/test_topology's base with dinsos' subscription changed: the topology,
    or its problems."""
    data = copy.deepcopy(BASE)
    data["services"][0]["subscriptions"][0].update(subscription)
    try:
        return Topology.parse(data, source="test.yaml")
    except TopologyError as exc:
        return exc.problems


def test_by_default_a_subscription_sees_the_non_personal_fields() -> None:
    topology = approvals()
    assert isinstance(topology, Topology)
    assert topology.approved_fields("dinsos", DIED) == {"date_of_death", "kecamatan"}


def test_the_owner_approves_personal_fields_on_top_of_the_default() -> None:
    topology = approvals(personal=["nik"])
    assert isinstance(topology, Topology)
    assert topology.approved_fields("dinsos", DIED) == {"nik", "date_of_death", "kecamatan"}
    exact = approvals(fields=["nik"])
    assert isinstance(exact, Topology)
    assert exact.approved_fields("dinsos", DIED) == {"nik"}
    every = approvals(fields="all")
    assert isinstance(every, Topology)
    assert every.approved_fields("dinsos", DIED) is None


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (
            {"personal": ["niк"]},  # a Cyrillic k
            "services[0].subscriptions[0].personal[0]",
            "unknown field 'niк' of dukcapil.citizen.died.v1 — its fields: nik, date_of_death, "
            "kecamatan",
        ),
        (
            {"fields": ["nik", "date_of_death", "nik"]},
            "services[0].subscriptions[0].fields[2]",
            "field 'nik' is listed twice",
        ),
        (
            {"personal": ["kecamatan"]},
            "services[0].subscriptions[0].personal",
            "kecamatan of dukcapil.citizen.died.v1 not personal: every subscription sees the "
            "contract's other fields",
        ),
        (
            {"personal": ["nik"], "fields": ["nik"]},
            "services[0].subscriptions[0].personal",
            "give either fields (the exact list) or personal (added to the non-personal "
            "fields), not both",
        ),
        (
            {"approved_by": "dinsos", "personal": ["nik"]},
            "services[0].subscriptions[0].approved_by",
            "personal field(s) nik of dukcapil.citizen.died.v1: only its owner dukcapil can "
            "approve them, not dinsos",
        ),
    ],
)
def test_a_wrong_approval_is_named(change: dict[str, Any], path: str, problem: str) -> None:
    found = approvals(**change)
    assert isinstance(found, list)
    assert (path, problem) in found


def test_the_router_key_may_sign_every_published_type(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["router"] = {
        "principal": "router",
        "department": "dukcapil",
        "keys": [{"id": ROUTER.key_id, "public_key": base64.b64encode(ROUTER.public_key).decode()}],
    }
    topology = Topology.parse(data, source="test.yaml")
    (router,) = [k for k in topology.signing_keys() if k.key_id == ROUTER.key_id]
    assert router.types == {DIED, "dinsos.assistance.suspended.v1"}
    file = tmp_path / "topology.yaml"
    file.write_text(yaml.safe_dump(data))
    (from_file,) = [k for k in load_keyring_file(file) if k.key_id == ROUTER.key_id]
    assert (from_file.types, from_file.principal) == (router.types, "router")
    data["router"]["department"] = "nowhere"
    with pytest.raises(TopologyError, match=r"router\.department: unknown department 'nowhere'"):
        Topology.parse(data, source="test.yaml")


# -- docs/wire-format.md, section 11 -----------------------------------------------------------


def facts(block: str) -> dict[str, str]:
    return dict(re.findall(r"^([a-z ]+):\s+(.+)$", block, re.M))


def documented_original() -> dict[str, str]:
    fields: dict[str, str] = json.loads(doc_block("signing-example-fields"))
    seed = base64.b64decode(facts(doc_block("signing-example-key"))["seed"])
    fields["signature"] = Signer("test-dukcapil-2026", seed).signature_of(fields)
    return fields


def documented_router() -> Signer:
    key = facts(doc_block("inbox-example-key"))
    router = Signer(key["key id"], base64.b64decode(key["seed"]))
    assert base64.b64encode(router.public_key).decode() == key["public key"]
    return router


def test_the_worked_example_of_section_11_is_what_forward_writes() -> None:
    original, router = documented_original(), documented_router()
    documented = json.loads(doc_block("inbox-example-fields"))
    at = datetime.fromisoformat(documented["signedat"])
    disclosure = Disclosure("notifier", DIED, frozenset({"date_of_death", "kecamatan"}))
    inbox = forward(original, disclosure=disclosure, signer=router, origin="1795871247456-0", at=at)
    assert inbox == documented
    signed = canonical_bytes(inbox)
    result = facts(doc_block("inbox-example-result"))["signed bytes"]
    assert result == f"{len(signed)} bytes, SHA-256 {hashlib.sha256(signed).hexdigest()}"
    # origindigest is the SHA-256 section 10.5 shows of the original's signed bytes.
    assert inbox[ORIGIN_DIGEST] in doc_block("signing-example-result")
    assert check_against_original(inbox, original) is None


async def test_node_verifies_a_router_forwarded_event_and_ties_it_to_its_original(
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript snippets of section 11 are not run")
    original, router = signed_original(), Signer.generate("router-node-test")
    disclosure = Disclosure("dinkes", BORN, frozenset({"child_ref", "born_on", "kelurahan"}))
    inbox = forward(original, disclosure=disclosure, signer=router, origin=ORIGIN)
    router_key = base64.b64encode(router.public_key).decode()
    producer_key = base64.b64encode(ADAPTER.public_key).decode()
    forged = json.loads(inbox["data"]) | {"kelurahan": "35.73.05.1001"}
    lying = {**inbox, "data": json.dumps(forged, separators=(",", ":"))}
    lying["signature"] = router.signature_of(lying)  # a compromised router re-signs its lie
    cases = [
        (inbox, router_key),  # as forwarded
        ({**inbox, "data": inbox["data"].replace("35.73.02", "35.73.03")}, router_key),
        ({**inbox, ORIGIN_DIGEST: "0" * 64}, router_key),  # the reference changed
        ({**inbox, "signature": ADAPTER.signature_of(inbox)}, router_key),  # not the router's
        (inbox, producer_key),  # the producer's key does not sign the inbox entry
        (lying, router_key),
    ]
    script = tmp_path / "verify.js"
    script.write_text(
        doc_block("node-verify")
        + doc_block("node-origin")
        + "const [cases, original] = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n"
        + "console.log(JSON.stringify(cases.map(([f, k]) =>"
        + " [simpulSignatureValid(f, k), simpulMatchesOriginal(f, original)])));\n"
    )
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(json.dumps([cases, original]).encode()), 30
    )
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == [
        [True, True],
        [False, False],  # a disclosed field altered: neither the signature nor the original
        [False, False],
        [False, True],
        [False, True],
        [True, False],  # the router's signature holds, the archive exposes the lie
    ]
    assert (
        check_against_original(lying, original)
        == "disclosed field(s) kelurahan differ from the original"
    )


# -- a service verifying forwarded entries, against a real Redis ---------------------------------


async def test_a_service_handles_forwarded_entries_and_dead_letters_tampered_ones(
    redis: Redis, settings: Settings
) -> None:
    """Inbox entries XADDed where the service reads (the router's inboxes are its own work):
    the projection reaches the handler, typed, without the NIK; an entry with an altered
    disclosed field, origin digest or router signature lands in dead letters as bad_signature
    and never reaches the handler."""
    got: list[BirthNotice] = []
    service = Service("dinkes", settings=settings, keyring=keyring())

    @service.on(BirthNotice)
    async def record(event: BirthNotice) -> None:
        got.append(event)

    disclosure = disclosures(load_topology("deploy/topology.yaml"))[("dinkes", BORN)]
    stream = CitizenBorn.__contract__.stream
    tampered = {}
    for number, change in enumerate(
        [
            {"data": '{"child_ref":"aaaaaaaaaaaaaaaaaaaaaaaaaa","born_on":"2026-11-20"}'},
            {ORIGIN_DIGEST: "0" * 64},
            {"signature": ADAPTER.signature_of({"x": "y"})},
        ]
    ):
        entry = forward(signed_original(), disclosure=disclosure, signer=ROUTER, origin=ORIGIN)
        entry["id"] = f"tampered-{number}"
        entry["signature"] = ROUTER.signature_of(entry)  # valid before the change
        tampered[entry["id"]] = {**entry, **change}
    good = forward(signed_original(), disclosure=disclosure, signer=ROUTER, origin=ORIGIN)
    async with service.running():
        for entry in [*tampered.values(), good]:
            await redis.xadd(stream, entry)  # type: ignore[arg-type]
        dlq = keys.dead_letters(stream, "dinkes")
        await wait_until(lambda: _count(redis, dlq, 3))
        await wait_until(lambda: len(got) == 1)

    raw = {k.decode(): v.decode() for _, f in await redis.xrange(stream) for k, v in f.items()}
    assert CHILD_NIK not in json.dumps(raw) and KK not in json.dumps(raw)  # the entries we wrote
    assert got[0].model_dump(mode="json") == {
        "child_ref": "abcdefghijklmnopqrstuvwxyz",
        "born_on": "2026-11-20",
        "kelurahan": "35.73.02.1001",
        "registered_on": "2026-11-25",
    }
    letters = [{k.decode(): v.decode() for k, v in f.items()} for _, f in await redis.xrange(dlq)]
    assert sorted((d["id"], d["dlq.reason"]) for d in letters) == [
        (event_id, Reason.BAD_SIGNATURE.value) for event_id in sorted(tampered)
    ]


async def _count(redis: Redis, stream: str, expected: int) -> bool:
    return int(await redis.xlen(stream)) == expected


GROUPS = ("dinkes", "dinsos", "audit")


def test_the_catalogue_and_asyncapi_list_each_subscriptions_approved_fields() -> None:
    files = docs_files()
    born = files["catalogue.md"].split(f"### {BORN}", 1)[1].split("\n### ", 1)[0]
    dinkes, dinsos, audit = (f"`simpul:inbox:{{{g}/dukcapil.citizen}}`" for g in GROUPS)
    assert (
        f"| dinkes | {dinkes} | `child_ref` (personal), `born_on` (personal), `kelurahan`, " in born
    )
    assert (
        f"| dinsos | {dinsos} | `nik` (personal), `kk` (personal), `kelurahan`, `registered_on` |"
        in born
    )
    assert f"| audit | {audit} | every field |" in born
    operations = json.loads(files["asyncapi.json"])["operations"]
    approved = operations["dukcapil.citizen.receive.dinkes"]["x-simpul-approved-fields"]
    assert approved == {BORN: ["born_on", "child_ref", "kelurahan", "registered_on"]}
    assert operations["dukcapil.citizen.receive.audit"]["x-simpul-approved-fields"][BORN] == "all"


SHIPPED = disclosures(load_topology("deploy/topology.yaml"))


@pytest.mark.parametrize("key", sorted(SHIPPED), ids="/".join)
def test_each_shipped_subscription_gets_exactly_its_approved_fields(key: tuple[str, str]) -> None:
    disclosure = SHIPPED[key]
    model = default_registry.resolve(disclosure.event_type)
    example = example_of(model)
    assert example is not None, f"{disclosure.event_type} has no example payload"
    publisher = Publisher(None, source=SOURCE, signer=ADAPTER)  # type: ignore[arg-type]
    subject = "s-1" if model.__contract__.partitions > 1 else None
    original = ADAPTER.sign(publisher.envelope(model.parse(example), subject=subject)).to_fields()
    inbox = forward(original, disclosure=disclosure, signer=ROUTER, origin=ORIGIN)

    full, shown = json.loads(original["data"]), json.loads(inbox["data"])
    expected = set(full) if disclosure.fields is None else set(full) & disclosure.fields
    assert set(shown) == expected
    assert all(shown[name] == full[name] for name in shown)
    personal = {p for p in model.__contract__.personal_fields if "." not in p}
    withheld = set(full) - set(shown)
    disclosed = json.dumps(shown, ensure_ascii=False)
    for name in withheld:  # nothing of a withheld value is left (unless a shown field has it:
        value = json.dumps(full[name], ensure_ascii=False).strip('"')  # the head is a member)
        if len(value) > 6 and value not in disclosed:
            assert not any(value in text for text in inbox.values()), name
    if disclosure.fields is not None:
        assert personal & set(shown) <= disclosure.fields
    assert check_against_original(inbox, original) is None
    assert verify_fields(ROUTER.public_key, inbox)


def test_dinsos_gets_the_childs_nik_and_family_card_dinkes_does_not() -> None:
    original = signed_original()
    dinsos = forward(original, disclosure=SHIPPED[("dinsos", BORN)], signer=ROUTER, origin=ORIGIN)
    dinkes = forward(original, disclosure=SHIPPED[("dinkes", BORN)], signer=ROUTER, origin=ORIGIN)
    assert (json.loads(dinsos["data"])["nik"], json.loads(dinsos["data"])["kk"]) == (CHILD_NIK, KK)
    assert not any(CHILD_NIK in value or KK in value for value in dinkes.values())
