"""Table panels: a bordered DataTable whose rows are view dicts, sortable by any column.

A panel shows a note instead of its table when there is nothing to show (no data yet, a view the
agent does not serve, an error), so an empty screen always says why and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from . import format as fmt

__all__ = ["Column", "TablePanel", "MODEL_COLUMNS", "TENANT_COLUMNS", "TAIL_COLUMNS", "REC_COLUMNS"]


@dataclass(frozen=True)
class Column:
    key: str  # the field of the row dict, also the sort key
    label: str
    render: Callable[[Any], str] = str
    numeric: bool = True
    error_when: str | None = None  # a value shown in the error colour (a failed status)
    descending: bool | None = None  # the first direction when sorting by it; default: numbers high to low
    unpriced_when_none: bool = False  # money: None reads "unpriced" (in the warning colour) when the row has unpriced
    # requests, "pending" (dim) when its requests' cost windows are not final yet


MODEL_COLUMNS = (
    Column("model", "model", str, numeric=False),
    Column("requests_per_s", "req/s", fmt.rate),
    Column("tokens_per_s", "tok/s", fmt.rate),
    Column("latency_p50_s", "p50", fmt.seconds),
    Column("latency_p95_s", "p95", fmt.seconds),
    Column("ttft_p50_s", "ttft", fmt.seconds),
    Column("usd_per_1k_requests", "$/1k", fmt.money, unpriced_when_none=True),
    Column("usd_per_1m_tokens", "$/1M", fmt.money, unpriced_when_none=True),
    Column("unpriced_requests", "unpriced", fmt.count),
    Column("share_of_spend", "share", fmt.share),
    Column("cost_usd", "cost", fmt.money, unpriced_when_none=True),
    Column("requests", "requests", fmt.count),
    Column("errors", "errors", fmt.count),
)

TENANT_COLUMNS = (
    Column("tenant", "tenant", str, numeric=False),
    Column("cost_usd", "cost", fmt.money, unpriced_when_none=True),
    Column("share_of_spend", "share", fmt.share),
    Column("requests_per_s", "req/s", fmt.rate),
    Column("tokens_per_s", "tok/s", fmt.rate),
    Column("usd_per_1k_requests", "$/1k", fmt.money, unpriced_when_none=True),
    Column("latency_p95_s", "p95", fmt.seconds),
    Column("models", "models", fmt.count),
    Column("unpriced_requests", "unpriced", fmt.count),
    Column("requests", "requests", fmt.count),
    Column("errors", "errors", fmt.count),
)

TAIL_COLUMNS = (
    Column("start_time_ns", "time", fmt.clock, numeric=False, descending=True),
    Column("model", "model", str, numeric=False),
    Column("tenant", "tenant", lambda v: v or "-", numeric=False),
    Column("status", "status", str, numeric=False, error_when="error"),
    Column("duration_s", "latency", fmt.seconds),
    Column("ttft_s", "ttft", fmt.seconds),
    Column("input_tokens", "in", fmt.count),
    Column("output_tokens", "out", fmt.count),
    Column("cost_usd", "cost", fmt.money, unpriced_when_none=True),
    Column("endpoint", "endpoint", lambda v: v or "-", numeric=False),
)

REC_COLUMNS = (
    Column("savings_usd_month", "$/month", lambda v: fmt.money(v, "?")),
    Column("title", "recommendation", str, numeric=False),
    Column("confidence", "conf.", lambda v: v if isinstance(v, str) else fmt.share(v)),
    Column("status", "status", str, numeric=False),
)


def _sort_value(row: dict[str, Any], key: str) -> tuple:
    v = row.get(key)
    if v is None:
        return (1, 0)  # unknowns sort last whatever the direction, see TablePanel.sorted_rows
    if isinstance(v, str):
        return (0, v.lower())
    return (0, v)


def _descending(c: Column) -> bool:
    return c.numeric if c.descending is None else c.descending


class TablePanel(Vertical):
    """A titled panel: a note line (why it is empty) or a sortable table of row dicts."""

    def __init__(self, title: str, columns: tuple[Column, ...], row_key: str, *, id: str, sort: str | None = None) -> None:
        super().__init__(id=id, classes="panel")
        self.title = title
        self.columns = columns
        self.row_key = row_key
        keys = [c.key for c in columns]
        self.sort_index = keys.index(sort) if sort in keys else 0
        self.sort_reverse = _descending(columns[self.sort_index])
        self.rows: list[dict[str, Any]] = []
        self.border_title = title

    def compose(self) -> ComposeResult:
        yield Static("", classes="note")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, classes="table")
        table.display = False
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for c in self.columns:
            table.add_column(Text(c.label, justify="right" if c.numeric else "left"), key=c.key)
        self._update_subtitle()

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def show_note(self, text: str | Text) -> None:
        note = self.query_one(".note", Static)
        note.update(text)
        note.display = True
        self.table.display = False
        self.rows = []

    def sorted_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key = self.columns[self.sort_index].key
        known = [r for r in rows if r.get(key) is not None]
        unknown = [r for r in rows if r.get(key) is None]
        return sorted(known, key=lambda r: _sort_value(r, key), reverse=self.sort_reverse) + unknown

    def show_rows(self, rows: list[dict[str, Any]]) -> None:
        self.query_one(".note", Static).display = False
        table = self.table
        table.display = True
        self.rows = self.sorted_rows(rows)
        selected = self.selected_key()
        table.clear()
        theme = self.app.current_theme
        warn, err, muted = theme.warning or "yellow", theme.error or "red", "dim"
        for i, row in enumerate(self.rows):
            cells = []
            for c in self.columns:
                v = row.get(c.key)
                if v is None and c.unpriced_when_none and row.get("unpriced_requests", row.get("cost_source") is None):
                    cells.append(Text("unpriced", style=warn, justify="right"))
                elif v is None and c.unpriced_when_none and (row.get("pending_requests") or row.get("awaiting_cost")):
                    cells.append(Text("pending", style=muted, justify="right"))  # its cost window is not final yet
                else:
                    style = err if c.error_when is not None and v == c.error_when else ""
                    cells.append(Text("-" if v is None else c.render(v), style=style, justify="right" if c.numeric else "left"))
            table.add_row(*cells, key=str(self._key(row, i)))
        if selected is not None:
            for i, row in enumerate(self.rows):
                if str(self._key(row, i)) == selected:
                    table.move_cursor(row=i, animate=False)
                    break

    def _key(self, row: dict[str, Any], i: int) -> Any:
        k = row.get(self.row_key)
        return i if k is None else k

    def selected_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no cursor yet
            return None

    def selected_row(self) -> dict[str, Any] | None:
        table = self.table
        if not self.rows or not table.display or table.cursor_row is None or not 0 <= table.cursor_row < len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def cycle_sort(self, reverse_only: bool = False) -> str:
        """Next sort column (or flip the direction); returns a description for a notification."""
        if reverse_only:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_index = (self.sort_index + 1) % len(self.columns)
            self.sort_reverse = _descending(self.columns[self.sort_index])
        self._update_subtitle()
        if self.rows:
            self.show_rows(self.rows)
        return f"{self.title}: sorted by {self.sort_label()}"

    def sort_label(self) -> str:
        return f"{self.columns[self.sort_index].label} {'↓' if self.sort_reverse else '↑'}"

    def _update_subtitle(self) -> None:
        self.border_subtitle = f"sort: {self.sort_label()}"
