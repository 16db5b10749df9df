"""Rates such as "5/s", "100/min" or "1000/h": read once by the settings, and again by the order throttle."""

from __future__ import annotations

PERIODS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """ "5/s", "100/min", "1000/h" -> (count, period in seconds). Raises ValueError for any other form."""
    count, _, period = rate.partition("/")
    if not (count.isdigit() and int(count) > 0 and period[:1].lower() in PERIODS_S):
        raise ValueError(f"not a rate: {rate!r}")
    return int(count), PERIODS_S[period[0].lower()]
