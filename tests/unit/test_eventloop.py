"""berth's daemons run on uvloop (berth.eventloop): the loop their entry points get."""

from __future__ import annotations

import asyncio

import uvloop

from berth import eventloop


def test_run_gives_the_coroutine_a_uvloop_loop_and_its_result() -> None:
    async def which() -> type:
        return type(asyncio.get_running_loop())

    assert issubclass(eventloop.run(which()), uvloop.Loop)
