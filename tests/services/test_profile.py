"""The citizen profile consumes every department's events into one view per NIK (real Redis)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import Contract, Publisher, Settings, keys
from bus.store import Store, Tx
from bus.testing import wait_until
from schemas.bapenda import PaymentReceived, TaxAssessed, TaxpayerRegistered
from schemas.dinsos import AssistanceGranted, AssistanceSuspended
from schemas.dpmptsp import PermitApplied, PermitIssued, PermitRejected
from schemas.dukcapil import CitizenBorn, CitizenDied, CitizenMoved, FamilyCardIssued
from schemas.identity import AccountLinked, AccountUnlinked
from services.profile import WRITES, Profile

SOURCE = "urn:malangkota:test:profile"
NIK = "3573051708850003"  # a man, head of the family
SPOUSE = "3573025203900002"
CHILD = "3573031411260001"
STRANGER = "3573014107780004"
KK = "3573032011260003"
OTHER_KK = "3573040708190011"
NIB = "9120001234567"
ACCOUNT = "6f1c2a9e-3b7d-4c55-9a0e-2d4b8f7e1a35"
OTHER_ACCOUNT = "0b7e4d12-95c3-4f7a-b1d8-7c6a3e2f9d40"
HOME = {
    "street": "Jl. Danau Toba E5 No. 12",
    "rt": "007",
    "rw": "012",
    "kelurahan": "35.73.03.1008",
    "kecamatan": "35.73.03",
}
SITE = {
    "street": "Jl. Ijen No. 25",
    "rt": "003",
    "rw": "005",
    "kelurahan": "35.73.02.1008",
    "kecamatan": "35.73.02",
}


# -- events (synthetic identifiers, see schemas/examples/README.md) ----------------------------


def born(nik: str = CHILD, registered_on: str = "2026-11-20", kk: str = KK) -> CitizenBorn:
    return CitizenBorn(
        child_ref="wrzc36nynecyoe6hkelr7elwwq",
        nik=nik,
        kk=kk,
        born_on="2026-11-14",
        kelurahan="35.73.03.1008",
        registered_on=registered_on,
    )  # type: ignore[arg-type]


def died(nik: str = NIK, on: str = "2026-11-25") -> CitizenDied:
    return CitizenDied(nik=nik, date_of_death=on, kecamatan="35.73.03")  # type: ignore[arg-type]


def moved(nik: str = NIK, on: str = "2026-09-15", street: str = "Jl. Mertojoyo 4A") -> CitizenMoved:
    return CitizenMoved(nik=nik, address=street, kecamatan="35.73.05", moved_on=on)  # type: ignore[arg-type]


def card(issued_on: str = "2026-11-20", members: Sequence[str] = (NIK, SPOUSE)) -> FamilyCardIssued:
    return FamilyCardIssued.parse(
        {
            "kk": KK,
            "head": NIK,
            "members": list(members),
            "address": HOME,
            "reason": "new-family",
            "issued_on": issued_on,
        }
    )


def person(scheme: str = "nik", value: str = NIK) -> dict[str, str]:
    return {"scheme": scheme, "value": value}


def applied(no: str = "PBG/2026/11/000412", who: dict[str, str] | None = None) -> PermitApplied:
    return PermitApplied.parse(
        {
            "application_no": no,
            "kind": "pbg",
            "applicant": who or person(),
            "site": SITE,
            "applied_on": "2026-11-02",
        }
    )


def issued(no: str = "PBG/2026/11/000412") -> PermitIssued:
    return PermitIssued.parse(
        {
            "application_no": no,
            "permit_no": "PBG-3573-0412",
            "kind": "pbg",
            "applicant": person(),
            "site": SITE,
            "issued_on": "2026-11-16",
            "retribution": 4_200_000,
        }
    )


def rejected(no: str = "SLF/2026/11/000077") -> PermitRejected:
    return PermitRejected.parse(
        {
            "application_no": no,
            "kind": "slf",
            "applicant": person(),
            "reason": "technical-review-failed",
            "rejected_on": "2026-11-18",
        }
    )


def registered(who: dict[str, str] | None = None) -> TaxpayerRegistered:
    return TaxpayerRegistered.parse(
        {
            "npwpd": "P1.0098765.35.73",
            "taxpayer": who or person(),
            "tax_kinds": ["pbjt-parkir"],
            "address": HOME,
            "registered_on": "2026-08-17",
        }
    )


ASSESSMENT = "SPPT-2026-357305000300200450"


def assessed(amount: int = 386_400, who: dict[str, str] | None = None) -> TaxAssessed:
    return TaxAssessed.parse(
        {
            "assessment_no": ASSESSMENT,
            "tax_kind": "pbb-p2",
            "nop": "357305000300200450",
            "taxpayer": who or person(),
            "period": "2026",
            "amount": amount,
            "due_on": "2026-08-31",
            "assessed_on": "2026-02-02",
        }
    )


def paid(ref: str = "QRIS-20260815-7731", amount: int = 386_400) -> PaymentReceived:
    return PaymentReceived.parse(
        {
            "payment_ref": ref,
            "assessment_no": ASSESSMENT,
            "tax_kind": "pbb-p2",
            "nop": "357305000300200450",
            "taxpayer": person(),
            "amount": amount,
            "channel": "qris",
            "paid_at": "2026-08-15T03:05:00Z",
        }
    )


GRANT = "BSD-2026-0412"


def granted(nik: str = NIK) -> AssistanceGranted:
    return AssistanceGranted.parse(
        {
            "grant_no": GRANT,
            "programme": "bansos-daerah",
            "recipient": nik,
            "kk": KK,
            "kelurahan": "35.73.03.1008",
            "amount": 300_000,
            "frequency": "monthly",
            "starts_on": "2026-12-01",
            "ends_on": "2027-05-31",
            "granted_on": "2026-11-25",
        }
    )


def suspended(nik: str = NIK) -> AssistanceSuspended:
    return AssistanceSuspended.parse(
        {
            "grant_no": GRANT,
            "programme": "bansos-daerah",
            "recipient": nik,
            "reason": "moved-away",
            "suspended_on": "2026-11-27",
            "effective_from": "2026-12-01",
        }
    )


def linked(
    account: str = ACCOUNT, nik: str = NIK, at: str = "2026-11-18T19:02:44+07:00"
) -> AccountLinked:
    return AccountLinked.parse(
        {"account_id": account, "nik": nik, "verification": "dukcapil-face-match", "linked_at": at}
    )


def unlinked(
    account: str = ACCOUNT,
    nik: str = NIK,
    reason: str = "holder-request",
    at: str = "2026-11-28T11:15:09+07:00",
) -> AccountUnlinked:
    return AccountUnlinked.parse(
        {"account_id": account, "nik": nik, "reason": reason, "unlinked_at": at}
    )


# -- running the service ----------------------------------------------------------------------


class Feed:
    """Publishes events one at a time and waits until the profile has applied each: the order
    they are applied in is the order given, whatever their streams."""

    def __init__(self, redis: Redis, profile: Profile) -> None:
        self.publisher = Publisher(redis, source=SOURCE)
        self.profile = profile
        self.count = 0

    async def __call__(self, *events: Contract, time: datetime | None = None) -> list[str]:
        ids = []
        for event in events:
            self.count += 1
            event_id = f"event-{self.count}-{type(event).__name__}"
            await self.publisher.publish(event, id=event_id, time=time)
            await wait_until(lambda done=event_id: applied_to(self.profile, done))
            ids.append(event_id)
        return ids


async def applied_to(profile: Profile, event_id: str) -> bool:
    key = f"{event_id}:profile"
    found = await profile.store.run(
        lambda tx: tx.value("SELECT 1 FROM simpul_inbox WHERE key = ?", (key,))
    )
    return found is not None


@asynccontextmanager
async def running(settings: Settings, store_url: str, **options: Any) -> AsyncIterator[Profile]:
    profile = Profile(Store(store_url), settings=settings, tokens="", **options)
    async with profile.service.running():
        yield profile


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'profile.db'}"


def sections(view: dict[str, Any] | None) -> dict[str, Any]:
    assert view is not None
    result: dict[str, Any] = view["sections"]
    return result


# -- every consumed type changes the view ----------------------------------------------------

Check = Callable[[dict[str, Any]], object]
CASES: list[tuple[str, list[Contract], str, Check]] = [
    (
        "born",
        [born(kk=OTHER_KK)],
        CHILD,
        lambda s: (s["registry"]["status"], s["address"]["kelurahan"], s["family"]),
    ),
    ("died", [died()], NIK, lambda s: (s["registry"], s["address"])),
    ("moved", [moved()], NIK, lambda s: (s["address"]["street"], s["address"]["since"])),
    (
        "card",
        [card()],
        SPOUSE,
        lambda s: (s["address"]["rt"], s["family"]["card"]["head"], s["family"]["card"]["members"]),
    ),
    ("applied", [applied()], NIK, lambda s: [(p["status"], p["applied_on"]) for p in s["permits"]]),
    ("issued", [issued()], NIK, lambda s: [(p["status"], p["permit_no"]) for p in s["permits"]]),
    (
        "rejected",
        [rejected()],
        NIK,
        lambda s: [(p["status"], p["rejection_reason"]) for p in s["permits"]],
    ),
    ("registered", [registered()], NIK, lambda s: s["tax"]["npwpd"]),
    (
        "assessed",
        [assessed()],
        NIK,
        lambda s: [(a["status"], a["outstanding"]) for a in s["tax"]["assessments"]],
    ),
    (
        "paid",
        [paid()],
        NIK,
        lambda s: [(a["status"], a["amount_paid"]) for a in s["tax"]["assessments"]],
    ),
    (
        "granted",
        [granted()],
        NIK,
        lambda s: [(g["programme"], g["status"]) for g in s["assistance"]],
    ),
    (
        "suspended",
        [suspended()],
        NIK,
        lambda s: [(g["status"], g["suspension_reason"]) for g in s["assistance"]],
    ),
    ("linked", [linked()], NIK, lambda s: s["accounts"]["current"]),
    (
        "unlinked",
        [linked(), unlinked()],
        NIK,
        lambda s: [(x["status"], x["closed_reason"]) for x in s["accounts"]["links"]],
    ),
]
EXPECTED: dict[str, object] = {
    "born": ("registered", "35.73.03.1008", {"kk": OTHER_KK, "since": "2026-11-20", "card": None}),
    "died": ({"status": "deceased", "died_on": "2026-11-25"}, None),
    "moved": ("Jl. Mertojoyo 4A", "2026-09-15"),
    "card": ("007", False, [NIK, SPOUSE]),
    "applied": [("applied", "2026-11-02")],
    "issued": [("issued", "PBG-3573-0412")],
    "rejected": [("rejected", "technical-review-failed")],
    "registered": [
        {"npwpd": "P1.0098765.35.73", "tax_kinds": ["pbjt-parkir"], "registered_on": "2026-08-17"}
    ],
    "assessed": [("due", 386_400)],
    "paid": [("assessment-pending", 386_400)],
    "granted": [("bansos-daerah", "active")],
    "suspended": [("suspended", "moved-away")],
    "linked": ACCOUNT,
    "unlinked": [("closed", "holder-request")],
}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_each_consumed_type_changes_the_view(
    settings: Settings, redis: Redis, store_url: str, case: tuple[str, list[Contract], str, Check]
) -> None:
    name, events, nik, check = case
    async with running(settings, store_url) as profile:
        assert await profile.person(nik) is None
        await Feed(redis, profile)(*events)
        assert check(sections(await profile.person(nik))) == EXPECTED[name]


def test_every_consumed_type_is_covered() -> None:
    covered = {type(e).__contract__.event_type for _, events, _, _ in CASES for e in events}
    assert covered == {model.__contract__.event_type for model in WRITES}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profile.db'}"
    return str(request.getfixturevalue("postgres_url"))


async def test_one_person_seen_by_every_department(
    settings: Settings, redis: Redis, any_store_url: str
) -> None:
    async with running(settings, any_store_url) as profile:
        await Feed(redis, profile)(
            moved(),
            card(),
            applied(),
            issued(),
            rejected(),
            registered(),
            assessed(),
            paid(amount=200_000),
            granted(),
            linked(),
            born(),
        )
        view = await profile.person(NIK)
        child = await profile.person(CHILD)
        assert await profile.by_account(ACCOUNT) == view
    assert view is not None
    assert view["nik"] == NIK
    got = view["sections"]
    assert got["registry"] == {"status": "registered", "died_on": None}
    # The family card (2026-11-20) is newer than the move (2026-09-15).
    assert got["address"] == {**HOME, "since": "2026-11-20", "source": "family-card"}
    assert got["family"] == {
        "kk": KK,
        "since": "2026-11-20",
        "card": {
            "issued_on": "2026-11-20",
            "reason": "new-family",
            "head": True,
            "listed": True,
            "members": [NIK, SPOUSE],
        },
    }
    assert [(p["application_no"], p["status"]) for p in got["permits"]] == [
        ("PBG/2026/11/000412", "issued"),
        ("SLF/2026/11/000077", "rejected"),
    ]
    [assessment] = got["tax"]["assessments"]
    assert assessment["status"] == "partly-paid"
    assert (assessment["amount_due"], assessment["amount_paid"], assessment["outstanding"]) == (
        386_400,
        200_000,
        186_400,
    )
    assert got["tax"]["npwpd"][0]["npwpd"] == "P1.0098765.35.73"
    assert got["assistance"][0]["status"] == "active"
    assert got["accounts"]["current"] == ACCOUNT
    assert got["accounts"]["links"][0]["verification"] == "dukcapil-face-match"
    # The child is in the family of the birth; the card of that day does not list it yet.
    assert child is not None
    assert child["sections"]["family"]["kk"] == KK
    assert child["sections"]["family"]["card"]["listed"] is False
    assert child["sections"]["address"] == {
        "street": None,
        "rt": None,
        "rw": None,
        "kelurahan": "35.73.03.1008",
        "kecamatan": "35.73.03",
        "since": "2026-11-20",
        "source": "birth",
    }
    assert "2026-11-14" not in repr(child)  # no birth date is kept


# -- duplicates and redelivery ---------------------------------------------------------------


async def test_an_event_delivered_twice_has_one_effect(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        feed = Feed(redis, profile)
        await feed(assessed())
        [first] = await feed(paid(amount=100_000))
        # The same entry again, past the publisher's dedupe (as after a lost ack).
        stream = keys.stream_of(PaymentReceived.__contract__.event_type)
        await redis.delete(keys.seen(stream, first))
        await feed.publisher.publish(paid(amount=100_000), id=first)
        # The same payment told again under another event id.
        await feed(paid(amount=100_000))
        await wait_until(lambda: settled(redis, stream))
        view = sections(await profile.person(NIK))
    assert await redis.xlen(stream) == 3
    [assessment] = view["tax"]["assessments"]
    assert (assessment["amount_paid"], assessment["outstanding"]) == (100_000, 286_400)


async def settled(redis: Redis, stream: str) -> bool:
    """The profile's group has read every entry of ``stream`` and acked it."""
    length = await redis.xlen(stream)
    groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
    group = groups.get(b"profile") or groups.get("profile")
    return group is not None and group["entries-read"] == length and group["pending"] == 0


class FailingOnce(Store):
    """A store whose first ``once`` commits its work and then fails, like a lost connection
    right after the commit: the bus retries, and the inbox must stop the work repeating."""

    failed = False

    async def once(self, key: str, work: Callable[[Tx], Any]) -> Any:
        result = await super().once(key, work)
        if not self.failed:
            self.failed = True
            raise ConnectionError("connection lost after commit")
        return result


async def test_a_handler_failing_after_its_commit_applies_the_event_once(
    settings: Settings, redis: Redis, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    write = WRITES[CitizenMoved]
    monkeypatch.setitem(
        WRITES, CitizenMoved, lambda tx, e, s: (calls.append(e.nik), write(tx, e, s))
    )
    profile = Profile(FailingOnce(store_url), settings=settings, tokens="")
    async with profile.service.running():
        await Publisher(redis, source=SOURCE).publish(moved(), id="move-1")
        stream = keys.stream_of(CitizenMoved.__contract__.event_type)
        await wait_until(lambda: settled(redis, stream))
        view = sections(await profile.person(NIK))
    assert profile.store.failed  # type: ignore[attr-defined]
    assert calls == [NIK]
    assert view["address"]["street"] == "Jl. Mertojoyo 4A"


# -- order ------------------------------------------------------------------------------------

SCENARIO: list[Contract] = [
    moved(on="2026-09-15"),
    card(issued_on="2026-11-20"),
    moved(on="2026-11-25", street="Jl. Soekarno Hatta 9"),
    assessed(),
    paid(amount=386_400),
    granted(),
    suspended(),
    applied(),
    issued(),
    linked(OTHER_ACCOUNT, at="2026-11-01T08:00:00+07:00"),
    unlinked(OTHER_ACCOUNT, reason="relinked", at="2026-11-18T19:02:40+07:00"),
    linked(ACCOUNT, at="2026-11-18T19:02:44+07:00"),
]


async def test_the_view_is_the_same_whatever_order_the_events_arrive_in(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    shuffled = SCENARIO.copy()
    random.Random(7).shuffle(shuffled)
    views = []
    for n, order in enumerate([SCENARIO, list(reversed(SCENARIO)), shuffled]):
        await redis.flushdb()
        async with running(settings, f"sqlite:///{tmp_path / f'order-{n}.db'}") as profile:
            await Feed(redis, profile)(*order)
            views.append(await profile.person(NIK))
    assert views[0] == views[1] == views[2]
    got = sections(views[0])
    # The later move (by moved_on), not the later-arriving event.
    assert (got["address"]["street"], got["address"]["since"]) == (
        "Jl. Soekarno Hatta 9",
        "2026-11-25",
    )
    assert got["tax"]["assessments"][0]["status"] == "paid"
    assert got["assistance"][0]["status"] == "suspended"
    assert got["permits"][0]["status"] == "issued"
    assert got["accounts"]["current"] == ACCOUNT
    assert [
        (x["account_id"], x["status"], x["closed_reason"]) for x in got["accounts"]["links"]
    ] == [
        (ACCOUNT, "open", None),
        (OTHER_ACCOUNT, "closed", "relinked"),
    ]


async def test_a_correction_of_the_same_fact_wins_by_when_the_source_recorded_it(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        feed = Feed(redis, profile)
        await feed(died(on="2026-11-21"), time=datetime(2026, 11, 26, tzinfo=UTC))
        await feed(died(on="2026-11-20"), time=datetime(2026, 11, 22, tzinfo=UTC))  # older
        assert sections(await profile.person(NIK))["registry"]["died_on"] == "2026-11-21"


# -- accounts: one user, one account ---------------------------------------------------------


async def test_a_death_closes_the_account_links(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        feed = Feed(redis, profile)
        await feed(linked(), died())
        links = sections(await profile.person(NIK))["accounts"]
        assert links["current"] is None
        assert [(x["status"], x["closed_reason"], x["closed_at"]) for x in links["links"]] == [
            ("closed", "death", None)
        ]
        assert await profile.by_account(ACCOUNT) is None
        # Identity's own unlink arrives later and says when.
        await feed(unlinked(reason="death", at="2026-11-26T07:00:00+07:00"))
        [link] = sections(await profile.person(NIK))["accounts"]["links"]
        assert (link["closed_reason"], link["closed_at"]) == ("death", "2026-11-26T00:00:00+00:00")


async def test_a_death_before_the_link_still_closes_it(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        await Feed(redis, profile)(died(), linked())
        assert sections(await profile.person(NIK))["accounts"]["current"] is None
        assert await profile.by_account(ACCOUNT) is None


@pytest.mark.parametrize("with_unlink", [True, False], ids=["unlink-published", "link-only"])
async def test_relinking_moves_the_nik_to_the_new_account(
    settings: Settings, redis: Redis, store_url: str, with_unlink: bool
) -> None:
    async with running(settings, store_url) as profile:
        feed = Feed(redis, profile)
        await feed(linked(OTHER_ACCOUNT, at="2026-11-01T08:00:00+07:00"))
        assert (await profile.by_account(OTHER_ACCOUNT) or {}).get("nik") == NIK
        if with_unlink:
            await feed(unlinked(OTHER_ACCOUNT, reason="relinked", at="2026-11-18T19:02:44+07:00"))
        await feed(linked(ACCOUNT, at="2026-11-18T19:02:44+07:00"))
        accounts = sections(await profile.person(NIK))["accounts"]
        assert await profile.by_account(OTHER_ACCOUNT) is None
        assert (await profile.by_account(ACCOUNT) or {}).get("nik") == NIK
    assert accounts["current"] == ACCOUNT
    assert [(x["account_id"], x["status"], x["closed_reason"]) for x in accounts["links"]] == [
        (ACCOUNT, "open", None),
        (OTHER_ACCOUNT, "closed", "relinked"),
    ]


async def test_an_account_linked_to_another_nik_is_no_longer_the_first_ones(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        feed = Feed(redis, profile)
        await feed(linked(ACCOUNT, NIK, at="2026-11-01T08:00:00+07:00"))
        await feed(unlinked(ACCOUNT, NIK, reason="fraud", at="2026-11-10T08:00:00+07:00"))
        await feed(linked(ACCOUNT, SPOUSE, at="2026-11-10T08:00:01+07:00"))
        assert (await profile.by_account(ACCOUNT) or {}).get("nik") == SPOUSE
        first = sections(await profile.person(NIK))["accounts"]
    assert first["current"] is None
    assert first["links"][0]["closed_reason"] == "fraud"


# -- what is not kept -------------------------------------------------------------------------


async def test_business_events_are_skipped(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    business = person("nib", NIB)
    async with running(settings, store_url) as profile:
        publisher = Publisher(redis, source=SOURCE)
        await publisher.publish(applied("OSS-2026-0009871", business), id="business-permit")
        await publisher.publish(registered(business), id="business-taxpayer")
        await publisher.publish(assessed(who=business), id="business-assessment")
        # Events behind them on the same streams: once these are applied, those were seen.
        await Feed(redis, profile)(applied(), registered(), paid())
        tables = ("profile_permit", "profile_taxpayer", "profile_assessment")
        counts = await profile.store.run(
            lambda tx: [tx.value(f"SELECT COUNT(*) FROM {t}") for t in tables]
        )
    assert counts == [1, 1, 0]


async def test_a_death_of_someone_never_heard_of_is_kept_not_an_error(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        await Feed(redis, profile)(died(STRANGER))
        assert sections(await profile.person(STRANGER))["registry"]["status"] == "deceased"


async def test_a_reissued_card_that_no_longer_lists_someone_says_so(
    settings: Settings, redis: Redis, store_url: str
) -> None:
    async with running(settings, store_url) as profile:
        feed = Feed(redis, profile)
        await feed(card(issued_on="2026-11-20", members=(NIK, SPOUSE)))
        await feed(card(issued_on="2026-11-28", members=(NIK,)))
        family = sections(await profile.person(SPOUSE))["family"]
    assert (family["kk"], family["card"]["listed"], family["card"]["members"]) == (KK, False, [NIK])
