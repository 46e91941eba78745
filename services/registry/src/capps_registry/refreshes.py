"""Background work that at most one task per key runs at a time, cancelled at shutdown."""

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundRefreshes:
    """The refreshes under way in this process, at most one per key."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Any]] = {}

    def start_once(self, key: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> bool:
        """Run `work()` in the background unless one for `key` runs already; whether it started."""
        if key in self._running:
            return False
        task = asyncio.create_task(work(), name=f"refresh {key}")
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))
        return True

    async def aclose(self) -> None:
        """Cancel what still runs and wait for it to end."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
