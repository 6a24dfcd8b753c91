"""The workload simulator: realistic synthetic traffic, samples and prices on a simulated clock.

``simulate(db, "tutoring", hours=168, seed=1)`` fills a store for tests and demos;
``infermeter simulate`` is the command line. See :mod:`.scenarios` for what each scenario is.
"""

from __future__ import annotations

from .run import SimulationError, SimulationResult, default_start_ns, simulate
from .scenarios import SCENARIOS, Endpoint, Scenario

__all__ = ["simulate", "SimulationResult", "SimulationError", "default_start_ns", "SCENARIOS", "Scenario", "Endpoint"]
