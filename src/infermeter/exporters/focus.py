"""FOCUS export: infermeter's costs as FinOps Open Cost and Usage Specification rows.

Every row carries the FOCUS 1.2 mandatory columns, ``ServiceCategory`` "AI and Machine Learning",
and, for self-hosted capacity, the FOCUS 1.3 split-cost-allocation columns:

- **Self-hosted** (``gpu_time``): per host and hour, the box's price over that hour (the *origin
  charge*) is split into *allocated charges*, one per model, tenant and allocation method, with
  ``AllocatedMethodId`` (``infermeter-time-share`` / ``infermeter-token-share``),
  ``AllocatedMethodDetails`` (``{"Elements": [{"AllocatedRatio": ..., "UsageUnit": "Seconds",
  "UsageQuantity": ...}]}``), ``AllocatedResourceId/Name`` (model and tenant) and
  ``AllocatedTags``; the capacity no request touched is one more row with a null
  ``AllocatedResourceId``: the *unallocated* (idle) charge. The ratios of an origin charge sum to
  exactly 1 and its rows' ``BilledCost`` to the hour's instance cost, to the nano-dollar.
- **Hosted APIs** (``catalog`` / ``provider`` costs): per hour, provider, model and tenant, a usage
  charge priced in tokens.

Requests with no known price are not rows (FOCUS has no "unknown cost"); they are counted in
``notes`` instead, never written as $0. Money is Decimal end to end. A ``.parquet`` path writes
Parquet (pyarrow, the ``[export]`` extra), anything else CSV.
"""

from __future__ import annotations

import calendar
import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from ..store import queries

__all__ = ["FOCUS_COLUMNS", "FocusExport", "build_focus", "write_focus", "parse_when", "focus_view", "SERVICE_CATEGORY", "HOUR_NS"]

HOUR_NS = 3600 * 10**9
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
METHOD_IDS = {"time": "infermeter-time-share", "tokens": "infermeter-token-share"}
_NANO = Decimal("1e-9")
_RATIO = Decimal("1e-12")

FOCUS_COLUMNS: tuple[str, ...] = (
    # FOCUS 1.2 mandatory
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart", "ChargePeriodEnd", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "ServiceCategory", "ServiceName",
    # FOCUS 1.2 conditional / recommended that infermeter knows
    "ChargeFrequency", "CommitmentDiscountStatus", "ConsumedQuantity", "ConsumedUnit", "InvoiceId", "RegionId", "RegionName", "ResourceId", "ResourceName",
    "ResourceType", "ServiceSubcategory", "Tags",
    # FOCUS 1.3 split cost allocation
    "AllocatedMethodId", "AllocatedMethodDetails", "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags",
    # infermeter's own (custom columns are x_-prefixed)
    "x_CostSource", "x_Host", "x_Model", "x_Tenant", "x_Requests", "x_InputTokens", "x_OutputTokens",
    "x_EnergyKilowattHours", "x_Co2eGrams",
)
DECIMAL_COLUMNS = frozenset({"BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity",
                             "ConsumedQuantity", "x_EnergyKilowattHours"})
TIME_COLUMNS = frozenset({"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"})
INT_COLUMNS = frozenset({"x_Requests", "x_InputTokens", "x_OutputTokens"})

_PROVIDERS = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Microsoft", "oci": "Oracle", "lambda": "Lambda",
              "coreweave": "CoreWeave", "runpod": "RunPod", "openai": "OpenAI", "anthropic": "Anthropic",
              "gcp.gemini": "Google", "gcp.vertex_ai": "Google", "google": "Google", "mistral_ai": "Mistral AI",
              "mistral": "Mistral AI", "deepseek": "DeepSeek", "groq": "Groq", "together": "Together AI",
              "together_ai": "Together AI", "fireworks": "Fireworks AI", "azure.ai.openai": "Microsoft",
              "aws.bedrock": "AWS", "cohere": "Cohere", "x_ai": "xAI"}


@dataclass
class FocusExport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _billing_period(hour_ns: int) -> tuple[str, str]:
    d = datetime.fromtimestamp(hour_ns // 10**9, tz=timezone.utc)
    start = datetime(d.year, d.month, 1, tzinfo=timezone.utc)
    days = calendar.monthrange(d.year, d.month)[1]
    end_ns = (int(start.timestamp()) + days * 86400) * 10**9
    return _iso(int(start.timestamp()) * 10**9), _iso(end_ns)


def _provider(name: str | None) -> str:
    if not name:
        return "Self-hosted"
    return _PROVIDERS.get(name.lower(), name)


def _tags(model: str | None, tenant: str | None, **more: Any) -> str | None:
    t = {k: v for k, v in (("infermeter/model", model), ("infermeter/tenant", tenant), *more.items()) if v is not None}
    return json.dumps(t, sort_keys=True) if t else None


def _ratios(amounts: Sequence[Decimal], total: Decimal) -> list[Decimal]:
    """Each amount's share of ``total`` to 12 places, largest remainder, summing to exactly 1."""
    if total <= 0:  # a free box: split evenly
        return _ratios([Decimal(1)] * len(amounts), Decimal(len(amounts))) if amounts else []
    exact = [a / total for a in amounts]
    floors = [e.quantize(_RATIO, rounding=ROUND_FLOOR) for e in exact]
    left = int((Decimal(1) - sum(floors)) / _RATIO)
    order = sorted(range(len(exact)), key=lambda i: (exact[i] - floors[i], -i), reverse=True)
    for i in order[:max(left, 0)]:
        floors[i] += _RATIO
    return floors


def _base(hour: int, billing_account: tuple[str, str]) -> dict[str, Any]:
    start = hour * HOUR_NS
    bp_start, bp_end = _billing_period(start)
    return {c: None for c in FOCUS_COLUMNS} | {
        "BillingAccountId": billing_account[0], "BillingAccountName": billing_account[1], "BillingCurrency": "USD",
        "BillingPeriodStart": bp_start, "BillingPeriodEnd": bp_end, "ChargeCategory": "Usage",
        # a provisional invoice per billing account and month, generated ahead of any invoice
        "InvoiceId": f"{billing_account[0]}-{bp_start[:7]}",
        "ChargeFrequency": "Usage-Based", "ChargePeriodStart": _iso(start), "ChargePeriodEnd": _iso(start + HOUR_NS),
        "ServiceCategory": SERVICE_CATEGORY, "ServiceSubcategory": SERVICE_SUBCATEGORY,
    }


def _money(row: dict[str, Any], amount: Decimal) -> None:
    amount = Decimal(amount).quantize(_NANO)
    row["BilledCost"] = row["EffectiveCost"] = row["ListCost"] = row["ContractedCost"] = amount


def _kwh(mj: int | None) -> Decimal | None:
    return None if mj is None else (Decimal(mj) / Decimal(3_600_000_000)).quantize(_NANO)


def build_focus(con: Any, since_ns: int, until_ns: int, *, billing_account_id: str = "infermeter",
                billing_account_name: str = "infermeter") -> FocusExport:
    """FOCUS rows for charge periods (hours) starting in ``[since_ns, until_ns)``."""
    out = FocusExport()
    account = (billing_account_id, billing_account_name)
    info = {r["host"]: r for r in queries.run(con, "exports.instance_info")}
    allocated: dict[tuple[str, int], list[dict]] = {}
    for g in queries.run(con, "exports.focus_allocated", since_ns=since_ns, until_ns=until_ns):
        allocated.setdefault((g["host"], g["hour"]), []).append(g)
    for o in queries.run(con, "exports.focus_origins", since_ns=since_ns, until_ns=until_ns):
        out.rows.extend(_self_hosted_rows(o, allocated.get((o["host"], o["hour"]), []), info.get(o["host"]) or {}, account, out.notes))
    for h in queries.run(con, "exports.focus_hosted", since_ns=since_ns, until_ns=until_ns):
        out.rows.append(_hosted_row(h, account))
    unpriced = queries.run_one(con, "exports.unpriced_requests", since_ns=since_ns, until_ns=until_ns)["n"]
    if unpriced:
        out.notes.append(f"{unpriced} hosted-API requests have no known price and are not in the export (not $0)")
    return out


def _self_hosted_rows(o: dict, groups: list[dict], inst: dict, account: tuple[str, str], notes: list[str]) -> list[dict]:
    host, hour = o["host"], o["hour"]
    if o["unpriced_windows"]:
        notes.append(f"{host} {_iso(hour * HOUR_NS)}: {o['unpriced_windows']} windows without an instance price are not in the export")
    origin = o["instance_cost_usd"]
    if origin is None:
        return []
    hours = Decimal(o["priced_ns"] or 0) / HOUR_NS
    unallocated = o["unallocated_cost_usd"] or Decimal(0)
    amounts = [g["cost_usd"] for g in groups] + [unallocated]
    ratios = _ratios(amounts, origin)
    provider = _provider(inst.get("cloud"))
    common = {
        "InvoiceIssuerName": provider, "ProviderName": provider, "PublisherName": provider,
        "ServiceName": "Self-hosted inference", "PricingUnit": "Hours", "ConsumedUnit": "Hours",
        "ResourceId": host, "ResourceName": host, "ResourceType": inst.get("instance_type") or "Host",
        "RegionId": inst.get("region"), "RegionName": inst.get("region"), "x_CostSource": "gpu_time", "x_Host": host,
    }
    rows = []
    for g, ratio in zip(groups, ratios):
        r = _base(hour, account) | common
        _money(r, g["cost_usd"])
        qty = (hours * ratio).quantize(_NANO)
        who = g["model"] or "(unknown model)"
        r |= {
            "ChargeDescription": f"{who} inference on {host}" + (f" for {g['tenant']}" if g["tenant"] else ""),
            "PricingQuantity": qty, "ConsumedQuantity": qty,
            "Tags": _tags(None, None, **{"infermeter/host": host}),
            "AllocatedMethodId": METHOD_IDS.get(g["method"], f"infermeter-{g['method']}-share"),
            "AllocatedMethodDetails": _method_details(ratio, g["overlap_s"], g["method"], g["requests"]),
            "AllocatedResourceId": f"{g['model'] or ''}/{g['tenant'] or ''}",
            "AllocatedResourceName": who + (f" ({g['tenant']})" if g["tenant"] else ""),
            "AllocatedTags": _tags(g["model"], g["tenant"]),
            "x_Model": g["model"], "x_Tenant": g["tenant"], "x_Requests": g["requests"],
            "x_EnergyKilowattHours": _kwh(g["energy_mj"]), "x_Co2eGrams": g["co2e_g"],
        }
        rows.append(r)
    idle_ratio = ratios[-1]
    r = _base(hour, account) | common
    _money(r, unallocated)
    qty = (hours * idle_ratio).quantize(_NANO)
    methods = sorted(m for m in (o["methods"] or []) if m)
    allocated_co2e = sum((g["co2e_g"] or 0.0) for g in groups)
    r |= {
        "ChargeDescription": f"Unallocated (idle) capacity on {host}: windows no request used",
        "PricingQuantity": qty, "ConsumedQuantity": qty,
        "Tags": _tags(None, None, **{"infermeter/host": host}),
        "AllocatedMethodId": METHOD_IDS.get(methods[0], "infermeter-time-share") if methods else "infermeter-time-share",
        "AllocatedMethodDetails": _method_details(idle_ratio, None, methods[0] if methods else "time", 0, idle=True),
        "x_CostSource": "idle", "x_Requests": 0,
        "x_EnergyKilowattHours": _kwh(o["idle_energy_mj"]),
        "x_Co2eGrams": None if o["co2e_g"] is None else max(o["co2e_g"] - allocated_co2e, 0.0),
    }
    rows.append(r)
    return rows


def _method_details(ratio: Decimal, overlap_s: float | None, method: str, requests: int, idle: bool = False) -> str:
    element: dict[str, Any] = {"AllocatedRatio": float(ratio)}
    if overlap_s is not None:
        element |= {"UsageUnit": "Seconds", "UsageQuantity": round(overlap_s, 6)}
    return json.dumps({"Elements": [element], "x_Method": method, "x_Requests": requests, "x_Unallocated": idle,
                       "x_AllocatedRatioExact": str(ratio)})


def _hosted_row(h: dict, account: tuple[str, str]) -> dict:
    provider = _provider(h["provider"]) if h["provider"] else "Unknown provider"
    tokens = (h["input_tokens"] or 0) + (h["output_tokens"] or 0)
    r = _base(h["hour"], account)
    _money(r, h["cost_usd"])
    model = h["model"] or "(unknown model)"
    r |= {
        "ChargeDescription": f"{model} tokens via the {provider} API" + (f" for {h['tenant']}" if h["tenant"] else ""),
        "InvoiceIssuerName": provider, "ProviderName": provider, "PublisherName": provider,
        "ServiceName": f"{provider} API", "PricingUnit": "Tokens", "ConsumedUnit": "Tokens",
        "PricingQuantity": Decimal(tokens), "ConsumedQuantity": Decimal(tokens),
        "ResourceId": f"{h['provider'] or 'unknown'}/{model}", "ResourceName": model, "ResourceType": "Model",
        "Tags": _tags(h["model"], h["tenant"]),
        "x_CostSource": h["cost_source"], "x_Model": h["model"], "x_Tenant": h["tenant"], "x_Requests": h["requests"],
        "x_InputTokens": h["input_tokens"], "x_OutputTokens": h["output_tokens"],
    }
    return r


# -- files ------------------------------------------------------------------------------------------

def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


def write_focus(rows: Sequence[dict[str, Any]], path: str) -> str:
    """Write ``rows`` to ``path``: Parquet for ``.parquet``, else CSV. Returns the format written."""
    tmp = f"{path}.tmp-{os.getpid()}"
    if path.lower().endswith(".parquet"):
        _write_parquet(rows, tmp)
        fmt = "parquet"
    else:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(FOCUS_COLUMNS)
            for r in rows:
                w.writerow([_text(r.get(c)) for c in FOCUS_COLUMNS])
        fmt = "csv"
    os.replace(tmp, path)  # a reader never sees half a file
    return fmt


def _write_parquet(rows: Sequence[dict[str, Any]], path: str) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        from ..errors import InfermeterError

        raise InfermeterError("Parquet output needs pyarrow: pip install 'infermeter[export]' (or write .csv)") from e
    fields = []
    for c in FOCUS_COLUMNS:
        if c in DECIMAL_COLUMNS:
            t = pa.decimal128(38, 9)
        elif c in TIME_COLUMNS:
            t = pa.timestamp("s", tz="UTC")
        elif c in INT_COLUMNS:
            t = pa.int64()
        elif c == "x_Co2eGrams":
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(c, t))
    schema = pa.schema(fields)

    def value(c: str, v: Any) -> Any:
        if v is None:
            return None
        if c in TIME_COLUMNS:
            return datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if c in DECIMAL_COLUMNS:
            return Decimal(v).quantize(_NANO)
        return v

    table = pa.table({c: [value(c, r.get(c)) for r in rows] for c in FOCUS_COLUMNS}, schema=schema)
    pq.write_table(table, path)


# -- time bounds and the view ------------------------------------------------------------------------

def parse_when(text: str | None, now_ns: int, default: int | None = None) -> int | None:
    """A bound in wall-clock ns: 'all'/None -> ``default``; '24h', '7d' (that long before now);
    an ISO 8601 date or date-time (UTC unless it says otherwise); or integer nanoseconds."""
    from ..config import parse_duration

    s = "" if text is None else str(text).strip()
    if s.lower() in ("", "all"):
        return default
    if s.lower() == "now":
        return now_ns
    if s.isdigit() and len(s) > 12:
        return int(s)
    try:
        return now_ns - int(parse_duration(s) * 1e9)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use 24h / 7d, an ISO date like 2025-06-01, or 'all'") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp()) * 10**9 + d.microsecond * 1000


def _jsonable(v: Any) -> Any:
    return format(v, "f") if isinstance(v, Decimal) else v  # exact money survives JSON as text


from ..agent.views import ViewContext, view  # noqa: E402 - registration at the end keeps the module readable


@view("focus")
def focus_view(ctx: ViewContext, params: dict[str, str]) -> dict[str, Any]:
    """FOCUS rows for ``since`` .. ``until`` (default: all time .. now); money as decimal strings."""
    import time

    now = time.time_ns()
    since = parse_when(params.get("since"), now, 0)
    until = parse_when(params.get("until"), now, now)
    ex = build_focus(ctx.con, since or 0, until or now, billing_account_id=params.get("billing_account") or "infermeter",
                     billing_account_name=params.get("billing_account") or "infermeter")
    return {"columns": list(FOCUS_COLUMNS), "rows": [[_jsonable(r.get(c)) for c in FOCUS_COLUMNS] for r in ex.rows],
            "notes": ex.notes}
