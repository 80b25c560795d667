"""A cancelled task's Redis command raises its cancellation, whenever the cancellation lands
(bus.connection): redis-py's write, bounded by ``asyncio.wait_for``, dropped one arriving as the
write completed on Python 3.11, and a Ctrl-C of the demo was lost so — on real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.asyncio import Redis

HOPS = 12  # loop iterations to try: a command on a connected client takes a few


def _after(hops: int, call: Callable[[], object]) -> None:
    """``call`` after ``hops`` turns of the running loop."""
    if hops == 0:
        call()
        return
    asyncio.get_running_loop().call_soon(_after, hops - 1, call)


async def test_a_command_cancelled_at_any_turn_of_the_loop_raises_the_cancellation(
    redis: Redis,
) -> None:
    await redis.ping()  # connected: the cancellations below land on the command itself
    lost = []
    for hops in range(HOPS):
        command = asyncio.create_task(redis.echo(f"turn {hops}"))
        _after(hops, command.cancel)
        try:
            await command
        except asyncio.CancelledError:
            continue
        if command.cancelling():  # asked to cancel before it ended, yet it returned
            lost.append(hops)
    assert not lost, f"cancellations lost at loop turns {lost}"


async def test_a_cancelled_command_leaves_no_reply_for_the_next(redis: Redis) -> None:
    """The cancellation raised after the write closes the connection: the reply of the
    command cut short is never taken for a later command's."""
    for hops in range(HOPS):
        command = asyncio.create_task(redis.echo(f"cut {hops}"))
        _after(hops, command.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await command
        assert await redis.echo(f"next {hops}") == f"next {hops}".encode()
