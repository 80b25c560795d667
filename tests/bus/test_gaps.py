"""bus.gaps against a real Redis 7: entries a group never read that are gone are counted."""

from __future__ import annotations

from redis.asyncio import Redis

from bus import gaps, keys

STREAM = keys.stream("test.gap")
GROUP = "g"


async def _add(redis: Redis, n: int) -> list[str]:
    return [(await redis.xadd(STREAM, {"n": str(i)})).decode() for i in range(n)]


async def _read(redis: Redis, count: int, group: str = GROUP) -> None:
    await redis.xreadgroup(group, "c", {STREAM: ">"}, count=count)


async def _trim_before(redis: Redis, entry_id: str) -> None:
    await redis.xtrim(STREAM, minid=entry_id, approximate=False)


async def test_a_group_whose_unread_entries_were_trimmed_hears_how_many_once(
    redis: Redis,
) -> None:
    ids = await _add(redis, 10)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    await _read(redis, 3)
    assert await gaps.check(redis, STREAM, GROUP) is None  # the first check records the cursor
    await _trim_before(redis, ids[7])  # 0-2 were read; 3-6 were not: 4 lost
    gap = await gaps.check(redis, STREAM, GROUP)
    assert gap is not None
    assert (gap.lost, gap.after, gap.before) == (4, ids[2], ids[7])
    assert "4 entries" in gap.describe() and GROUP in gap.describe()
    assert await gaps.check(redis, STREAM, GROUP) is None  # reported once
    await _read(redis, 10)
    assert await gaps.check(redis, STREAM, GROUP) is None


async def test_trimming_only_what_the_group_read_is_no_gap(redis: Redis) -> None:
    ids = await _add(redis, 10)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    assert await gaps.check(redis, STREAM, GROUP) is None
    await _read(redis, 6)
    assert await gaps.check(redis, STREAM, GROUP) is None
    await _trim_before(redis, ids[6])
    assert await gaps.check(redis, STREAM, GROUP) is None
    await _add(redis, 5)
    await _trim_before(redis, ids[6])
    assert await gaps.check(redis, STREAM, GROUP) is None


async def test_a_group_deleted_and_recreated_after_a_trim_learns_what_it_lost(
    redis: Redis,
) -> None:
    ids = await _add(redis, 10)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    await _read(redis, 4)
    assert await gaps.check(redis, STREAM, GROUP) is None  # cursor: 4 read, up to ids[3]
    # While the service is down: its group is deleted and the stream trimmed to the last 2.
    await redis.xgroup_destroy(STREAM, GROUP)
    await _trim_before(redis, ids[8])
    await redis.xgroup_create(STREAM, GROUP, id="0")  # what the consumer does on start
    gap = await gaps.check(redis, STREAM, GROUP)
    assert gap is not None
    assert (gap.lost, gap.after, gap.before) == (4, ids[3], ids[8])  # ids[4..7]
    assert await gaps.check(redis, STREAM, GROUP) is None


async def test_a_recreated_group_behind_its_cursor_catches_up_without_a_report(
    redis: Redis,
) -> None:
    await _add(redis, 10)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    await _read(redis, 8)
    await gaps.check(redis, STREAM, GROUP)
    await redis.xgroup_destroy(STREAM, GROUP)
    await redis.xgroup_create(STREAM, GROUP, id="0")  # nothing trimmed: it reads all again
    assert await gaps.check(redis, STREAM, GROUP) is None
    cursor = await redis.hgetall(keys.cursor(STREAM, GROUP))
    await _read(redis, 3)
    assert await gaps.check(redis, STREAM, GROUP) is None
    assert await redis.hgetall(keys.cursor(STREAM, GROUP)) == cursor  # kept until caught up
    await _read(redis, 10)
    assert await gaps.check(redis, STREAM, GROUP) is None
    assert await redis.hgetall(keys.cursor(STREAM, GROUP)) != cursor


async def test_history_older_than_a_new_group_is_not_its_loss(redis: Redis) -> None:
    ids = await _add(redis, 10)
    await _trim_before(redis, ids[5])
    await redis.xgroup_create(STREAM, GROUP, id="0")  # a new service on a trimmed stream
    assert await gaps.check(redis, STREAM, GROUP) is None
    assert await gaps.check(redis, STREAM, GROUP) is None
    await _trim_before(redis, ids[7])  # but what it had not read since is
    gap = await gaps.check(redis, STREAM, GROUP)
    assert gap is not None and gap.lost == 2


async def test_no_stream_or_no_group_is_no_gap(redis: Redis) -> None:
    assert await gaps.check(redis, STREAM, GROUP) is None
    await _add(redis, 1)
    assert await gaps.check(redis, STREAM, GROUP) is None
    assert await redis.exists(keys.cursor(STREAM, GROUP)) == 0
