import pytest

from infermeter.config import Settings, parse_duration, parse_hostport
from infermeter.errors import ConfigError


def test_defaults():
    s = Settings.load(environ={})
    assert s.db == "infermeter.duckdb"
    assert s.api == "127.0.0.1:9187"
    assert s.endpoint is None and s.enabled


def test_precedence_argument_env_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('db = "file.duckdb"\nqueue_size = 5\n[infermeter]\nflush_interval_s = 2.5\n')
    env = {"INFERMETER_CONFIG": str(f), "INFERMETER_DB": "env.duckdb"}
    s = Settings.load(environ=env)
    assert (s.db, s.queue_size, s.flush_interval_s) == ("env.duckdb", 5, 2.5)
    assert Settings.load(environ=env, db="arg.duckdb").db == "arg.duckdb"


def test_otel_fallbacks():
    s = Settings.load(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"})
    assert s.endpoint == "http://collector:4318"
    assert s.enabled is False
    assert Settings.load(environ={"INFERMETER_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2"}).endpoint == "http://a:1"


@pytest.mark.parametrize(
    "env, setting",
    [
        ({"INFERMETER_QUEUE_SIZE": "lots"}, "INFERMETER_QUEUE_SIZE"),
        ({"INFERMETER_QUEUE_SIZE": "-3"}, "INFERMETER_QUEUE_SIZE"),
        ({"INFERMETER_API": "127.0.0.1:99999"}, "INFERMETER_API"),
        ({"INFERMETER_ENABLED": "maybe"}, "INFERMETER_ENABLED"),
        ({"INFERMETER_PRICING": "cheap"}, "INFERMETER_PRICING"),
    ],
)
def test_bad_values_name_setting_and_value(env, setting):
    with pytest.raises(ConfigError) as e:
        Settings.load(environ=env)
    assert e.value.setting == setting
    assert setting in str(e.value) and repr(next(iter(env.values()))) in str(e.value)


def test_broken_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("db = [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.load(environ={"INFERMETER_CONFIG": str(f)})
    f.write_text('nonsense = 1\n')
    with pytest.raises(ConfigError, match="nonsense"):
        Settings.load(environ={"INFERMETER_CONFIG": str(f)})
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(environ={"INFERMETER_CONFIG": str(tmp_path / "missing.toml")})


def test_parsers():
    assert parse_duration("90s") == 90 and parse_duration("1h") == 3600 and parse_duration("250ms") == 0.25
    assert parse_duration("7d") == 7 * 86400 and parse_duration("12") == 12
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert parse_hostport(":8080") == ("127.0.0.1", 8080)
    assert parse_hostport("0.0.0.0:1") == ("0.0.0.0", 1)
    assert parse_hostport("http://localhost:9/") == ("localhost", 9)
