"""Exact integer splitting: the arithmetic that makes cost and energy conserve.

Money is integer nano-dollars and energy integer millijoules here; :func:`largest_remainder`
splits a total among weights so that the parts sum to the total exactly, and
:func:`window_cost_nusd` prices a window so that consecutive windows telescope to the price of
their union.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from decimal import Decimal

__all__ = ["HOUR_NS", "largest_remainder", "union_length", "window_cost_nusd", "usd_from_nano", "nano_from_usd"]

HOUR_NS = 3_600_000_000_000
_NANO = Decimal("0.000000001")


def largest_remainder(total: int, weights: Sequence[int], tiebreak: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights``; the parts sum to ``total`` exactly.

    Each part is ``floor(total * w / W)``; the units left over go one each to the largest
    remainders, ties broken by the smaller ``tiebreak`` (the request id), so the split is
    deterministic. All-zero weights split equally.
    """
    n = len(weights)
    if n == 0:
        return []
    wsum = sum(weights)
    if wsum <= 0:
        weights = [1] * n
        wsum = n
    parts = []
    rems = []
    given = 0
    for w in weights:
        q, r = divmod(total * w, wsum)
        parts.append(q)
        rems.append(r)
        given += q
    left = total - given
    if left:
        # one int key per part: larger remainder first, then smaller tiebreak (its rank among them)
        if all(tiebreak[i] <= tiebreak[i + 1] for i in range(n - 1)):
            rank: Sequence[int] = range(n)
        else:
            rank = [0] * n
            for r, i in enumerate(sorted(range(n), key=tiebreak.__getitem__)):
                rank[i] = r
        keys = [(wsum - r) * n + k for r, k in zip(rems, rank)]
        if left * 8 < n:
            chosen = heapq.nsmallest(left, range(n), key=keys.__getitem__)
        else:
            chosen = sorted(range(n), key=keys.__getitem__)[:left]
        for i in chosen:
            parts[i] += 1
    return parts


def union_length(intervals: Sequence[tuple[int, int]]) -> int:
    """Length of the union of half-open ``(start, end)`` intervals."""
    total = 0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def window_cost_nusd(hourly_nusd: int, effective_from_ns: int, start_ns: int, end_ns: int) -> int:
    """Price of ``[start, end)`` at ``hourly_nusd`` nano-dollars/hour, in nano-dollars.

    The cumulative cost since ``effective_from_ns`` is floored to the nano-dollar and the window
    takes the difference, so a run of windows sums to the price of the whole run (to 1 n$).
    """
    return (hourly_nusd * (end_ns - effective_from_ns)) // HOUR_NS - (hourly_nusd * (start_ns - effective_from_ns)) // HOUR_NS


_NANO_EXP = Decimal("1E-9")


def usd_from_nano(n: int | None) -> Decimal | None:
    """Integer nano-dollars to dollars, exponent -9 (a multiplication is ~1.5x faster than scaleb)."""
    return None if n is None else Decimal(n) * _NANO_EXP


def nano_from_usd(usd: Decimal) -> int:
    """Dollars to integer nano-dollars (half-even beyond the 9th place)."""
    return int(usd.quantize(_NANO).scaleb(9))
