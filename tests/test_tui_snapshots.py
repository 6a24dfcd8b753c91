"""Screens of infermeter top as SVG snapshots (pytest-textual-snapshot), at 80x24 and 160x48.

Deterministic: a fixed store, a fixed clock (15:06:40 UTC), a fixed agent address on screen, and
fixed answers for the cost and recommendation views (GPU samples are rows in the store). Update with ``--snapshot-update`` after
checking the new screens by eye (``pytest --snapshot-report``).
"""

from __future__ import annotations

import pytest

from tests.tui_data import (  # noqa: F401 - fixtures
    COSTS, RECOMMENDATIONS, filled, first_poll, make_app, serve_fixed, utc,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def full(filled):
    serve_fixed(filled, "costs", COSTS)
    serve_fixed(filled, "recommendations", RECOMMENDATIONS)
    return filled


def test_models_80x24(full, snap_compare):
    assert snap_compare(make_app(full), terminal_size=(80, 24), run_before=first_poll)


def test_tail_80x24(full, snap_compare):
    assert snap_compare(make_app(full), press=["5"], terminal_size=(80, 24), run_before=first_poll)


def test_gpus_80x24(full, snap_compare):
    assert snap_compare(make_app(full), press=["3"], terminal_size=(80, 24), run_before=first_poll)


def test_recommendation_detail_80x24(full, snap_compare):
    assert snap_compare(make_app(full), press=["4", "enter"], terminal_size=(80, 24), run_before=first_poll)


def test_light_theme_tenants_80x24(full, snap_compare):
    assert snap_compare(make_app(full), press=["t", "2"], terminal_size=(80, 24), run_before=first_poll)


def test_everything_160x48(full, snap_compare):
    assert snap_compare(make_app(full), terminal_size=(160, 48), run_before=first_poll)


def test_empty_store_80x24(agent, utc, snap_compare):
    assert snap_compare(make_app(agent), terminal_size=(80, 24), run_before=first_poll)
