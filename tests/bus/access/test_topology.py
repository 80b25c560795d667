"""The topology: one file names every principal; every mistake is reported with its path."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import adapters.bapenda
import adapters.disnaker
import adapters.dpmptsp
import adapters.dukcapil
from bus.access.acl import AUDIT_HEAD
from bus.access.topology import (
    Topology,
    TopologyError,
    contracts,
    load_topology,
    password_variable,
)
from bus.signing import PublicSigningKey
from bus.specs import catalogue
from services.audit import head_key

ROOT = Path(__file__).parents[3]
KEY = base64.b64encode(bytes(range(32))).decode()

BASE: dict[str, Any] = {
    "version": 1,
    "departments": [
        {"code": "dukcapil", "name": "Dinas Kependudukan dan Pencatatan Sipil"},
        {"code": "bapenda", "name": "Badan Pendapatan Daerah"},
        {"code": "dinsos", "name": "Dinas Sosial"},
    ],
    "producers": [
        {
            "principal": "adapter-dukcapil",
            "department": "dukcapil",
            "adapter": "dukcapil-siak",
            "publishes": ["dukcapil.citizen.died.v1"],
        }
    ],
    "services": [
        {
            "principal": "svc-dinsos",
            "department": "dinsos",
            "group": "dinsos",
            "subscriptions": [{"type": "dukcapil.citizen.died.v1", "approved_by": "dukcapil"}],
            "publishes": ["dinsos.assistance.suspended.v1"],
        }
    ],
    "operators": [{"principal": "operator", "role": "admin"}],
}


def parse(change: Any = None) -> Topology:
    data = copy.deepcopy(BASE)
    if change is not None:
        change(data)
    return Topology.parse(data, source="test.yaml")


def problems(change: Any) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as caught:
        parse(change)
    assert str(caught.value).startswith("topology test.yaml has ")
    return caught.value.problems


def test_a_valid_topology_loads() -> None:
    topology = parse()
    assert topology.principals() == ["operator", "adapter-dukcapil", "svc-dinsos"]
    assert topology.owner("dukcapil.citizen.died.v1") == "dukcapil"
    assert [p.principal for p in topology.publishers()] == ["adapter-dukcapil", "svc-dinsos"]


def test_an_unknown_subscription_type_names_its_path_and_the_known_types() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["subscriptions"].append({"type": "x", "approved_by": "dukcapil"})

    [(path, problem)] = problems(change)
    assert path == "services[0].subscriptions[1]"
    assert problem.startswith("unknown event type 'x' — known: bapenda.payment.received.v1, ")
    assert "dukcapil.citizen.died.v1" in problem


def test_only_the_owner_of_a_type_can_approve_reading_it() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["subscriptions"][0]["approved_by"] = "bapenda"

    [(path, problem)] = problems(change)
    assert path == "services[0].subscriptions[0].approved_by"
    assert problem == (
        "dukcapil.citizen.died.v1 is owned by dukcapil: only dukcapil can approve reading it, "
        "not bapenda"
    )


def test_an_approval_by_an_undeclared_department_is_refused() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["subscriptions"][0]["approved_by"] = "dinkes"

    [(path, problem)] = problems(change)
    assert path == "services[0].subscriptions[0].approved_by"
    assert problem.startswith("unknown department 'dinkes' — declared: bapenda, dinsos, dukcapil")


def test_a_producer_publishes_only_its_own_departments_types() -> None:
    def change(data: dict[str, Any]) -> None:
        data["producers"][0]["publishes"].append("bapenda.payment.received.v1")

    [(path, problem)] = problems(change)
    assert path == "producers[0].publishes[1]"
    assert "owned by bapenda, not by dukcapil" in problem


def test_a_publishing_service_publishes_only_its_own_departments_types() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["publishes"] = ["dukcapil.citizen.born.v1"]

    [(path, problem)] = problems(change)
    assert (path, problem.split(":")[0]) == (
        "services[0].publishes[0]",
        "dukcapil.citizen.born.v1 is owned by dukcapil, not by dinsos",
    )


def test_names_must_be_unique() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"].append(copy.deepcopy(data["services"][0]))
        data["services"][1]["principal"] = "operator"
        data["producers"].append({**data["producers"][0], "principal": "adapter-two"})
        data["departments"].append({"code": "dinsos", "name": "again"})

    found = problems(change)
    assert ("departments[3]", "department code 'dinsos' is already used by departments[2]") in (
        found
    )
    assert ("services[1]", "principal 'operator' is already operators[0]") in found
    assert ("producers[1]", "adapter name 'dukcapil-siak' is already used by producers[0]") in (
        found
    )
    assert ("services[1]", "consumer group 'dinsos' is already used by services[0]") in found
    assert any("password variable SIMPUL_REDIS_PASSWORD_OPERATOR" in p for _, p in found)


def test_every_problem_is_reported_at_once_with_structural_errors_first() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["grup"] = "typo"
        data["services"][0]["group"] = "Dinsos Group"
        data["operators"][0]["role"] = "root"
        data["producers"][0]["principal"] = "Adapter_Dukcapil"

    found = dict(problems(change))
    assert found["services[0].grup"] == "unknown field (a typo?)"
    assert found["services[0].group"].startswith("must be lowercase letters")
    assert (
        "'admin', 'readonly', 'monitor', 'exporter', 'health', 'replication' or 'sentinel'"
        in found["operators[0].role"]
    )
    assert found["producers[0].principal"].startswith("must be lowercase letters, digits and '-'")


def test_the_archive_must_subscribe_to_every_registered_type() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["archive"] = True

    [(path, problem)] = problems(change)
    assert path == "services[0].subscriptions"
    assert problem.startswith("an archive reads every stream, so it must subscribe to every")
    assert "dukcapil.citizen.born.v1" in problem
    assert "dukcapil.citizen.died.v1," not in problem  # the one it has is not missing


def test_a_service_needs_a_subscription_and_a_producer_a_type() -> None:
    def unsubscribed(data: dict[str, Any]) -> None:
        data["services"][0]["subscriptions"] = []

    def idle(data: dict[str, Any]) -> None:
        data["producers"][0]["publishes"] = []

    assert problems(unsubscribed) == [
        ("services[0].subscriptions", "a service needs at least one subscription")
    ]
    [(path, problem)] = problems(idle)
    assert path == "producers[0].publishes"
    assert "at least 1 item" in problem


def test_principal_default_is_reserved() -> None:
    def change(data: dict[str, Any]) -> None:
        data["operators"][0]["principal"] = "default"

    assert problems(change) == [
        ("operators[0]", "principal 'default' is Redis's own user (always off)")
    ]


def test_signing_keys_of_producers_and_publishing_services() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def change(data: dict[str, Any]) -> None:
        data["producers"][0]["keys"] = [
            {
                "id": "dukcapil-2026",
                "public_key": KEY,
                "not_before": start,
                "not_after": start + timedelta(days=365),
            },
            {"id": "dukcapil-2027", "public_key": KEY},
        ]
        data["services"][0]["keys"] = [{"id": "dinsos-1", "public_key": KEY}]

    keys = parse(change).signing_keys()
    assert keys[0] == PublicSigningKey(
        key_id="dukcapil-2026",
        principal="adapter-dukcapil",
        department="dukcapil",
        public_key=bytes(range(32)),
        types=frozenset({"dukcapil.citizen.died.v1"}),
        not_before=start,
        not_after=start + timedelta(days=365),
    )
    assert keys[0].valid_at(start) and not keys[0].valid_at(start + timedelta(days=365))
    assert not keys[0].valid_at(start - timedelta(seconds=1))
    assert (keys[1].key_id, keys[1].not_before, keys[1].not_after) == ("dukcapil-2027", None, None)
    assert keys[1].valid_at(start)
    assert keys[2].principal == "svc-dinsos"
    assert keys[2].types == frozenset({"dinsos.assistance.suspended.v1"})


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"public_key": "not base64!"}, "is not valid base64"),
        (
            {"public_key": base64.b64encode(b"short").decode()},
            "must decode to 32 bytes (an Ed25519 public key), got 5",
        ),
        ({"public_key": 12}, "must be the base64 text of the 32-byte Ed25519 public key"),
        ({"not_before": datetime(2026, 1, 1)}, "needs a UTC offset"),
        ({"id": "a key"}, "must be letters, digits"),
        ({"colour": "blue"}, "unknown field (a typo?)"),
    ],
)
def test_a_bad_key_is_refused_with_its_path(key: dict[str, Any], message: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data["producers"][0]["keys"] = [{"id": "k1", "public_key": KEY, **key}]

    [(path, problem)] = problems(change)
    assert path.startswith("producers[0].keys[0]")
    assert message in problem


def test_key_ids_are_unique_and_windows_are_ordered() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def change(data: dict[str, Any]) -> None:
        data["producers"][0]["keys"] = [{"id": "k1", "public_key": KEY}]
        data["services"][0]["keys"] = [
            {"id": "k1", "public_key": KEY, "not_before": now, "not_after": now}
        ]

    found = problems(change)
    assert ("services[0].keys[0]", "key id 'k1' is already used by producers[0].keys[0]") in found
    assert ("services[0].keys[0]", "not_after must be later than not_before") in found


def test_a_principal_that_publishes_nothing_has_no_keys() -> None:
    def change(data: dict[str, Any]) -> None:
        data["services"][0]["publishes"] = []
        data["services"][0]["keys"] = [{"id": "k1", "public_key": KEY}]

    assert problems(change) == [
        ("services[0].keys", "a principal that publishes nothing has nothing to sign")
    ]


def test_password_variables_default_to_the_principal_name() -> None:
    topology = parse(lambda d: d["operators"][0].update(password_env="OPS_REDIS_SECRET"))
    assert password_variable(topology.operators[0]) == "OPS_REDIS_SECRET"
    assert password_variable(topology.producers[0]) == "SIMPUL_REDIS_PASSWORD_ADAPTER_DUKCAPIL"


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"line \d+, column \d+: not valid YAML"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\ndepartments: [\n")
        load_topology(bad)
    with pytest.raises(TopologyError, match="must be a mapping"):
        listed = tmp_path / "list.yaml"
        listed.write_text("- 1\n")
        load_topology(listed)
    with pytest.raises(TopologyError, match="version"):
        old = tmp_path / "old.yaml"
        old.write_text("version: 2\ndepartments: [{code: a, name: A}]\n")
        load_topology(old)
    with pytest.raises(Exception, match="cannot read topology"):
        load_topology(tmp_path / "missing.yaml")


# -- the city's topology ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city() -> Topology:
    return load_topology(ROOT / "deploy/topology.yaml", registry=contracts())


def test_the_city_topology_covers_what_every_service_handles(city: Topology) -> None:
    handled = catalogue.handled(catalogue.find_services("services"))
    assert set(handled) == {s.group for s in city.services}
    assert city.uncovered(handled) == {}
    archive = next(s for s in city.services if s.archive)
    assert archive.group == "audit"
    assert handled["audit"] == {s.type for s in archive.subscriptions}


def test_uncovered_names_what_a_service_handles_without_approval(city: Topology) -> None:
    gaps = city.uncovered(
        {
            "dinkes": {"dukcapil.citizen.born.v1", "dukcapil.citizen.died.v1"},
            "newcomer": {"dukcapil.citizen.born.v1"},
        }
    )
    assert gaps == {
        "dinkes": ["dukcapil.citizen.died.v1"],
        "newcomer": ["dukcapil.citizen.born.v1"],
    }


def test_the_city_topology_names_the_adapters_as_their_code_does(city: Topology) -> None:
    names = {p.principal: p.adapter for p in city.producers}
    assert names == {
        "adapter-dukcapil": adapters.dukcapil.NAME,
        "adapter-dpmptsp": adapters.dpmptsp.NAME,
        "adapter-bapenda": adapters.bapenda.NAME,
        "adapter-disnaker": adapters.disnaker.NAME,
        # The super-app's own integration (no adapter of this repository; the demo plays it).
        "adapter-identitas": "diskominfo-identitas",
    }
    assert head_key() == AUDIT_HEAD


def test_incidental_reads_show_what_a_stream_wide_grant_reveals(city: Topology) -> None:
    """Direct delivery: a service's grant is the whole stream. Routed (the shipped topology):
    nothing incidental, the router writes only approved types into each inbox."""
    assert city.routed
    assert city.incidental_reads() == {}
    document = yaml.safe_load((ROOT / "deploy/topology.yaml").read_text())
    document["delivery"] = "direct"
    found = Topology.parse(document, registry=contracts()).incidental_reads()
    # dinkes was approved births only, but births share the stream with deaths and moves.
    assert found["svc-dinkes"] == ["dukcapil.citizen.died.v1", "dukcapil.citizen.moved.v1"]
    assert "dukcapil.citizen.born.v1" in found["svc-notifier"]
    # dinsos was approved placements only; the registrations share their stream.
    assert found["svc-dinsos"] == ["disnaker.jobseeker.registered.v1"]
    assert "svc-profile" not in found  # approved every type of the streams it reads
    assert "svc-audit" not in found
