"""The city's least-privilege users on a Redis Cluster: the rendered (routed) ACL loaded on
every master, and through the cluster client a producer reaching only its own intake and a
service only its own inboxes, whichever master holds them (tests/cluster/test_router.py runs
an event through intake, router and inbox on the same kind of cluster)."""

from __future__ import annotations

import pytest
from redis.exceptions import NoPermissionError

from bus import Publisher, keys
from bus.connection import connect
from schemas.dukcapil import CitizenDied
from tests.cluster.conftest import AclCluster
from tests.cluster.helpers import example

SOURCE = "urn:malangkota:dukcapil:siak"


async def test_the_city_users_reach_only_their_own_keys_on_every_master(
    acl_cluster: AclCluster,
) -> None:
    for index in range(len(acl_cluster.cluster.nodes)):  # the default user is off everywhere
        with acl_cluster.admin(index) as operator:
            assert "off" in operator.acl_getuser("default")["flags"]
    citizen = keys.stream("dukcapil.citizen")
    adapter = connect(acl_cluster.url("adapter-dukcapil"), cluster=True)
    dinkes = connect(acl_cluster.url("svc-dinkes"), cluster=True)
    operator = connect(acl_cluster.url("operator"), cluster=True)
    try:
        own = Publisher(adapter, source=SOURCE, signer=None, intake="adapter-dukcapil")
        assert not (await own.publish(example(CitizenDied, 0))).duplicate
        direct = Publisher(adapter, source=SOURCE, signer=None, intake=None)
        with pytest.raises(NoPermissionError):  # the department stream: the router's alone
            await direct.publish(example(CitizenDied, 1))
        for key in (keys.intake("adapter-bapenda"), keys.stream("bapenda.payment")):
            with pytest.raises(NoPermissionError):
                await adapter.xadd(key, {"type": "forged"})
        other = keys.inbox(citizen, "dinsos")
        await operator.xgroup_create(other, "dinsos", "$", mkstream=True)
        await operator.xgroup_create(keys.inbox(citizen, "dinkes"), "dinkes", "$", mkstream=True)
        for command in (
            ("XREADGROUP", "GROUP", "dinsos", "c", "STREAMS", other, "0"),
            ("XGROUP", "SETID", other, "dinsos", "$"),
            ("XREADGROUP", "GROUP", "dinkes", "c", "STREAMS", citizen, ">"),
        ):
            with pytest.raises(NoPermissionError):
                await dinkes.execute_command(*command)
        mine = await dinkes.xreadgroup("dinkes", "c", {keys.inbox(citizen, "dinkes"): ">"})
        assert mine == []
        assert await operator.xlen(keys.intake("adapter-dukcapil")) == 1
    finally:
        await adapter.aclose()
        await dinkes.aclose()
        await operator.aclose()
