"""The agent's subprocess seam: child exits learnt through pidfds, not a thread per child."""

from __future__ import annotations

import asyncio
import threading

from berth.network.command import SubprocessRunner, use_pidfd_child_watcher


def _in_fresh_policy(main: object) -> None:
    """Run ``main`` (a coroutine function) under a new default event loop policy, so that
    the child watcher chosen here does not leak into other tests."""
    before = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        asyncio.run(main())  # type: ignore[operator]
    finally:
        asyncio.set_event_loop_policy(before)


def test_children_are_waited_for_without_a_thread_each() -> None:
    seen: dict[str, object] = {}

    async def main() -> None:
        assert use_pidfd_child_watcher()
        baseline = {t.ident for t in threading.enumerate()}
        # `cat` lives until its stdin closes: while it runs, no waiter thread may exist.
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        seen["threads while it runs"] = [
            t.name for t in threading.enumerate() if t.ident not in baseline
        ]
        out, _ = await proc.communicate(b"hello")
        seen["output"], seen["rc"] = out, proc.returncode
        # The runner's own path, several at once, with their exit statuses.
        done = await asyncio.gather(
            *(SubprocessRunner().run(["sh", "-c", f"exit {rc}"]) for rc in (0, 3, 7))
        )
        seen["codes"] = [d.returncode for d in done]

    _in_fresh_policy(main)
    assert seen == {
        "threads while it runs": [],
        "output": b"hello",
        "rc": 0,
        "codes": [0, 3, 7],
    }
