"""Statistics of the bench's figures: percentiles, the spread of a list of durations, and rates. Pure."""

from __future__ import annotations

from typing import Any

PERCENTILES = (0.5, 0.9, 0.99)


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) by linear interpolation between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float]) -> dict[str, Any]:
    """{p50, p90, p99, max} rounded to 2 decimals (None for no values), and the count n."""
    rounded = {f"p{int(q * 100)}": percentile(values, q) for q in PERCENTILES}
    rounded["max"] = max(values) if values else None
    rounded = {k: (round(v, 2) if v is not None else None) for k, v in rounded.items()}
    return {**rounded, "n": len(values)}


def per_second(count: int, seconds: float) -> float:
    """`count` over `seconds`, to one decimal; a window of no length counts as a nanosecond, not an error."""
    return round(count / max(seconds, 1e-9), 1)
