"""One window's attribution, as a pure function: activities + price + energy -> rows.

Within a window ``[ws, we)`` of cost ``C`` (nano-dollars) and energy ``E`` (millijoules):

* each active request has an overlap ``o`` and a weight ``w`` (``o``, or ``o x tokens / duration``
  with ``tokens`` weighting when every active request has a token count);
* ``busy`` is the length of the union of the overlaps; ``usage = C x busy / L`` and is split by
  weight (what the requests consumed); ``idle = C - usage``;
* ``allocation`` splits all of ``C`` by weight (idle included: the bill), so a window with any
  request has nothing unallocated;
* energy: ``E x busy / L`` split by weight; ``idle energy = E - sum``.

Every split is a largest-remainder split of an integer, so the identities in the schema docstring
(m0003) hold exactly. The rows are tuples in the column order of ``cost_windows`` and
``request_costs``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from .energy import WindowEnergy
from .shares import largest_remainder, union_length, usd_from_nano

__all__ = ["Activity", "WindowPrice", "attribute_window", "busy_totals", "window_row"]

_TOKEN_SCALE = 1 << 20
_BY_ID = operator.itemgetter(0)  # Activity.request_id


class Activity(NamedTuple):
    """A self-hosted request as attribution sees it (end > start; times in wall-clock ns).

    A NamedTuple: one is made per self-hosted request on the pipeline thread, and a tuple is
    made 3-4x faster than a frozen dataclass (whose __init__ sets each field through
    object.__setattr__)."""

    request_id: int
    start_ns: int
    end_ns: int
    tokens: int | None = None
    model: str | None = None
    tenant: str | None = None
    endpoint: str | None = None
    operation: str | None = None


@dataclass(frozen=True, slots=True)
class WindowPrice:
    hourly_usd: Decimal | None
    cost_nusd: int | None  # the window's instance cost, nano-dollars
    gpu_count: int | None
    co2e_g_per_mj: float | None


def attribute_window(
    host: str,
    ws: int,
    we: int,
    activities: Sequence[Activity],
    price: WindowPrice,
    energy: WindowEnergy | None,
    method: str,
    now_ns: int,
) -> tuple[tuple, list[tuple]]:
    """The ``cost_windows`` row and the ``request_costs`` rows of one window."""
    length = we - ws
    acts = sorted(activities, key=_BY_ID)
    spans = [(max(a.start_ns, ws), min(a.end_ns, we)) for a in acts]
    overlaps = [e - s for s, e in spans]
    if method == "tokens" and acts and all(a.tokens for a in acts):
        weights = [a.tokens * o * _TOKEN_SCALE // (a.end_ns - a.start_ns) for a, o in zip(acts, overlaps)]
    else:
        method = "time"
        weights = overlaps
    ids = [a.request_id for a in acts]
    busy = union_length(spans) if acts else 0
    wsum = sum(weights) or 1
    usage_total, e_busy = busy_totals(price, energy, busy, length)

    cost = price.cost_nusd
    if cost is not None:
        usage = largest_remainder(usage_total, weights, ids)
        alloc = largest_remainder(cost, weights, ids) if acts else []
    else:
        usage = alloc = [None] * len(acts)
    if e_busy is not None:
        e_parts = largest_remainder(e_busy, weights, ids)
    else:
        e_parts = [None] * len(acts)
    gpus = energy.gpu_count if energy is not None else price.gpu_count
    busy_s = busy / 1e9
    co2 = price.co2e_g_per_mj

    rows = []
    for a, o, w, al, us, en in zip(acts, overlaps, weights, alloc, usage, e_parts):
        frac = w / wsum
        rows.append((
            a.request_id, host, ws, o / 1e9, frac, usd_from_nano(al), usd_from_nano(us), en,
            busy_s * gpus * frac if gpus else None, en * co2 if (en is not None and co2 is not None) else None,
            method, a.model, a.tenant, a.endpoint, a.operation,
        ))
    window = window_row(host, ws, we, price, energy, busy, len(acts), method, now_ns)
    return window, rows


def busy_totals(price: WindowPrice, energy: WindowEnergy | None, busy: int, length: int) -> tuple[int | None, int | None]:
    """The window's usage cost (nano-dollars) and busy energy (millijoules): its cost and its
    energy x busy / length, floored (what the requests' usage and energy shares sum to)."""
    cost = price.cost_nusd
    e_total = energy.energy_mj if energy is not None else None
    return (cost * busy // length if cost is not None else None,
            e_total * busy // length if e_total is not None else None)


def window_row(host: str, ws: int, we: int, price: WindowPrice, energy: WindowEnergy | None, busy: int, n: int,
               method: str, now_ns: int) -> tuple:
    """The ``cost_windows`` row of a window with ``n`` active requests busy for ``busy`` ns."""
    cost = price.cost_nusd
    usage_total, e_busy = busy_totals(price, energy, busy, we - ws)
    alloc_total = (cost if n else 0) if cost is not None else None
    e_total = energy.energy_mj if energy is not None else None
    co2 = price.co2e_g_per_mj
    return (
        host, ws, we, price.hourly_usd,
        usd_from_nano(cost),
        usd_from_nano(usage_total),
        usd_from_nano(cost - usage_total) if cost is not None else None,
        usd_from_nano(alloc_total),
        usd_from_nano(cost - alloc_total) if cost is not None else None,
        e_total,
        e_total - e_busy if e_total is not None else None,
        energy.source if energy is not None else None,
        energy.gpu_count if energy is not None else None,
        e_total * co2 if (e_total is not None and co2 is not None) else None,
        busy / 1e9, n, method, now_ns,
    )
