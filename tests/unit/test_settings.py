import pytest

from runwatch.errors import ConfigError
from runwatch.settings import Settings, normalize_database_url
from runwatch.thresholds import ThresholdPolicy, load_policies


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings.database_url is None and settings.queued_stale_seconds == 3600
    assert settings.drain_mode == "process"


def test_plain_postgres_urls_use_psycopg3():
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert Settings.from_env({"RUNWATCH_DATABASE_URL": "postgres://u@h/db"}).database_url.startswith(
        "postgresql+psycopg://"
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RUNWATCH_QUEUED_STALE_SECONDS": "soon"}, "must be an integer"),
        ({"RUNWATCH_RUNNING_STALE_SECONDS": "0"}, ">= 1"),
        ({"RUNWATCH_DRAIN": "sometimes"}, "RUNWATCH_DRAIN"),
    ],
)
def test_malformed_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_missing_database_url_explains_the_embedded_default():
    with pytest.raises(ConfigError, match="runwatch demo"):
        Settings.from_env({}).require_database_url()


def test_thresholds_file_per_type_and_opt_out(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text('[types."a.b"]\nrunning_stale_seconds = 30\nheal = false\n[types.c]\nqueued_stale_seconds = 9\n')
    policy = ThresholdPolicy(Settings(thresholds_file=path))
    a = policy.resolve("a.b")
    assert (a.queued_stale_seconds, a.running_stale_seconds, a.source, a.heal) == (3600, 30, "config", False)
    assert policy.resolve("c").queued_stale_seconds == 9
    assert policy.resolve("other").source == "default"


@pytest.mark.parametrize("body", ['[types.x]\nrunning_stale_seconds = -1\n', "not toml ["])
def test_malformed_thresholds_file_is_a_config_error(tmp_path, body):
    path = tmp_path / "t.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=str(path)):
        load_policies(path)
