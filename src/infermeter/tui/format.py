"""Short, fixed-width renderings of figures for the tables: money, rates, durations, shares, bytes.

Unknown (``None``) is ``-``; an unknown price is ``unpriced`` where the column is money. Money
arrives from the API as a float (display only: the store keeps exact decimals).
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["money", "rate", "seconds", "share", "gib", "count", "clock", "watts", "pct"]

NONE = "-"


def money(v: Any, unknown: str = NONE) -> str:
    if v is None:
        return unknown
    x = float(v)
    a = abs(x)
    if a == 0:
        return "$0"
    if a >= 1_000_000:
        return f"${x / 1_000_000:,.2f}M"
    if a >= 1000:
        return f"${x:,.0f}"
    if a >= 1:
        return f"${x:,.2f}"
    if a >= 0.01:
        return f"${x:.3f}"
    return f"${x:.2g}" if a >= 1e-6 else "<$0.000001"


def rate(v: Any) -> str:
    if v is None:
        return NONE
    x = float(v)
    if x == 0:
        return "0"
    if x >= 1000:
        return f"{x / 1000:.1f}k"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.01:
        return f"{x:.2f}"
    if x >= 0.001:
        return f"{x:.3f}"
    return "<.001"


def seconds(v: Any) -> str:
    if v is None:
        return NONE
    x = float(v)
    if x < 1:
        return f"{x * 1000:.0f}ms"
    if x < 60:
        return f"{x:.2f}s" if x < 10 else f"{x:.1f}s"
    return f"{x / 60:.1f}m"


def share(v: Any) -> str:
    return NONE if v is None else f"{float(v) * 100:.0f}%"


def pct(v: Any) -> str:
    return NONE if v is None else f"{float(v):.0f}%"


def gib(v: Any) -> str:
    return NONE if v is None else f"{float(v) / 2**30:.1f}"


def watts(v: Any) -> str:
    return NONE if v is None else f"{float(v):.0f}W"


def count(v: Any) -> str:
    return NONE if v is None else f"{int(v):,}"


def clock(ns: int | None) -> str:
    """Local wall-clock time of an epoch-ns timestamp, HH:MM:SS."""
    if ns is None:
        return NONE
    return time.strftime("%H:%M:%S", time.localtime(ns / 1e9))
