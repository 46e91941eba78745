"""Progress lines for the steps of a bench run, so a long step never looks like a hang."""

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Off a terminal (a CI log, `| tee`) a line every few seconds is enough and stays readable.
_LOG_EVERY_S = 10.0


def say(message: str) -> None:
    """One progress line."""
    print(f"  .. {message}", flush=True)


@contextmanager
def ticking(
    label: str, expected_s: float | None = None, status: Callable[[], str] | None = None
) -> Iterator[None]:
    """Show elapsed time (and `status()`) while the body runs; a final line when it ends."""
    tty = sys.stdout.isatty()
    stop = threading.Event()
    started = time.monotonic()

    def line() -> str:
        elapsed = f"{time.monotonic() - started:.0f}s"
        if expected_s is not None:
            elapsed += f"/{expected_s:.0f}s"
        extra = f", {status()}" if status is not None else ""
        return f"  .. {label} [{elapsed}{extra}]"

    def tick() -> None:
        every = 1.0 if tty else _LOG_EVERY_S
        while not stop.wait(every):
            if tty:
                print(f"\r{line()}\x1b[K", end="", flush=True)
            else:
                print(line(), flush=True)

    say(label + (f" (~{expected_s:.0f}s)" if expected_s is not None else ""))
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        if tty:
            print("\r\x1b[K", end="", flush=True)
