"""The one backoff rule for reconnecting to a store, a broker or the registry."""

FIRST_DELAY_S = 0.2
MAX_DELAY_S = 10.0
# A process that is not ready until a dependency answers (the gateway's keys, app state and
# producer) waits at most this long, so it is ready within seconds of the dependency's return.
READINESS_MAX_DELAY_S = 5.0


def backoff_delay(
    failures: int, first_s: float = FIRST_DELAY_S, cap_s: float = MAX_DELAY_S
) -> float:
    """Seconds to wait after `failures` failures in a row: none, then doubling up to a cap."""
    if failures <= 0:
        return 0.0
    # The exponent is bounded so a long outage cannot overflow the float.
    return min(first_s * float(2 ** min(failures - 1, 32)), cap_s)
