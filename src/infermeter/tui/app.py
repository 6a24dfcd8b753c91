"""``infermeter top``: live cost, rates, GPUs, recommendations and the request tail of one agent.

Every poll runs in a thread worker (``@work(thread=True, exclusive=True)``) that asks the agent's
API (or a store file) for each view and posts the snapshot back, so the UI never waits on the
network. A source that stops answering raises a banner; polling goes on and the banner goes when
it answers again. Small terminals show one panel at a time (keys 1-5, tab); large ones all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ..agent.source import DataSource
from . import format as fmt
from .fetch import Poller, Query, Snapshot
from .gpus import GpuPanel, gpu_devices
from .screens import DetailScreen, FilterScreen, HelpScreen, recommendation_text, request_text
from .summary import cost_line, panel_notes
from .tables import MODEL_COLUMNS, REC_COLUMNS, TAIL_COLUMNS, TENANT_COLUMNS, TablePanel

__all__ = ["TopApp", "WINDOWS", "PANELS"]

logger = logging.getLogger(__name__)

WINDOWS = ("5m", "1h", "24h", "7d")
PANELS = ("models", "tenants", "gpus", "recommendations", "requests")
_PANEL_NAMES = {"models": "Models", "tenants": "Tenants", "gpus": "GPUs", "recommendations": "Recommendations", "requests": "Requests"}


def _short_reason(message: str) -> str:
    """"no agent answering at URL ([Errno 111] Connection refused)" -> "[Errno 111] Connection refused"."""
    if message.startswith("no agent answering") and message.endswith(")") and " (" in message:
        return message[message.index(" (") + 2:-1]
    return message


class Dashboard(Screen):
    """The main screen; tab moves between panels (in small terminals only one is visible)."""

    BINDINGS = [
        Binding("tab", "app.next_panel(1)", "next panel", show=False),
        Binding("shift+tab", "app.next_panel(-1)", "previous panel", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="topbar")
        yield Static(id="banner")
        yield Static(id="costbar")
        yield Static(id="nav")
        with Container(id="panels"):
            yield TablePanel("Models", MODEL_COLUMNS, "model", id="models", sort="cost_usd")
            yield TablePanel("Tenants", TENANT_COLUMNS, "tenant", id="tenants", sort="cost_usd")
            yield GpuPanel(id="gpus")
            yield TablePanel("Recommendations", REC_COLUMNS, "id", id="recommendations", sort="savings_usd_month")
            yield TablePanel("Recent requests", TAIL_COLUMNS, "request_id", id="requests", sort="start_time_ns")
        yield Footer()

    def on_mount(self) -> None:
        self.app.start_polling()


class TopApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "infermeter top"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("w", "window(1)", "window"),
        Binding("W", "window(-1)", "prev window", show=False),
        Binding("s", "sort", "sort"),
        Binding("S", "sort(True)", "reverse sort", show=False),
        Binding("f", "filter", "filter"),
        Binding("x", "clear_filters", "clear filter", show=False),
        Binding("r", "refresh", "refresh", show=False),
        Binding("t", "toggle_theme", "theme", show=False),
        *(Binding(str(i + 1), f"show_panel('{p}')", _PANEL_NAMES[p], show=False) for i, p in enumerate(PANELS)),
    ]

    window: reactive[str] = reactive("1h", init=False)
    model_filter: reactive[str | None] = reactive(None, init=False)
    tenant_filter: reactive[str | None] = reactive(None, init=False)
    current_panel: reactive[str] = reactive("models", init=False)

    def __init__(
        self,
        source: DataSource,
        *,
        window: str = "1h",
        interval_s: float = 2.0,
        clock_ns: Callable[[], int] | None = None,
        tail_limit: int = 100,
    ) -> None:
        """``clock_ns`` fixes "now" (tests, snapshots); by default the agent's own clock is used."""
        super().__init__()
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
        self.source = source
        self.poller = Poller(source, on_slow_answer=self._slow_answered)
        self.interval_s = interval_s
        self.clock_ns = clock_ns
        self.tail_limit = tail_limit
        self.set_reactive(TopApp.window, window)
        self.snapshot: Snapshot | None = None  # the last one that answered
        self.lost: str | None = None
        self.polls = 0  # snapshots applied, for tests and the help screen
        self.lost_polls = 0  # polls the source did not answer
        self.data_ready = asyncio.Event()  # set once the first snapshot is on screen
        self._answered = asyncio.Event()  # set (and replaced) at every answer, lost or not
        self._in_flight = False
        self._next_poll_at = 0.0  # monotonic: a slow agent is polled less often, see apply_snapshot

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait for the polls to make ``predicate()`` true (tests, scripts); TimeoutError otherwise."""

        async def wait() -> None:
            while not predicate():
                await self._answered.wait()

        await asyncio.wait_for(wait(), timeout_s)

    def _signal_answer(self) -> None:
        ev, self._answered = self._answered, asyncio.Event()
        ev.set()

    @property
    def dashboard(self) -> Dashboard | None:
        """The main screen, or None before it is mounted and once the app is closing."""
        stack = self.screen_stack
        if self._exit or self._closing or not stack or not isinstance(stack[0], Dashboard) or stack[0]._closing:
            return None
        return stack[0]

    def get_default_screen(self) -> Screen:
        return Dashboard()

    # -- polling ----------------------------------------------------------------------------------
    def start_polling(self) -> None:
        """Called by the dashboard once its panels exist."""
        self.screen_stack[0].query_one(f"#{self.current_panel}").add_class("-current")
        self._render_bars()
        self.refresh_data(force=True)
        self.set_interval(self.interval_s, self.poll)

    def query_state(self) -> Query:
        until = self.clock_ns() if self.clock_ns is not None else None
        return Query(self.window, self.model_filter, self.tenant_filter, until, self.tail_limit)

    def poll(self) -> None:
        if not self._in_flight and time.monotonic() >= self._next_poll_at:
            self.refresh_data()

    def _slow_answered(self, name: str) -> None:
        """From the poller's thread: a slow view (recommendations) has a new answer; show it now."""
        try:
            self.call_from_thread(self.refresh_data)
        except RuntimeError:  # the app is not running (any more)
            pass

    def refresh_data(self, force: bool = False) -> None:
        """Start a poll now; one already running for an older query is cancelled (exclusive).

        ``force`` also re-asks the views polled slowly (recommendations)."""
        self._in_flight = True
        self._fetch(self.query_state(), force)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _fetch(self, query: Query, force: bool) -> None:
        snap = self.poller.fetch(query, force)
        if get_current_worker().is_cancelled:
            return
        try:
            self.call_from_thread(self.apply_snapshot, snap)
        except RuntimeError:  # the app is closing
            pass

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "poll" and event.state == WorkerState.ERROR:
            self._in_flight = False
            self._set_lost(f"poll failed: {event.worker.error!r}")

    def apply_snapshot(self, snap: Snapshot) -> None:
        if self.dashboard is None:
            return  # closing
        current = self.query_state()
        if (snap.query.window, snap.query.model, snap.query.tenant) != (current.window, current.model, current.tenant):
            return  # an answer to a question no longer asked
        self._in_flight = False
        # Never more than a third of the agent's time for this screen: wait twice as long as the poll took.
        self._next_poll_at = time.monotonic() + 2 * snap.took_s
        if snap.lost:
            self._set_lost(snap.lost)
            return
        if self.lost is not None:
            self.notify(f"Reconnected to {self.source.description}", title="infermeter")
        self.lost = None
        self.snapshot = snap
        self.polls += 1
        self._render_bars()
        self._render_panels(snap)
        self.data_ready.set()
        self._signal_answer()

    def _set_lost(self, reason: str) -> None:
        if self.dashboard is None:
            return  # closing
        self.lost = reason
        self.lost_polls += 1
        self._render_bars()
        if self.snapshot is None:
            waiting = f"Waiting for {self.source.description}…"
            for name in PANELS:
                self.dashboard.query_one(f"#{name}").show_note(waiting)
        self._signal_answer()

    # -- rendering --------------------------------------------------------------------------------
    def _render_bars(self) -> None:
        screen = self.dashboard
        if screen is None:
            return
        snap = self.snapshot
        top: list[Any] = [("infermeter top", "bold"), f"  window {self.window}"]
        if snap is not None:
            top.append(f"  as of {fmt.clock(snap.fetched_ns)}")
        filters = [f"{k}~{v!r}" for k, v in (("model", self.model_filter), ("tenant", self.tenant_filter)) if v]
        if filters:
            top.append((f"  filter {' '.join(filters)}", "bold $accent"))
        top.append((f"  {self.source.description}", "$text-muted"))
        screen.query_one("#topbar", Static).update(Content.assemble(*top))

        banner = screen.query_one("#banner", Static)
        if self.lost is not None:
            since = f" Showing data from {fmt.clock(snap.fetched_ns)};" if snap else ""
            banner.update(Content(f"⚠ Lost contact with {self.source.description}: {_short_reason(self.lost)}."
                                  f"{since} retrying every {self.interval_s:g}s…"))
            banner.add_class("-visible")
        else:
            banner.remove_class("-visible")

        costbar = screen.query_one("#costbar", Static)
        costbar.update(cost_line(snap) if snap is not None else Content.styled("loading…", "italic"))

        nav: list[Any] = []
        for i, p in enumerate(PANELS):
            nav += [(f" {i + 1} {_PANEL_NAMES[p]} ", "reverse bold" if p == self.current_panel else ""), " "]
        screen.query_one("#nav", Static).update(Content.assemble(*nav))

    def _render_panels(self, snap: Snapshot) -> None:
        screen = self.dashboard
        if screen is None:
            return
        notes = panel_notes(snap)
        for name in ("models", "tenants", "recommendations", "requests"):
            panel = screen.query_one(f"#{name}", TablePanel)
            note, rows = notes[name]
            if note is not None:
                panel.show_note(note)
            else:
                panel.show_rows(rows)
        gpus = screen.query_one("#gpus", GpuPanel)
        note, data = notes["gpus"]
        devices = gpu_devices(data) if data else []
        if devices:
            gpus.show_devices(devices)
        else:
            gpus.show_note(note or "No GPU data.")
        window = f"{self.window}"
        screen.query_one("#models", TablePanel).border_title = f"Models · {window}"
        screen.query_one("#tenants", TablePanel).border_title = f"Tenants · {window}"

    # -- actions ----------------------------------------------------------------------------------
    def watch_window(self) -> None:
        self._render_bars()
        self.refresh_data()

    def watch_model_filter(self) -> None:
        self._render_bars()
        self.refresh_data()

    def watch_tenant_filter(self) -> None:
        self._render_bars()
        self.refresh_data()

    def watch_current_panel(self, old: str, new: str) -> None:
        screen = self.dashboard
        if screen is None:
            return
        screen.query_one(f"#{old}").remove_class("-current")
        panel = screen.query_one(f"#{new}")
        panel.add_class("-current")
        self._render_bars()
        if not any(n is panel for n in (self.focused.ancestors_with_self if self.focused else ())):
            table = next(iter(panel.query(DataTable)), None)
            if table is not None and table.display:
                self.call_after_refresh(table.focus)

    def on_descendant_focus(self, event: Any) -> None:
        for node in event.widget.ancestors_with_self:
            if node.id in PANELS:
                self.current_panel = node.id
                return

    def action_window(self, step: int) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + step) % len(WINDOWS)]

    def action_show_panel(self, name: str) -> None:
        self.current_panel = name

    def action_next_panel(self, step: int) -> None:
        self.current_panel = PANELS[(PANELS.index(self.current_panel) + step) % len(PANELS)]

    def action_sort(self, reverse: bool = False) -> None:
        panel = self.dashboard.query_one(f"#{self.current_panel}") if self.dashboard else None
        if not isinstance(panel, TablePanel):
            self.notify("Nothing to sort in this panel; pick a table with 1, 2, 4 or 5.")
            return
        self.notify(panel.cycle_sort(reverse_only=reverse))

    def action_filter(self) -> None:
        def apply(result: tuple[str | None, str | None] | None) -> None:
            if result is not None:
                self.model_filter, self.tenant_filter = result

        self.push_screen(FilterScreen(self.model_filter, self.tenant_filter), apply)

    def action_clear_filters(self) -> None:
        self.model_filter = None
        self.tenant_filter = None

    def action_refresh(self) -> None:
        self.refresh_data(force=True)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"
        if self.snapshot is not None:
            self._render_bars()
            self._render_panels(self.snapshot)

    def action_help(self) -> None:
        notes = []
        if self.snapshot is not None:
            missing = [n for n, v in self.snapshot.views.items() if v.missing]
            if missing:
                notes.append(f"Not served by this agent: {', '.join(missing)}.")
        notes.append(f"Polling every {self.interval_s:g}s; {self.polls} updates so far.")
        self.push_screen(HelpScreen(self.source.description, notes))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        panel = next((n for n in event.data_table.ancestors if isinstance(n, TablePanel)), None)
        if panel is None:
            return
        row = panel.selected_row()
        if row is None:
            return
        if panel.id == "models":
            self.model_filter = row["model"]
            self.notify(f"Showing model {row['model']!r} only; x clears the filter.")
        elif panel.id == "tenants":
            if row["tenant"] == "(none)":
                self.notify("These requests carry no tenant, so there is nothing to filter on.")
                return
            self.tenant_filter = row["tenant"]
            self.notify(f"Showing tenant {row['tenant']!r} only; x clears the filter.")
        elif panel.id == "recommendations":
            self.push_screen(DetailScreen(str(row.get("title") or "Recommendation"), recommendation_text(row)))
        elif panel.id == "requests":
            self.push_screen(DetailScreen(f"Request at {fmt.clock(row.get('start_time_ns'))}", request_text(row)))
