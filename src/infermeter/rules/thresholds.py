"""Rule thresholds: every rule's defaults, the engine's own, and overrides from configuration.

Keys are ``rule.key`` (``serverless.max_warm_share``). Overrides come from a ``[rules]`` table in
the config file (flat ``"serverless.max_warm_share" = 0.5`` or nested ``[rules.serverless]``) or
``INFERMETER_RULES="serverless.max_warm_share=0.5,batch.min_waiting_p95=2"``; an unknown key or a
bad value raises ``ValueError`` naming it, so start-up stops with a clear message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import Rule

__all__ = ["ENGINE_DEFAULTS", "default_rules", "defaults", "parse_overrides", "resolve"]

ENGINE_DEFAULTS: dict[str, Any] = {
    "engine.min_requests": 50.0,  # fewer requests in the window: too little data
    "engine.min_span_s": 3600.0,  # less data than this in the window: too little data
    "engine.keep_warm_s": 300.0,  # serverless scale-down window used to measure warm time
    "engine.busy_util_pct": 5.0,  # GPU utilization that counts as busy
}


def default_rules() -> list[Rule]:
    """One instance of every rule, in the order they are evaluated."""
    from .always_on import AlwaysOnRule
    from .batch import BatchRule
    from .cache import CacheRule
    from .commit import CommitRule
    from .hosted_api import HostedApiRule
    from .quantize import QuantizeRule
    from .rightsize import RightsizeRule
    from .serverless import ServerlessRule
    from .spot import SpotRule

    return [ServerlessRule(), AlwaysOnRule(), CommitRule(), SpotRule(), QuantizeRule(), RightsizeRule(),
            BatchRule(), CacheRule(), HostedApiRule()]


def defaults(rules: list[Rule] | None = None) -> dict[str, Any]:
    out = dict(ENGINE_DEFAULTS)
    for rule in rules if rules is not None else default_rules():
        out.update({f"{rule.name}.{k}": v for k, v in rule.thresholds.items()})
    return out


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_overrides(raw: Any) -> tuple[tuple[str, Any], ...]:
    """A ``[rules]`` table or a ``"k=v,k=v"`` string -> sorted, validated (key, value) pairs."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, Mapping):
        items = _flatten(raw)
    else:
        items = {}
        for part in str(raw).split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected rule.key=value, got {part.strip()!r}")
            items[key.strip()] = value.strip()
    known = defaults()
    out = []
    for key, value in sorted(items.items()):
        if key not in known:
            raise ValueError(f"unknown rule threshold {key!r} (known: {', '.join(sorted(known))})")
        if isinstance(known[key], str):
            try:
                re.compile(str(value))
            except re.error as e:
                raise ValueError(f"{key}={value!r} is not a regular expression: {e}") from None
            out.append((key, str(value)))
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key}={value!r} is not a number") from None
            if number < 0:
                raise ValueError(f"{key}={value!r} must not be negative")
            out.append((key, number))
    return tuple(out)


def resolve(overrides: Any = None, rules: list[Rule] | None = None) -> dict[str, Any]:
    """Defaults with ``overrides`` (pairs, a mapping or a string) applied."""
    merged = defaults(rules)
    pairs = overrides if isinstance(overrides, tuple) else parse_overrides(overrides)
    merged.update(dict(pairs))
    return merged
