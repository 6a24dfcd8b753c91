"""The price catalog, model-name matching, the user price file, pricing at ingest, `infermeter prices`."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from infermeter.agent.cli import main
from infermeter.cost.catalog import CatalogError, load_catalog
from infermeter.cost.names import normalize
from infermeter.cost.pricing import PricingProcessor, is_local_address
from infermeter.errors import ConfigError
from infermeter.records import InferenceRecord


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_shipped_catalog_covers_what_users_run(cat):
    providers = {m.provider for m in cat.models}
    assert {"openai", "anthropic", "google", "mistral", "together", "groq", "fireworks"} <= providers
    gpus = {i.gpu_type for i in cat.instances}
    assert {"T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100", "H200"} <= gpus
    assert {i.cloud for i in cat.instances} == {"aws", "gcp", "azure"}
    assert {s.gpu_type for s in cat.serverless} >= {"L4", "A100-80GB", "H100"}
    assert cat.carbon("us-east-1") is not None and cat.default_pue > 1


def test_every_entry_has_as_of_and_source_and_sane_prices(cat):
    for e in (*cat.models, *cat.instances, *cat.serverless, *cat.regions):
        assert len(e.as_of) == 10 and e.as_of[4] == "-" and e.source.startswith("https://"), e
    for i in cat.instances:
        assert i.gpu_count >= 1 and i.on_demand_usd_per_hour > 0
        assert i.spot_usd_per_hour < i.on_demand_usd_per_hour and i.committed_usd_per_hour < i.on_demand_usd_per_hour, i
    for m in cat.models:
        if m.cached_input_usd_per_1m is not None:
            assert m.cached_input_usd_per_1m <= m.input_usd_per_1m, m


def test_no_alias_names_two_different_models(cat):
    owner = {}
    for m in cat.models:
        for name in (m.model, *m.aliases):
            n = normalize(name)
            assert owner.setdefault(n, normalize(m.model)) == normalize(m.model), name


@pytest.mark.parametrize("name,provider,expected", [
    ("gpt-4o-2024-08-06", None, ("openai", "gpt-4o")),
    ("openai/gpt-4o-mini", None, ("openai", "gpt-4o-mini")),
    ("gpt-4-0613", None, ("openai", "gpt-4")),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", None, ("anthropic", "claude-3-5-sonnet")),
    ("claude-3-5-sonnet-latest", None, ("anthropic", "claude-3-5-sonnet")),
    ("claude-sonnet-4-20250514", None, ("anthropic", "claude-sonnet-4")),
    ("models/gemini-1.5-pro-002", None, ("google", "gemini-1.5-pro")),
    ("mistral-large-2411", None, ("mistral", "mistral-large")),
    ("llama-3.1-8b-instant", "groq", ("groq", "llama-3.1-8b-instruct")),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "together", ("together", "llama-3.1-8b-instruct")),
    ("accounts/fireworks/models/llama-v3p1-8b-instruct", "fireworks", ("fireworks", "llama-3.1-8b-instruct")),
])
def test_aliases_and_dated_versions_match(cat, name, provider, expected):
    m = cat.model(name, provider)
    assert m is not None and (m.provider, m.model) == expected


def test_unknown_and_ambiguous_models_have_no_price(cat):
    assert cat.model("gpt-4o-ultra-9000") is None  # no prefix matching: never borrow a neighbour's price
    assert cat.model("llama3.1:8b") is None  # open model, several hosts: no single price without a provider
    cheapest = cat.api_equivalent("llama3.1:8b")
    assert cheapest.provider == "groq" and cheapest.input_usd_per_1m == Decimal("0.05")


def test_token_cost_is_exact_and_discounts_cached_input(cat):
    gpt4o = cat.model("gpt-4o")
    # 800 uncached x $2.50 + 200 cached x $1.25 + 500 out x $10, per 1M
    assert gpt4o.cost_usd(1000, 500, 200) == Decimal("0.00725")
    assert cat.model("gpt-4").cost_usd(1000, 0, 1000) == Decimal("0.03")  # no cache price: input price


def test_user_file_overrides_and_adds(tmp_path, cat):
    f = tmp_path / "prices.toml"
    f.write_text('''
model = [
  { provider = "openai", model = "gpt-4o", input_usd_per_1m = "1.00", output_usd_per_1m = "2.00", as_of = "2026-01-01", source = "https://example.com/contract" },
  { provider = "acme", model = "acme-7b", aliases = ["acme/acme-7b-chat"], input_usd_per_1m = 0.1, output_usd_per_1m = 0.2, as_of = "2026-01-01", source = "https://example.com" },
]
instance = [
  { cloud = "onprem", instance_type = "rack-7", gpu_type = "H100", gpu_count = 8, gpu_memory_gib = 80, on_demand_usd_per_hour = "20", as_of = "2026-01-01", source = "https://example.com/lease" },
]
''')
    c = load_catalog(str(f))
    assert c.model("gpt-4o").input_usd_per_1m == Decimal("1.00")
    assert c.model("acme-7b-chat", "acme").output_usd_per_1m == Decimal("0.2")
    assert c.instance("rack-7").hourly_usd() == Decimal("20") and c.instance("onprem:rack-7") is not None
    assert len(c.models) == len(cat.models) + 1 and c.files == (str(f),)
    j = tmp_path / "prices.json"
    j.write_text(json.dumps({"region": [{"cloud": "onprem", "region": "basement", "gco2e_per_kwh": 55, "as_of": "2026-01-01", "source": "https://e.com"}]}))
    assert load_catalog(str(j)).carbon("basement") == (55, 1.58)


@pytest.mark.parametrize("content,needle", [
    ('model = [{ provider = "x", model = "y", input_usd_per_1m = "abc", output_usd_per_1m = "1", as_of = "2026-01-01", source = "s" }]', "'abc' is not a number"),
    ('model = [{ provider = "x", model = "y", input_usd_per_1m = "-1", output_usd_per_1m = "1", as_of = "2026-01-01", source = "s" }]', "non-negative"),
    ('model = [{ provider = "x", model = "y", input_usd_per_1m = "1", output_usd_per_1m = "1", source = "s" }]', "'as_of'"),
    ('model = [{ provider = "x", model = "y", input_usd_per_1m = "1", output_usd_per_1m = "1", colour = "red", as_of = "2026-01-01", source = "s" }]', "unknown field 'colour'"),
    ('modles = []', "unknown section 'modles'"),
    ('model = [', "cannot use it"),
])
def test_bad_user_file_names_file_entry_and_field(tmp_path, content, needle):
    f = tmp_path / "bad.toml"
    f.write_text(content)
    with pytest.raises(CatalogError) as e:
        load_catalog(str(f))
    assert needle in str(e.value) and "bad.toml" in str(e.value) and isinstance(e.value, ConfigError)


def test_missing_user_file_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="file not found"):
        load_catalog(str(tmp_path / "nope.toml"))


def _rec(**kw):
    kw.setdefault("input_tokens", 1000)
    kw.setdefault("output_tokens", 500)
    return InferenceRecord(start_time_ns=1, duration_s=0.1, **kw)


def test_pricing_precedence_provider_catalog_unpriced_gpu_time(cat):
    p = PricingProcessor(cat)
    reported = p.price(_rec(request_model="gpt-4o", provider="openai", cost_usd=Decimal("0.5"), cost_source="provider"))
    assert (reported.cost_usd, reported.cost_source) == (Decimal("0.5"), "provider")
    hosted = p.price(_rec(request_model="gpt-4o", response_model="gpt-4o-2024-08-06", provider="openai"))
    assert (hosted.cost_usd, hosted.cost_source, hosted.cost_currency) == (Decimal("0.0075"), "catalog", "USD")
    unknown = p.price(_rec(request_model="gpt-7-secret", provider="openai"))
    assert unknown.cost_usd is None and unknown.cost_source == "unpriced"  # never $0
    no_tokens = p.price(_rec(request_model="gpt-4o", provider="openai", input_tokens=None, output_tokens=None))
    assert no_tokens.cost_source == "unpriced"
    embed = p.price(_rec(request_model="text-embedding-3-small", provider="openai", output_tokens=None, operation="embeddings"))
    assert embed.cost_usd == Decimal("0.00002")
    local = p.price(_rec(request_model="llama-3.1-8b", provider="vllm"))
    assert local.cost_usd is None and local.cost_source == "gpu_time" and local.request_id is not None
    assert p.stats()["by_source"] == {"provider": 1, "catalog": 2, "unpriced": 2, "gpu_time": 1}
    assert p.stats()["unpriced_models"]["gpt-7-secret"] == 1


def test_a_record_made_priced_passes_through_and_a_wrong_preset_is_repriced(cat):
    p = PricingProcessor(cat)
    made = _rec(request_model="llama-3.1-8b", provider="vllm", cost_currency="USD", cost_source="gpu_time", request_id=7)
    claims = _rec(request_model="gpt-4o", provider="openai", cost_currency="USD", cost_source="gpu_time", request_id=8,
                  source="otlp")  # priced elsewhere: not trusted
    unpriced_local = _rec(request_model="llama-3.1-8b", provider="vllm")
    out = p([made, claims, unpriced_local])
    assert out[0] is made  # priced where the decorator made it: kept, not copied
    assert (out[1].cost_source, out[1].cost_usd) == ("catalog", Decimal("0.0075"))  # priced here
    assert (out[2].cost_source, out[2].cost_currency) == ("gpu_time", "USD") and out[2].request_id is not None
    assert p.stats()["by_source"] == {"gpu_time": 2, "catalog": 1}


@pytest.mark.parametrize("kw,kind", [
    ({"request_model": "gpt-4o"}, "catalog"),  # no provider: a closed model the catalog knows is hosted
    ({"request_model": "my-finetune"}, "gpu_time"),  # no provider, no address: a local function
    ({"request_model": "llama-3.1-8b-instruct", "provider": "openai", "server_address": "127.0.0.1:8000"}, "gpu_time"),
    ({"request_model": "Qwen/Qwen2.5-7B-Instruct", "provider": "openai", "server_address": "vllm.default.svc:8000"}, "gpu_time"),
    ({"request_model": "llama-3.1-8b-instruct", "provider": "together", "server_address": "api.together.xyz"}, "catalog"),
    ({"request_model": "command-r", "provider": "cohere", "server_address": "api.cohere.com"}, "unpriced"),
    ({"request_model": "some-model", "server_address": "api.example.com"}, "unpriced"),
    ({"request_model": "claude-3-5-sonnet-20241022", "provider": "aws.bedrock"}, "catalog"),
])
def test_hosted_or_self_hosted(cat, kw, kind):
    assert PricingProcessor(cat).price(_rec(**kw)).cost_source == kind


@pytest.mark.parametrize("addr,local", [
    ("127.0.0.1:8000", True), ("[::1]:8000", True), ("10.1.2.3", True), ("192.168.0.5:11434", True),
    ("localhost:8080", True), ("vllm:8000", True), ("tgi.ml.svc.cluster.local", True), ("api.openai.com", False),
    ("http://8.8.8.8:80/v1", False), (None, None),
])
def test_is_local_address(addr, local):
    assert is_local_address(addr) is local


def test_prices_command_search_and_json(capsys):
    assert main(["prices", "g6.xlarge"]) == 0
    out = capsys.readouterr().out
    assert "g6.xlarge" in out and "1x L4" in out and "$0.8048" in out and "p5.48xlarge" not in out
    assert main(["prices", "llama3.1:8b", "--kind", "models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["provider"] for m in data["models"]} == {"together", "groq", "fireworks"}
    assert main(["prices", "no-such-thing-anywhere"]) == 1


def test_prices_command_reports_a_bad_price_file(tmp_path, capsys):
    f = tmp_path / "p.toml"
    f.write_text("model = 3")
    assert main(["prices", "--price-file", str(f)]) == 1
    assert "price_file" in capsys.readouterr().err


def test_cost_modules_export_what_their_all_says():
    import importlib

    for name in ("catalog", "names", "pricing", "box", "shares", "energy", "windows", "attribution", "rollups",
                 "views", "cli"):
        mod = importlib.import_module(f"infermeter.cost.{name}")
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, (name, missing)


def test_integer_fast_path_prices_exactly_like_the_decimal_computation():
    """The pricing processor computes token costs in integer nano-dollars; it must agree with
    ModelPrice.cost_usd to the digit (and in representation), rounding half to even included."""
    import random
    from decimal import Decimal

    from infermeter.cost.catalog import ModelPrice
    from infermeter.cost.pricing import _cost_usd

    rng = random.Random(1)
    for _ in range(5000):
        pin = Decimal(rng.randrange(0, 20000)) / Decimal(rng.choice([1, 10, 100, 1000]))
        pout = Decimal(rng.randrange(0, 80000)) / Decimal(rng.choice([1, 10, 100, 1000]))
        price = ModelPrice("p", "m", pin, pout, rng.choice([None, pin / Decimal(rng.choice([2, 4, 10]))]))
        inp = rng.randrange(0, 200_000)
        args = (inp, rng.randrange(0, 50_000), rng.choice([None, 0, rng.randrange(0, inp + 1), inp + 5]))
        want, got = price.cost_usd(*args), _cost_usd(price, *args)
        assert got == want and str(got) == str(want), (price, args)
    odd = ModelPrice("p", "m", Decimal("0.0000000001"), Decimal(1))  # sub-nano digits: the Decimal path
    assert _cost_usd(odd, 10**7, 3, None) == odd.cost_usd(10**7, 3)
    half = ModelPrice("p", "m", Decimal("0.0005"), Decimal(0))  # 1 token at $0.0005/1M = 0.5 nano-dollars
    assert _cost_usd(half, 1, 0, None) == Decimal(0) and _cost_usd(half, 3, 0, None) == Decimal("2E-9")


def test_a_batch_prices_each_record_as_price_does(cat):
    """The batch call inlines the common hosted case once the classification is cached; every
    record must come out as ``price()`` makes it, and be counted the same."""
    kinds = [
        {"request_model": "gpt-4o", "provider": "openai"},
        {"request_model": "gpt-4o-mini", "provider": "openai", "cached_tokens": 300},
        {"request_model": "gpt-4o-mini", "provider": "openai", "cached_tokens": 5000},  # more than the input
        {"request_model": "text-embedding-3-small", "provider": "openai", "output_tokens": None, "operation": "embeddings"},
        {"request_model": "gpt-4o", "provider": "openai", "input_tokens": None},
        {"request_model": "gpt-4o", "provider": "openai", "input_tokens": -1},
        {"request_model": "gpt-7-secret", "provider": "openai"},
        {"request_model": "llama-3.1-8b", "provider": "vllm"},
    ]
    batch = [_rec(request_id=i + 1, **kinds[i % len(kinds)]) for i in range(4 * len(kinds))]
    by_one, by_batch = PricingProcessor(cat), PricingProcessor(cat)
    want = [by_one.price(r) for r in batch]
    assert by_batch(batch[: len(kinds)]) == want[: len(kinds)]  # classifies: the cache is cold
    got = by_batch(batch[len(kinds):])
    assert got == want[len(kinds):]
    assert [str(r.cost_usd) for r in got] == [str(r.cost_usd) for r in want[len(kinds):]]
    assert by_batch.stats() == by_one.stats()
    assert want[1].cost_source == "catalog" and want[1].cost_usd != want[0].cost_usd
