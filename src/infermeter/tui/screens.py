"""Modal screens: help, the filter form, and the detail of a recommendation or a request."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from . import format as fmt

__all__ = ["HelpScreen", "FilterScreen", "DetailScreen", "recommendation_text", "request_text", "HELP_TEXT"]

HELP_TEXT = """\
[b]Keys[/b]
  1-5       models, tenants, GPUs, recommendations, requests
  tab       next panel (shift+tab: previous)
  w / W     next / previous window: 5m, 1h, 24h, 7d
  s / S     sort by the next column / reverse (tables)
  ← / →     scroll a wide table
  f / x     filter by model and tenant / clear the filter
  enter     on a model or tenant: filter to it;
            on a recommendation or request: its details
  r         refresh now       t  light / dark theme
  ?         this help         q  quit

[b]Reading the numbers[/b]
  req/s, tok/s  rates over the part of the window with data
  $/1k, $/1M    cost per 1,000 priced requests, per 1M priced tokens
  unpriced      requests with no known price: never counted as $0
  burn, idle    from the agent's cost view: $/hour now, and the
                share of the instance's cost no request used
"""


class _Modal(ModalScreen[Any]):
    BINDINGS = [Binding("escape,q", "dismiss_screen", "close")]

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class HelpScreen(_Modal):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_screen", "close")]

    def __init__(self, source: str, notes: list[str]) -> None:
        super().__init__()
        self.source = source
        self.notes = notes

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static(HELP_TEXT, markup=True)
            yield Static(Text(f"Reading: {self.source}", style="italic"))
            for n in self.notes:
                yield Static(Text(n))


class FilterScreen(_Modal):
    """Two substring filters; enter applies, escape keeps the current ones."""

    BINDINGS = [Binding("escape", "dismiss_screen", "cancel")]

    def __init__(self, model: str | None, tenant: str | None) -> None:
        super().__init__()
        self.model = model or ""
        self.tenant = tenant or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog filter"):
            yield Label("Filter (case-insensitive substring; empty = all). Enter applies, Esc cancels.")
            yield Label("model")
            yield Input(self.model, placeholder="any model", id="filter-model")
            yield Label("tenant")
            yield Input(self.tenant, placeholder="any tenant", id="filter-tenant")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        model = self.query_one("#filter-model", Input).value.strip() or None
        tenant = self.query_one("#filter-tenant", Input).value.strip() or None
        self.dismiss((model, tenant))


class DetailScreen(_Modal):
    def __init__(self, title: str, body: Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog detail"):
            yield Static(Text(self.title_text, style="bold"), classes="detail-title")
            yield Static(self.body)
            yield Static(Text("esc: back", style="italic"), classes="detail-hint")


def _evidence_lines(evidence: Any, indent: str = "  ") -> list[str]:
    if evidence is None:
        return [f"{indent}(none given)"]
    if isinstance(evidence, dict):
        lines = []
        for k, v in evidence.items():
            if isinstance(v, (dict, list)):
                lines.append(f"{indent}{k}:")
                lines.extend(_evidence_lines(v, indent + "  "))
            else:
                lines.append(f"{indent}{k}: {v}")
        return lines
    if isinstance(evidence, list):
        lines = []
        for item in evidence:
            if isinstance(item, (dict, list)):
                lines.extend(_evidence_lines(item, indent + "  "))
                lines.append("")
            else:
                lines.append(f"{indent}- {item}")
        return lines
    return [f"{indent}{evidence}"]


def recommendation_text(rec: dict[str, Any]) -> Text:
    """Savings, confidence, the action and every piece of evidence, in reading order."""
    t = Text()
    t.append(f"Saves about {fmt.money(rec.get('savings_usd_month'), 'an unknown amount')} a month", style="bold")
    combined = rec.get("combined_savings_usd_month")
    if combined is not None and combined != rec.get("savings_usd_month"):
        t.append(f" ({fmt.money(combined)} together with the others, counted once)")
    t.append("\n")
    conf = rec.get("confidence")
    if conf is not None:
        t.append(f"Confidence: {conf if isinstance(conf, str) else fmt.share(conf)}\n")
    if rec.get("action"):
        t.append(f"Action: {rec['action']}\n")
    if rec.get("status") and rec["status"] != "recommended":
        t.append(f"Status: {rec['status']}\n", style="italic")
    for key in ("note", "how_to"):
        if rec.get(key):
            t.append(f"\n{rec[key]}\n")
    t.append("\nEvidence\n", style="bold underline")
    t.append("\n".join(_evidence_lines(rec.get("evidence"))) + "\n")
    known = {"id", "title", "savings_usd_month", "combined_savings_usd_month", "confidence", "action", "status",
             "note", "how_to", "evidence"}
    rest = {k: v for k, v in rec.items() if k not in known}
    if rest:
        t.append("\nOther fields\n", style="bold underline")
        t.append(json.dumps(rest, indent=2, default=str, sort_keys=True) + "\n")
    return t


def request_text(row: dict[str, Any]) -> Text:
    t = Text()
    for k in sorted(row):
        v = row[k]
        if k == "start_time_ns" and v is not None:
            v = f"{v} ({fmt.clock(v)})"
        t.append(f"{k:>18}  ", style="bold")
        t.append(f"{'-' if v is None else v}\n")
    t.append("\nPrompt and response text are never stored.", style="italic")
    return t
