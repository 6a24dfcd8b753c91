"""The GPU panel: one card per device with utilization, memory and power over time (sparklines).

Reads the ``gpus`` view; every figure may be missing (None) and then reads ``-``, never 0.
Cards are kept per device and updated in place, so a poll does not rebuild the widgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from . import format as fmt

__all__ = ["GpuPanel", "GpuInfo", "gpu_devices", "Spark", "spark_line"]

_BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class GpuInfo:
    key: str
    label: str
    utilization_pct: float | None
    mem_used_bytes: float | None
    mem_total_bytes: float | None
    power_w: float | None
    power_limit_w: float | None
    util_history: tuple[float, ...]
    mem_history: tuple[float, ...]
    power_history: tuple[float, ...]


def _series(history: Any, key: str) -> tuple[float, ...]:
    """A history given as a list of sample dicts or as a dict of lists; missing samples dropped."""
    if isinstance(history, dict):
        values = history.get(key) or []
    elif isinstance(history, list):
        values = [h.get(key) for h in history if isinstance(h, dict)]
    else:
        values = []
    return tuple(float(v) for v in values if v is not None)


def gpu_devices(data: dict[str, Any]) -> list[GpuInfo]:
    out = []
    for i, g in enumerate(data.get("gpus") or []):
        hist = g.get("history") or []
        mem_used = _series(hist, "mem_used_bytes")
        total = g.get("mem_total_bytes")
        index = g.get("gpu_index", g.get("index"))
        name = g.get("gpu_name") or g.get("name") or "GPU"
        out.append(GpuInfo(
            key=str(g.get("gpu_uuid") or g.get("uuid") or i),
            label=f"GPU {index if index is not None else i} · {name}" + (f" · {g['host']}" if g.get("host") else ""),
            utilization_pct=g.get("utilization_pct"),
            mem_used_bytes=g.get("mem_used_bytes"),
            mem_total_bytes=total,
            power_w=g.get("power_w"),
            power_limit_w=g.get("power_limit_w"),
            util_history=_series(hist, "utilization_pct"),
            mem_history=tuple(m / total * 100 for m in mem_used) if total else mem_used,
            power_history=_series(hist, "power_w"),
        ))
    return out


def spark_line(values: tuple[float, ...], top: float, width: int) -> str:
    """Values as one line of bars on a fixed scale 0..top (a flat 12% reads low, not mid-height).

    Newest on the right; more values than columns are averaged into buckets, fewer are padded left.
    """
    if width <= 0 or not values or not top > 0:
        return ""
    if len(values) > width:
        n = len(values)
        values = tuple(
            sum(chunk) / len(chunk)
            for chunk in (values[i * n // width:(i + 1) * n // width] for i in range(width))
            if chunk
        )
    bars = [_BARS[max(0, min(len(_BARS) - 1, round(v / top * (len(_BARS) - 1))))] for v in values]
    return " " * (width - len(bars)) + "".join(bars)


class Spark(Widget):
    """A sparkline with a fixed scale (Textual's own scales to the data's min and max)."""

    DEFAULT_CSS = "Spark { height: 1; color: $accent; }"

    values: reactive[tuple[float, ...]] = reactive(())
    top: reactive[float] = reactive(100.0)

    def render(self) -> str:
        return spark_line(self.values, self.top, self.size.width)


class _Metric(Horizontal):
    def __init__(self, label: str, kind: str) -> None:
        super().__init__(classes=f"metric {kind}")
        self.label = label

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="metric-label")
        yield Spark()
        yield Static("-", classes="metric-value")

    def set(self, history: tuple[float, ...], value: str, top: float | None) -> None:
        spark = self.query_one(Spark)
        spark.top = top or max(history, default=0.0) or 1.0
        spark.values = history
        self.query_one(".metric-value", Static).update(value)


class GpuCard(Vertical):
    def __init__(self, info: GpuInfo, *, id: str) -> None:
        super().__init__(id=id, classes="gpu-card")
        self.info = info

    def on_mount(self) -> None:
        self.show(self.info)

    def compose(self) -> ComposeResult:
        yield Static("", classes="gpu-title")
        yield _Metric("util", "util")
        yield _Metric("mem", "mem")
        yield _Metric("power", "power")

    def show(self, g: GpuInfo) -> None:
        self.info = g
        self.query_one(".gpu-title", Static).update(g.label)
        mem = f"{fmt.gib(g.mem_used_bytes)}/{fmt.gib(g.mem_total_bytes)}G" if g.mem_total_bytes else fmt.gib(g.mem_used_bytes)
        power = fmt.watts(g.power_w) + (f"/{fmt.watts(g.power_limit_w)}" if g.power_limit_w else "")
        self.query_one(".util", _Metric).set(g.util_history, fmt.pct(g.utilization_pct), 100.0)
        self.query_one(".mem", _Metric).set(g.mem_history, mem, 100.0 if g.mem_total_bytes else None)
        self.query_one(".power", _Metric).set(g.power_history, power, g.power_limit_w)


class GpuPanel(Vertical):
    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = "GPUs"
        self.devices: list[GpuInfo] = []

    def compose(self) -> ComposeResult:
        yield Static("", classes="note")
        yield VerticalScroll(classes="cards")

    def show_note(self, text: str) -> None:
        self.query_one(".note", Static).update(text)
        self.query_one(".note").display = True
        self.query_one(".cards").display = False
        self.devices = []

    def show_devices(self, devices: list[GpuInfo], note: str | None = None) -> None:
        self.devices = devices
        holder = self.query_one(".cards", VerticalScroll)
        self.query_one(".note", Static).display = note is not None
        if note is not None:
            self.query_one(".note", Static).update(note)
        holder.display = bool(devices)
        cards = {c.id: c for c in holder.query(GpuCard)}
        wanted = [f"gpu-{_css_id(g.key)}" for g in devices]
        for cid, card in cards.items():
            if cid not in wanted:
                card.remove()
        for g, cid in zip(devices, wanted):
            card = cards.get(cid)
            if card is None:
                holder.mount(GpuCard(g, id=cid))
            else:
                card.show(g)


def _css_id(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in key)
