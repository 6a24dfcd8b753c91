"""Each rule fires at its threshold and not below it; the engine settles conflicts and never counts
a saving twice. Rules get in-memory facts and an in-memory catalog (the seam), no SQL."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from infermeter.rules.base import Action, Recommendation, RuleContext
from infermeter.rules.catalog_lookup import GpuInstance, ServerlessOffer, StaticCatalog, TokenPrice
from infermeter.rules.engine import settle
from infermeter.rules.facts import WorkloadFacts, model_size
from infermeter.rules.gpu_specs import GIB
from infermeter.rules.plan import ALWAYS_ON, SERVERLESS, CostModel, Plan, current_plan
from infermeter.rules.thresholds import default_rules, parse_overrides, resolve

DAY_NS = 86400 * 10**9
T0 = 1_740_787_200 * 10**9  # 2025-03-01 00:00 UTC

CATALOG = StaticCatalog(
    instances=[
        GpuInstance("aws", "big.l40s", "L40S", 1, 48 * GIB, Decimal("2.00"), Decimal("0.80"), Decimal("1.26")),
        GpuInstance("aws", "mid.l4", "L4", 1, 24 * GIB, Decimal("0.80"), Decimal("0.32"), Decimal("0.50")),
        GpuInstance("aws", "small.t4", "T4", 1, 16 * GIB, Decimal("0.50"), Decimal("0.20"), Decimal("0.33")),
    ],
    serverless=[
        ServerlessOffer("sl", "T4", 16 * GIB, Decimal("0.00015"), 10.0),
        ServerlessOffer("sl", "L4", 24 * GIB, Decimal("0.0002"), 10.0),
        ServerlessOffer("sl", "L40S", 48 * GIB, Decimal("0.0005"), 10.0),
    ],
    hosted=[TokenPrice("api", "llama-3.1-8b-instruct", Decimal("0.10"), Decimal("0.10"))],
)


def facts(**kw) -> WorkloadFacts:
    """An L4 box serving an 8B FP16 model for a day: busy, no idle gaps, nothing else remarkable."""
    base = dict(
        since_ns=T0, until_ns=T0 + DAY_NS, requests=50_000, ok=50_000, input_tokens=40_000_000, output_tokens=8_000_000,
        mean_input_tokens=800.0, mean_output_tokens=160.0, first_request_ns=T0, last_request_ns=T0 + DAY_NS - 10**9,
        model="llama-3.1-8b-finetune", busy_s=80_000.0, warm_s=86_000.0, cold_starts=1, longest_idle_s=60.0,
        active_minutes=1440, load_mean=6.0, load_p95=10.0, load_max=14.0, load_histogram=((6.0, 1200), (10.0, 240)),
        gpu_name="NVIDIA L4", gpu_count=1, gpu_samples=1440, gpu_mem_total_bytes=24 * GIB,
        gpu_mem_used_max_bytes=int(21.6 * GIB), gpu_util_mean_pct=60.0, gpu_util_p95_pct=80.0,
        gpu_util_busy_mean_pct=62.0, gpu_first_ns=T0, gpu_last_ns=T0 + DAY_NS,
        server={"requests_running": {"mean": 6.0, "p95": 10.0, "max": 64.0, "samples": 1440},
                "requests_waiting": {"mean": 0.0, "p95": 0.0, "max": 0.0, "samples": 1440},
                "kv_cache_usage": {"mean": 0.3, "p95": 0.5, "max": 0.6, "samples": 1440}},
        instance_type="mid.l4", cloud="aws", pricing="on_demand", hourly_usd=Decimal("0.80"),
        instance_gpu_type="L4", instance_gpu_count=1,
    )
    base.update(kw)
    return WorkloadFacts(**base)


def ctx_for(f: WorkloadFacts, plan: Plan | None = None, **overrides) -> RuleContext:
    th = resolve(",".join(f"{k}={v}" for k, v in overrides.items()) if overrides else None)
    plan = plan or current_plan(f, CATALOG)
    assert plan is not None
    return RuleContext(f, th, CATALOG, plan, CostModel(f))


def fire(rule_name: str, f: WorkloadFacts, plan: Plan | None = None, **overrides) -> list[Recommendation]:
    rule = next(r for r in default_rules() if r.name == rule_name)
    return list(rule.evaluate(ctx_for(f, plan, **overrides)))


def server(running_max=8.0, waiting_p95=3.0, kv_max=0.25) -> dict:
    return {"requests_running": {"mean": 3.0, "p95": running_max, "max": running_max, "samples": 1440},
            "requests_waiting": {"mean": 0.5, "p95": waiting_p95, "max": 20.0, "samples": 1440},
            "kv_cache_usage": {"mean": 0.1, "p95": kv_max * 0.8, "max": kv_max, "samples": 1440}}


# -- the cost model ---------------------------------------------------------------------------------


def test_always_on_cost_is_price_times_730_hours():
    c = CostModel(facts())
    assert c.monthly(current_plan(facts(), CATALOG)) == Decimal("584.000000000")  # 0.80 x 730


def test_serverless_cost_is_warm_time_plus_cold_starts_scaled_to_a_month():
    f = facts(warm_s=36_000.0, cold_starts=2, load_histogram=())
    plan = Plan(SERVERLESS, offer=CATALOG.serverless_offers()[1])  # L4 at $0.0002/s
    # (36,000 s + 2 x 10 s) x $0.0002 x (730 h / 24 h)
    assert CostModel(f).monthly(plan) == (Decimal("36020") * Decimal("0.0002") * Decimal(730) / Decimal(24)).quantize(Decimal("1e-9"))


def test_serverless_adds_replicas_where_load_exceeds_the_running_batch():
    f = facts(warm_s=3600.0, load_histogram=((4.0, 50), (20.0, 10)))
    one = CostModel(f).replica_s(Plan(SERVERLESS, batch_cap=32))
    many = CostModel(f).replica_s(Plan(SERVERLESS, batch_cap=8))
    assert one == 3600.0
    assert many == 3600.0 + 10 * 60 * 2  # ceil(20 / 8) - 1 = 2 extra replicas for 10 minutes


@pytest.mark.parametrize("name,params,bits", [
    ("llama-3.1-8b-instruct", 8.0, 16), ("Qwen/Qwen2.5-32B-Instruct-AWQ", 32.0, 4), ("mixtral-8x7b", 56.0, 16),
    ("llama-3.1-70b-instruct-fp8", 70.0, 8), ("gpt-4o", None, 16), (None, None, 16),
])
def test_model_size_from_name(name, params, bits):
    assert model_size(name) == (params, bits)


# -- serverless / always_on -------------------------------------------------------------------------

IDLE_NIGHTS = dict(busy_s=40_000.0, longest_idle_s=8 * 3600.0, load_histogram=((4.0, 700),))


def test_serverless_fires_at_its_warm_share_threshold_and_not_above():
    limit = 0.75 * facts().observed_s
    fired = fire(Action.SERVERLESS, facts(warm_s=limit - 60, **IDLE_NIGHTS))
    assert [r.action for r in fired] == ["serverless"]
    r = fired[0]
    assert r.savings_usd_month > 0 and 0 < r.confidence <= 1 and "scale-down" in r.how_to
    assert r.evidence["warm_share"] == pytest.approx(0.75, abs=0.002)
    assert "rules.islands" in r.evidence["queries"] and r.evidence["assumptions"]
    assert fire(Action.SERVERLESS, facts(warm_s=limit + 600, **IDLE_NIGHTS)) == []


def test_serverless_needs_a_long_idle_gap():
    kw = dict(IDLE_NIGHTS, longest_idle_s=3500.0)
    assert fire(Action.SERVERLESS, facts(warm_s=40_000.0, **kw)) == []
    assert fire(Action.SERVERLESS, facts(warm_s=40_000.0, **kw), **{"serverless.min_idle_gap_s": 3000}) != []


def test_always_on_fires_for_serverless_that_is_up_most_of_the_time():
    f = facts(pricing="serverless", hourly_usd=None)
    plan = current_plan(f, CATALOG)
    assert plan is not None and plan.mode == SERVERLESS
    fired = fire(Action.ALWAYS_ON, f)
    assert [r.action for r in fired] == ["always_on"]
    assert fired[0].evidence["instance"] == "mid.l4"
    assert fire(Action.ALWAYS_ON, replace(f, warm_s=0.55 * f.observed_s)) == []
    assert fire(Action.ALWAYS_ON, facts()) == []  # an always-on box is not told to go always-on


# -- commit / spot ----------------------------------------------------------------------------------


def test_commit_fires_at_its_active_share_threshold():
    assert [r.action for r in fire(Action.COMMIT, facts(active_minutes=1152))] == ["commit"]  # 80% of 1440
    assert fire(Action.COMMIT, facts(active_minutes=1150)) == []
    r = fire(Action.COMMIT, facts())[0]
    assert r.savings_usd_month == Decimal("219.00")  # (0.80 - 0.50) x 730
    assert "Savings Plan" in r.how_to


def test_commit_wants_a_day_of_data_and_on_demand_prices():
    short = facts(first_request_ns=T0 + 12 * 3600 * 10**9, gpu_first_ns=T0 + 12 * 3600 * 10**9)
    ctx = ctx_for(short)
    assert next(r for r in default_rules() if r.name == "commit").evaluate(ctx) == []
    assert any("too little" in n for n in ctx.notes)
    assert fire(Action.COMMIT, facts(pricing="committed", hourly_usd=Decimal("0.50"))) == []


def _endpoints(offline_s: float, online_s: float) -> tuple[dict, ...]:
    return ({"endpoint": "/v1/batch/summarize", "tenant": "etl", "requests": 10, "request_s": offline_s, "streaming": 0},
            {"endpoint": "/v1/chat/completions", "tenant": "app", "requests": 10, "request_s": online_s, "streaming": 10})


def test_spot_fires_on_tagged_offline_traffic_at_its_share_threshold():
    fired = fire(Action.SPOT, facts(endpoints=_endpoints(500.0, 500.0)))
    assert [r.action for r in fired] == ["spot"]
    assert fired[0].evidence["offline_share"] == 0.5
    # half the capacity moves to spot at 0.32 x 1.05 instead of 0.80
    assert fired[0].savings_usd_month == Decimal("169.36")  # 0.5 x (0.80 - 0.336) x 730
    assert fire(Action.SPOT, facts(endpoints=_endpoints(490.0, 510.0))) == []


def test_spot_fires_on_several_replicas_keeping_one_on_demand():
    fired = fire(Action.SPOT, facts(replicas=3, endpoints=_endpoints(0.0, 100.0)))
    assert fired and fired[0].evidence["interruption_tolerant"] == "replicas"
    assert fired[0].evidence["offline_share"] == pytest.approx(2 / 3, abs=1e-3)


def test_spot_pattern_is_configurable():
    eps = ({"endpoint": "/v1/jobs", "tenant": "x", "requests": 1, "request_s": 10.0, "streaming": 0},)
    assert fire(Action.SPOT, facts(endpoints=eps)) == []
    assert fire(Action.SPOT, facts(endpoints=eps), **{"spot.offline_pattern": "jobs"}) != []


# -- quantize / rightsize ---------------------------------------------------------------------------


def test_quantize_moves_an_fp16_model_to_a_cheaper_gpu():
    fired = fire(Action.QUANTIZE, facts(model="llama-3.1-8b-finetune", gpu_util_p95_pct=40.0))
    assert [r.action for r in fired] == ["quantize"]
    ev = fired[0].evidence
    assert (ev["params_b"], ev["bits_now"], ev["bits"]) == (8.0, 16, 8)
    assert ev["target"] == "small.t4 (T4)" and ev["memory_needed_gib"] <= 16
    assert fired[0].savings_usd_month == Decimal("219.00")  # (0.80 - 0.50) x 730
    assert "--quantization" in fired[0].how_to or "W8A8" in fired[0].how_to


def test_quantize_does_not_fire_for_a_4bit_model_or_a_gpu_too_busy_to_shrink():
    assert fire(Action.QUANTIZE, facts(model="llama-3.1-8b-instruct-awq")) == []
    # on a T4 the measured load needs 99% x 300/320 / 1.6 = 58% at 8-bit, / 2.2 = 42% at 4-bit
    assert fire(Action.QUANTIZE, facts(gpu_util_p95_pct=99.0), **{"quantize.max_target_util_pct": 60})[0].evidence["bits"] == 8
    assert fire(Action.QUANTIZE, facts(gpu_util_p95_pct=99.0), **{"quantize.max_target_util_pct": 50})[0].evidence["bits"] == 4
    assert fire(Action.QUANTIZE, facts(gpu_util_p95_pct=99.0), **{"quantize.max_target_util_pct": 40}) == []


def test_quantize_says_when_the_model_size_is_unknown():
    ctx = ctx_for(facts(model="house-model"))
    assert next(r for r in default_rules() if r.name == "quantize").evaluate(ctx) == []
    assert any("model size unknown" in n for n in ctx.notes)
    assert fire(Action.QUANTIZE, facts(model="house-model"), **{"quantize.model_params_b": 8}) != []


BIG_BOX = dict(instance_type="big.l40s", hourly_usd=Decimal("2.00"), instance_gpu_type="L40S", gpu_name="NVIDIA L40S",
               gpu_mem_total_bytes=48 * GIB, model="llama-3.1-8b-instruct-awq", server=server(64.0, 0.0, 0.2))


def test_rightsize_fires_when_memory_and_utilization_are_far_below_capacity():
    fired = fire(Action.RIGHTSIZE, facts(gpu_util_p95_pct=20.0, **BIG_BOX))
    assert [r.action for r in fired] == ["rightsize"]
    ev = fired[0].evidence
    assert ev["memory_share"] <= 0.6 and ev["target"] == "small.t4 (T4)"
    assert ev["target_util_p95_pct"] == pytest.approx(20 * 864 / 320, abs=0.1)  # bandwidth decides it still serves
    assert fired[0].savings_usd_month == Decimal("1095.00")  # (2.00 - 0.50) x 730
    assert fire(Action.RIGHTSIZE, facts(gpu_util_p95_pct=51.0, **BIG_BOX)) == []
    # at 40% p95 on the L40S no smaller GPU in this catalog has the bandwidth: nothing to move to
    assert fire(Action.RIGHTSIZE, facts(gpu_util_p95_pct=40.0, **BIG_BOX)) == []


def test_rightsize_memory_threshold():
    f = facts(gpu_util_p95_pct=20.0, **BIG_BOX)
    share = fire(Action.RIGHTSIZE, f)[0].evidence["memory_share"]
    assert fire(Action.RIGHTSIZE, f, **{"rightsize.max_memory_share": share - 0.01}) == []


# -- batch / cache ----------------------------------------------------------------------------------


def test_batch_fires_when_requests_wait_behind_a_low_running_cap():
    fired = fire(Action.BATCH, facts(server=server()))
    assert [r.action for r in fired] == ["batch"]
    r = fired[0]
    assert r.evidence["running_batch_max"] == 8.0 and r.evidence["target_running"] > 8
    assert "--max-num-seqs" in r.how_to
    assert r.savings_usd_month == 0  # one always-on box: latency, not dollars
    assert fire(Action.BATCH, facts(server=server(waiting_p95=0.9))) == []
    assert fire(Action.BATCH, facts(server=server(running_max=33.0))) == []
    assert fire(Action.BATCH, facts(server=server(kv_max=0.75))) == []


def test_batch_saves_where_capacity_follows_load():
    f = facts(server=server(), replicas=3, load_p95=10.0)
    plan = replace(current_plan(f, CATALOG), instances=3)
    r = fire(Action.BATCH, f, plan)[0]
    assert r.savings_usd_month == Decimal("1168.00")  # 3 boxes -> 1 at 0.80 x 730


def test_batch_without_server_metrics_says_it_cannot_judge():
    ctx = ctx_for(facts(server={}))
    assert next(r for r in default_rules() if r.name == "batch").evaluate(ctx) == []
    assert any("no model-server metrics" in n for n in ctx.notes)


def test_cache_fires_at_its_repeat_threshold():
    base = dict(hashed_requests=1000, hashed_request_s=1000.0, repeat_request_s=100.0)
    fired = fire(Action.CACHE, facts(repeat_requests=100, **base))
    assert [r.action for r in fired] == ["cache"] and fired[0].evidence["repeat_share"] == 0.1
    assert fire(Action.CACHE, facts(repeat_requests=99, **base)) == []


# -- hosted_api ---------------------------------------------------------------------------------------


def test_hosted_api_fires_when_the_same_model_costs_less_on_an_api():
    f = facts(model="meta-llama/llama-3.1-8b-instruct", input_tokens=10_000_000, output_tokens=2_000_000)
    fired = fire(Action.HOSTED_API, f)
    assert [r.action for r in fired] == ["hosted_api"]
    # 12M tokens a day at $0.10/M = $1.20/day -> x 30.4167 = $36.50/month
    assert fired[0].evidence["projected_monthly_usd"] == Decimal("36.50")
    assert fire(Action.HOSTED_API, replace(f, input_tokens=1_500_000_000)) == []  # the API would cost more


def test_hosted_api_compares_a_quantized_build_with_the_same_model():
    assert fire(Action.HOSTED_API, facts(model="llama-3.1-8b-instruct-awq", input_tokens=1000, output_tokens=1000))


def test_hosted_api_notes_a_model_no_api_serves():
    ctx = ctx_for(facts(model="our-tutor-8b"))
    assert next(r for r in default_rules() if r.name == "hosted_api").evaluate(ctx) == []
    assert any("no hosted API serves" in n for n in ctx.notes)


# -- the engine: conflicts and combined savings -------------------------------------------------------


def _rec(action: str, touches: tuple[str, ...], saved: str, conf: float, apply) -> Recommendation:
    return Recommendation(action, action, {}, Decimal(saved), conf, "do it", touches=touches, apply=apply)


BASE = {"since_ns": T0, "until_ns": T0 + DAY_NS, "evaluated_ns": T0 + DAY_NS, "thresholds": {}}


def test_conflicting_actions_keep_the_larger_expected_saving_and_say_why():
    f = facts()
    ctx = ctx_for(f)
    committed = _rec(Action.COMMIT, ("pricing",), "219.00", 0.6, lambda p: p.replace(hourly_usd=Decimal("0.50")))
    spot = _rec(Action.SPOT, ("pricing",), "345.00", 0.75, lambda p: p.replace(hourly_usd=Decimal("0.3275")))
    ev = settle([committed, spot], ctx, BASE)
    assert [r.action for r in ev.recommended] == ["spot"]
    loser = next(r for r in ev.recommendations if r.status == "superseded")
    assert loser.action == "commit" and "superseded by spot" in loser.note and "pricing" in loser.note
    assert "1-year commitment" in loser.note  # the pair's reason


def test_combined_savings_apply_one_after_another_to_what_remains():
    f = facts()
    ctx = ctx_for(f)
    half_price = _rec(Action.COMMIT, ("pricing",), "292.00", 0.7, lambda p: p.replace(hourly_usd=p.hourly_usd / 2))
    half_gpu = _rec(Action.RIGHTSIZE, ("gpu",), "292.00", 0.6, lambda p: p.replace(hourly_usd=p.hourly_usd / 2))
    ev = settle([half_price, half_gpu], ctx, BASE)
    assert ev.current_monthly_usd == Decimal("584.000000000")
    assert [r.combined_savings_usd_month for r in ev.recommended] == [Decimal("292.00"), Decimal("146.00")]
    assert ev.combined_savings_usd_month == Decimal("438.00")  # 75%, not the 100% a sum would claim
    assert sum(r.combined_savings_usd_month for r in ev.recommended) == ev.combined_savings_usd_month


def test_hosted_api_is_weighed_against_the_best_self_hosted_plan():
    f = facts(model="llama-3.1-8b-instruct")
    ctx = ctx_for(f)
    api = lambda cost: _rec(Action.HOSTED_API, ("deployment", "pricing", "gpu", "batching"), "400", 0.5,
                            lambda p: p.replace(mode=ALWAYS_ON, hourly_usd=Decimal(cost) / 730, instances=1))
    cheap_box = _rec(Action.RIGHTSIZE, ("gpu",), "434.00", 0.7, lambda p: p.replace(hourly_usd=Decimal("0.20")))
    ev = settle([cheap_box, api("100")], ctx, BASE)  # the API at $100 beats the $146 self-hosted plan
    assert [r.action for r in ev.recommended] == ["hosted_api"]
    assert "superseded by hosted_api" in next(r for r in ev.recommendations if r.action == "rightsize").note
    ev = settle([cheap_box, api("200")], ctx, BASE)  # at $200 it does not
    assert [r.action for r in ev.recommended] == ["rightsize"]
    assert "self-hosted plan (rightsize)" in next(r for r in ev.recommendations if r.action == "hosted_api").note


# -- thresholds -------------------------------------------------------------------------------------


def test_thresholds_from_a_rules_table_or_a_string_with_clear_errors():
    assert parse_overrides({"serverless": {"max_warm_share": 0.5}, "batch.min_waiting_p95": 2}) == (
        ("batch.min_waiting_p95", 2.0), ("serverless.max_warm_share", 0.5))
    assert parse_overrides("spot.offline_pattern=jobs|etl") == (("spot.offline_pattern", "jobs|etl"),)
    with pytest.raises(ValueError, match="unknown rule threshold 'serverless.nope'"):
        parse_overrides("serverless.nope=1")
    with pytest.raises(ValueError, match="is not a number"):
        parse_overrides({"commit": {"min_active_share": "lots"}})
    with pytest.raises(ValueError, match="not a regular expression"):
        parse_overrides({"spot": {"offline_pattern": "("}})


def test_settings_read_a_rules_table_from_the_config_file(tmp_path):
    from infermeter.config import Settings
    from infermeter.errors import ConfigError

    cfg = tmp_path / "infermeter.toml"
    cfg.write_text("[rules.serverless]\nmax_warm_share = 0.4\n[rules]\n\"batch.target_running\" = 16\n")
    s = Settings.load(environ={}, config_file=str(cfg))
    assert dict(s.rules) == {"serverless.max_warm_share": 0.4, "batch.target_running": 16.0}
    cfg.write_text("[rules.serverless]\nmax_warm = 0.4\n")
    with pytest.raises(ConfigError, match="serverless.max_warm"):
        Settings.load(environ={}, config_file=str(cfg))


def test_every_rule_has_its_action_and_documented_thresholds():
    names = [r.name for r in default_rules()]
    assert sorted(names) == sorted(["quantize", "batch", "serverless", "always_on", "spot", "commit", "rightsize",
                                    "cache", "hosted_api"])
    for r in default_rules():
        assert r.thresholds, r.name
