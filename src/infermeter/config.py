"""Settings: one frozen object built from arguments, then environment, then a config file, then defaults.

Every setting is declared once, below, with its environment variable and a docstring-like help
text; ``infermeter config`` and the README's reference are generated from the same table. A bad
value stops start-up with a :class:`~infermeter.errors.ConfigError` naming the setting and value.

The config file is TOML (``INFERMETER_CONFIG``, default ``./infermeter.toml`` when it exists);
its keys are the field names below, at the top level or under an ``[infermeter]`` table.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["Settings", "parse_duration", "parse_hostport", "SETTINGS_HELP", "CONFIG_FILE_ENV"]

CONFIG_FILE_ENV = "INFERMETER_CONFIG"
"""Path of a TOML config file. Default: ``./infermeter.toml`` if it exists."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError("expected true/false")


def _pos_int(v: Any) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


def _pos_float(v: Any) -> float:
    x = float(v)
    if not x > 0:
        raise ValueError("must be a positive number")
    return x


def _nonneg_float_or_none(v: Any) -> float | None:
    if v is None or v == "":
        return None
    x = float(v)
    if x < 0:
        raise ValueError("must not be negative")
    return x


def _str_or_none(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _str(v: Any) -> str:
    s = str(v).strip()
    if not s:
        raise ValueError("must not be empty")
    return s


def _int_or_none(v: Any) -> int | None:
    if v is None or v == "":
        return None
    return int(v)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)\s*$", re.IGNORECASE)


def _size_or_off(v: Any) -> str | None:
    """A DuckDB memory size ('256MB', '1GiB') or 'off'/'none' (DuckDB's own default)."""
    if v is None or str(v).strip().lower() in ("off", "none", ""):
        return None
    m = _SIZE_RE.match(str(v))
    if not m:
        raise ValueError("must be a size such as 256MB or 1GiB, or 'off'")
    return f"{m.group(1)}{m.group(2).upper().replace('I', 'i')}"


def parse_duration(text: str | float | int) -> float:
    """'90s', '5m', '1h', '7d', '250ms' or a number of seconds -> seconds."""
    if isinstance(text, (int, float)):
        secs = float(text)
    else:
        s = str(text).strip().lower()
        for unit in ("ms", "s", "m", "h", "d", "w"):
            if s.endswith(unit) and s[: -len(unit)].replace(".", "", 1).isdigit():
                secs = float(s[: -len(unit)]) * _UNITS[unit]
                break
        else:
            secs = float(s)
    if secs < 0:
        raise ValueError("must not be negative")
    return secs


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'host:port', ':port' or 'port' -> (host, port)."""
    s = str(text).strip()
    if s.startswith("http://") or s.startswith("https://"):
        s = s.split("://", 1)[1].rstrip("/")
    host, sep, port = s.rpartition(":")
    if not sep:
        host, port = "", s
    host = host.strip("[]") or default_host
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError("port out of range")
    return host, p


def _pos_duration(v: Any) -> float:
    secs = parse_duration(v)
    if secs <= 0:
        raise ValueError("must be a positive duration")
    return secs


def _rule_thresholds(v: Any) -> tuple[tuple[str, Any], ...]:
    from .rules.thresholds import parse_overrides  # imported on use: `import infermeter` stays light

    return parse_overrides(v)


def _hostport_or_off(v: Any) -> str | None:
    s = str(v).strip()
    if s.lower() in ("off", "none", "0", "false", ""):
        return None
    host, port = parse_hostport(s)
    return f"{host}:{port}"


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = str(v).strip().lower().replace("-", "_")
        if s not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return s

    return parse


PROXY_PROTOCOLS = ("openai", "ollama", "tgi", "kserve", "anthropic", "generic")
"""Wire protocols the proxy speaks (one module each under ``agent/proxy/protocols``)."""


def _proxy_routes(v: Any) -> tuple[tuple[str, str], ...] | None:
    """'PATH=PROTOCOL,...' (or a TOML table {PATH = PROTOCOL}) -> ((path, protocol), ...)."""
    if isinstance(v, dict):
        pairs = [(str(k), str(p)) for k, p in v.items()]
    else:
        pairs = []
        for item in str(v).split(","):
            if not item.strip():
                continue
            path, sep, proto = item.partition("=")
            if not sep:
                raise ValueError(f"{item.strip()!r} is not PATH=PROTOCOL")
            pairs.append((path, proto))
    out = []
    for path, proto in pairs:
        path, proto = path.strip(), proto.strip().lower()
        if not path.startswith("/"):
            raise ValueError(f"route {path!r} must start with '/'")
        if proto not in PROXY_PROTOCOLS:
            raise ValueError(f"unknown protocol {proto!r} for {path}; expected one of {', '.join(PROXY_PROTOCOLS)}")
        out.append((path, proto))
    return tuple(out) or None


def _setting(default: Any, env: str | tuple[str, ...] | None, parse: Callable[[Any], Any], help: str) -> Any:
    envs = (env,) if isinstance(env, str) else (env or ())
    return field(default=default, metadata={"env": envs, "parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every infermeter setting. Build with :meth:`Settings.load`, never mutate."""

    # -- core / embedded agent -------------------------------------------------------------
    db: str = _setting("infermeter.duckdb", "INFERMETER_DB", _str, "DuckDB store file the agent owns.")
    api: str | None = _setting(
        "127.0.0.1:9187", "INFERMETER_API", _hostport_or_off,
        "Agent HTTP API (health, summaries, /metrics, OTLP receiver) as host:port; 'off' disables.",
    )
    endpoint: str | None = _setting(
        None, ("INFERMETER_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"), _str_or_none,
        "When set, the decorator exports OTLP there instead of starting an agent in-process, and an agent exports its spans and metrics there.",
    )
    enabled: bool = _setting(True, "INFERMETER_ENABLED", _bool, "Master switch; false makes @track a pass-through.")
    queue_size: int = _setting(100_000, "INFERMETER_QUEUE_SIZE", _pos_int, "Records buffered before new ones are dropped (and counted).")
    batch_size: int = _setting(8192, "INFERMETER_BATCH_SIZE", _pos_int, "Records per store write.")
    store_memory_limit: str | None = _setting(
        "64MB", "INFERMETER_STORE_MEMORY_LIMIT", _size_or_off,
        "Cap on the agent's DuckDB memory (buffer cache, checkpoints, queries; bigger queries spill to <db>.tmp); 'off' is DuckDB's default, 80% of RAM.",
    )
    store_write_delay_s: float = _setting(
        0.25, "INFERMETER_STORE_WRITE_DELAY", _pos_float,
        "Longest a record waits for the store's next insert: longer makes fewer, bigger inserts (less CPU), shorter keeps fewer records in memory.",
    )
    store_threads: int = _setting(
        2, "INFERMETER_STORE_THREADS", _pos_int,
        "Threads the agent's DuckDB may use (attribution, summaries); DuckDB's own default is every core, which an agent inside a model server should not take.",
    )
    flush_interval_s: float = _setting(0.5, "INFERMETER_FLUSH_INTERVAL", _pos_float, "Seconds between pipeline drains.")
    hash_prompts: bool = _setting(True, "INFERMETER_HASH_PROMPTS", _bool, "Keep a 64-bit prompt hash (never the text) for cache detection.")
    service_name: str = _setting("infermeter", "OTEL_SERVICE_NAME", _str, "service.name of exported telemetry.")
    log_level: str = _setting("WARNING", "INFERMETER_LOG_LEVEL", lambda v: _str(v).upper(), "Log level of the 'infermeter' logger.")

    # -- collectors -------------------------------------------------------------------------
    sampling: bool = _setting(True, "INFERMETER_SAMPLING", _bool, "Run the sampler (host, GPU, model-server metrics) in the agent.")
    sample_interval_s: float = _setting(1.0, "INFERMETER_SAMPLE_INTERVAL", lambda v: _pos_float(parse_duration(v)), "Sampler tick: seconds or a duration like 250ms (aligned to the wall clock).")
    target_pid: int | None = _setting(None, "INFERMETER_TARGET_PID", _int_or_none, "PID of the model server whose process tree the host collector watches.")
    metrics_urls: str | None = _setting(None, "INFERMETER_METRICS_URLS", _str_or_none, "Comma-separated model-server Prometheus /metrics URLs to scrape.")
    gpu: bool = _setting(True, "INFERMETER_GPU", _bool, "Sample GPUs through NVML when present.")

    # -- proxy ------------------------------------------------------------------------------
    upstream: str | None = _setting(None, "INFERMETER_UPSTREAM", _str_or_none, "Model server the proxy forwards to, e.g. http://127.0.0.1:8000.")
    listen: str = _setting("0.0.0.0:8100", "INFERMETER_LISTEN", lambda v: "%s:%d" % parse_hostport(v, "0.0.0.0"), "Proxy listen address host:port.")
    upstream_timeout_s: float = _setting(600.0, "INFERMETER_UPSTREAM_TIMEOUT", _pos_float, "Seconds to wait for the upstream before answering 504.")
    max_parse_bytes: int = _setting(4 * 1024 * 1024, "INFERMETER_MAX_PARSE_BYTES", _pos_int, "Request bodies above this are forwarded without parsing.")
    tenant_header: str = _setting("X-Infermeter-Tenant", "INFERMETER_TENANT_HEADER", _str, "Request header naming the tenant.")
    inject_stream_usage: bool = _setting(True, "INFERMETER_INJECT_STREAM_USAGE", _bool, "Ask OpenAI-compatible upstreams for usage on streams (hidden from clients that did not ask).")
    proxy_routes: tuple[tuple[str, str], ...] | None = _setting(
        None, "INFERMETER_PROXY_ROUTES", _proxy_routes,
        "Wire protocol per route, overriding the path defaults: 'PATH=PROTOCOL,...' (PATH may end in '*'); "
        "protocols: openai, ollama, tgi, kserve, anthropic, generic.",
    )

    # -- cost -------------------------------------------------------------------------------
    instance: str | None = _setting(None, "INFERMETER_INSTANCE", _str_or_none, "Cloud instance type of this box (e.g. g6.xlarge), priced from the catalog.")
    pricing: str = _setting("on_demand", "INFERMETER_PRICING", _choice("on_demand", "spot", "committed"), "Pricing model of the instance.")
    hourly_usd: float | None = _setting(None, "INFERMETER_HOURLY_USD", _nonneg_float_or_none, "Explicit instance price, $/hour (wins over --instance).")
    gpu_hour_usd: float | None = _setting(None, "INFERMETER_GPU_HOUR_USD", _nonneg_float_or_none, "Explicit price per GPU-hour (times the GPU count).")
    region: str | None = _setting(None, "INFERMETER_REGION", _str_or_none, "Cloud region, for grid carbon intensity.")
    price_file: str | None = _setting(None, "INFERMETER_PRICE_FILE", _str_or_none, "User price catalog (TOML/JSON) overriding the shipped one.")
    attribution_weighting: str = _setting("time", "INFERMETER_ATTRIBUTION_WEIGHTING", _choice("time", "tokens"), "Split each window among its requests by overlap ('time') or overlap x tokens ('tokens').")
    attribution_delay_s: float = _setting(30.0, "INFERMETER_ATTRIBUTION_DELAY", parse_duration, "Finalise a cost window this long after it closes (requests still running then are re-attributed when they end).")

    # -- recommendations --------------------------------------------------------------------
    rules: tuple[tuple[str, Any], ...] = _setting(
        (), "INFERMETER_RULES", lambda v: _rule_thresholds(v),
        "Rule threshold overrides: a [rules] table in the config file, or rule.key=value,... (`infermeter recommend --thresholds` lists them).",
    )
    recommend_interval_s: float = _setting(3600.0, "INFERMETER_RECOMMEND_INTERVAL", parse_duration, "How often the agent re-evaluates and stores recommendations; 0 turns it off.")
    recommend_window_s: float = _setting(86400.0, "INFERMETER_RECOMMEND_WINDOW", _pos_duration, "Window of data the recommendations look at (e.g. 24h, 7d).")

    # -- export (OTLP, receiver) ------------------------------------------------------------
    otlp_protocol: str = _setting("http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL", _choice("http/protobuf", "grpc"), "OTLP export protocol.")
    otlp_traces_endpoint: str | None = _setting(None, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", _str_or_none, "Full OTLP traces URL (wins over the endpoint + /v1/traces).")
    otlp_metrics_endpoint: str | None = _setting(None, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", _str_or_none, "Full OTLP metrics URL (wins over the endpoint + /v1/metrics).")
    traces_exporter: str = _setting("otlp", "OTEL_TRACES_EXPORTER", _choice("otlp", "none"), "Export spans to the OTLP endpoint ('none' to stop).")
    metrics_exporter: str = _setting(
        "auto", "OTEL_METRICS_EXPORTER", _choice("auto", "otlp", "none"),
        "Export metrics to the OTLP endpoint; 'auto' does, except from workers whose INFERMETER_ENDPOINT is an infermeter agent (it makes them from the spans).",
    )
    metric_export_interval_ms: int = _setting(60_000, "OTEL_METRIC_EXPORT_INTERVAL", _pos_int, "Milliseconds between OTLP metric exports.")
    resource_attributes: str | None = _setting(None, "OTEL_RESOURCE_ATTRIBUTES", _str_or_none, "Extra resource attributes of exported telemetry: key=value,key=value.")
    otlp_forward: str | None = _setting(None, "INFERMETER_OTLP_FORWARD", _str_or_none, "Forward every payload the OTLP receiver accepts, unchanged, to this OTLP/HTTP traces URL.")
    otlp_max_bytes: int = _setting(8 * 1024 * 1024, "INFERMETER_OTLP_MAX_BYTES", _pos_int, "Largest OTLP payload the receiver accepts (after decompression); larger gets 413.")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        config_file: str | None = None,
        **overrides: Any,
    ) -> "Settings":
        """Build settings: ``overrides`` (arguments), then ``environ``, then the config file, then defaults.

        ``None`` in ``overrides`` means "not given". Raises :class:`ConfigError` on a bad value.
        """
        env = os.environ if environ is None else environ
        file_values = _read_config_file(config_file or env.get(CONFIG_FILE_ENV))
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        unknown = set(file_values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(name, file_values[name], "not a known setting (in the config file)")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            parse = f.metadata["parse"]
            origin, raw = None, None
            if overrides.get(f.name) is not None:
                origin, raw = f.name, overrides[f.name]
            else:
                for name in f.metadata["env"]:
                    if env.get(name) not in (None, ""):
                        origin, raw = name, env[name]
                        break
                else:
                    if f.name in file_values:
                        origin, raw = f.name, file_values[f.name]
            if origin is None:
                continue
            try:
                values[f.name] = parse(raw)
            except (ValueError, TypeError) as e:
                raise ConfigError(origin, raw, str(e) or type(e).__name__) from e
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" and "enabled" not in overrides:
            values["enabled"] = False
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def _read_config_file(path: str | None) -> dict[str, Any]:
    explicit = path is not None
    path = path or "infermeter.toml"
    if not os.path.exists(path):
        if explicit:
            raise ConfigError(CONFIG_FILE_ENV, path, "file not found")
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(CONFIG_FILE_ENV, path, f"cannot read: {e}") from e
    if isinstance(data.get("infermeter"), dict):
        data = {**{k: v for k, v in data.items() if k != "infermeter"}, **data["infermeter"]}
    return data


def _help_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for f in dataclasses.fields(Settings):
        rows.append((f.name, " / ".join(f.metadata["env"]) or "-", repr(f.default), f.metadata["help"]))
    return rows


SETTINGS_HELP = _help_rows()
"""(field, environment variable, default, help) for every setting, for docs and ``infermeter config``."""
