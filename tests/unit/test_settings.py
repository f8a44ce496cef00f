import dataclasses
import logging
from pathlib import Path

import pytest

from runwatch import parsers as p
from runwatch import settings as settings_module
from runwatch.errors import ConfigError
from runwatch.settings import Settings, default_of, malformed, normalize_database_url
from runwatch.thresholds import ThresholdPolicy, load_policies
from runwatch.variables import BY_NAME, VARIABLES, closest


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url is None and settings.queued_stale_seconds == 3600
    assert settings.drain_mode == "process" and settings.api_bind == "127.0.0.1:8000"
    assert settings.retention_days == {"blocked": 90, "failed": 90, "partially_succeeded": 90, "succeeded": 90}


def test_plain_postgres_urls_use_psycopg3():
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert Settings.from_env({"RUNWATCH_DATABASE_URL": "postgres://u@h/db"}).database_url == "postgresql+psycopg://u@h/db"


def test_every_settings_field_is_set_by_a_variable_and_every_variable_sets_a_field():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {v.field for v in VARIABLES} == fields
    assert len(BY_NAME) == len(VARIABLES) and all(v.name.startswith("RUNWATCH_") for v in VARIABLES)


@pytest.mark.parametrize("var", VARIABLES, ids=lambda v: v.name)
def test_each_default_is_the_settings_module_constant(var):
    """The table carries no default of its own: each is read back from the one DEFAULT_* constant."""
    constant = f"DEFAULT_{var.field.upper()}"
    if var.keys:
        assert default_of(var) == settings_module.DEFAULT_RETENTION_DAYS
    elif hasattr(settings_module, constant):
        assert default_of(var) == getattr(settings_module, constant)
    else:
        assert default_of(var) in (None, ()), f"{var.name}: a default without a DEFAULT_* constant"


# Every parser: a good value, malformed ones, and both sides of its bounds.
@pytest.mark.parametrize(
    "parser, raw, value",
    [
        (p.integer(minimum=1), "1", 1),
        (p.integer(minimum=1), "+42", 42),
        (p.integer(minimum=0), "0", 0),
        (p.integer(minimum=100), "100", 100),
        (p.number(minimum=0), "0", 0.0),
        (p.number(minimum=0), "2.5", 2.5),
        (p.number(minimum=0), ".5", 0.5),
        (p.choice("process", "thread"), "Thread", "thread"),
        (p.TEXT, "runwatch:events", "runwatch:events"),
        (p.PATH, "~/rw", Path("~/rw").expanduser()),
        (p.POSTGRES_URL, "postgresql://u:pw@h:5432/db", "postgresql+psycopg://u:pw@h:5432/db"),
        (p.POSTGRES_URL, "postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        (p.POSTGRES_URL, "postgresql:///db?host=/run/postgresql", "postgresql+psycopg:///db?host=/run/postgresql"),
        (p.REDIS_URL, "redis://:pw@h:6379/0", "redis://:pw@h:6379/0"),
        (p.REDIS_URL, "rediss://h:6380/1", "rediss://h:6380/1"),
        (p.REDIS_URL, "unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        (p.BIND_ADDRESS, "0.0.0.0:8000", "0.0.0.0:8000"),
        (p.BIND_ADDRESS, "[::1]:65535", "[::1]:65535"),
        (p.BIND_ADDRESS, "unix:/run/runwatch.sock", "unix:/run/runwatch.sock"),
        (p.BIND_ADDRESS, "fd://3", "fd://3"),
        (p.KEY_NAMES, "ssn, x-api-key,,card.number", ("ssn", "x-api-key", "card.number")),
        (p.KEY_NAMES, ",", ()),
        (p.HOOK_PATH, "myapp.redaction:scrub", "myapp.redaction:scrub"),
        (p.HOOK_PATH, "hooks:Scrubber.scrub", "hooks:Scrubber.scrub"),
        (p.LOG_FILE, "-", "-"),
    ],
)
def test_parsers_accept_their_form(parser, raw, value):
    assert parser.parse(raw) == value
    if value != ():
        assert parser.parse(parser.format(value)) == value  # a value written back reads the same


@pytest.mark.parametrize(
    "parser, raw",
    [
        (p.integer(minimum=1), "0"),
        (p.integer(minimum=1), "four"),
        (p.integer(minimum=1), "1.5"),
        (p.integer(minimum=1), "1e3"),
        (p.integer(minimum=0), "-1"),
        (p.integer(minimum=100), "99"),
        (p.number(minimum=0), "-0.5"),
        (p.number(minimum=0), "nan"),
        (p.number(minimum=0), "inf"),
        (p.number(minimum=0), "5s"),
        (p.choice("process", "thread"), "sometimes"),
        (p.POSTGRES_URL, "mysql://u@h/db"),
        (p.POSTGRES_URL, "postgresql+psycopg2://u@h/db"),
        (p.POSTGRES_URL, "localhost:5432"),
        (p.POSTGRES_URL, "postgresql://[::1/db"),
        (p.REDIS_URL, "http://h:6379"),
        (p.REDIS_URL, "127.0.0.1:6379"),
        (p.BIND_ADDRESS, "8000"),
        (p.BIND_ADDRESS, "host:"),
        (p.BIND_ADDRESS, "host:0"),
        (p.BIND_ADDRESS, "host:65536"),
        (p.BIND_ADDRESS, "::1:8000"),
        (p.BIND_ADDRESS, "unix:"),
        (p.BIND_ADDRESS, "fd://x"),
        (p.KEY_NAMES, "ssn;token"),
        (p.KEY_NAMES, "two words"),
        (p.HOOK_PATH, "myapp.redaction"),
        (p.HOOK_PATH, "my-app:scrub"),
        (p.HOOK_PATH, "myapp:scrub()"),
    ],
)
def test_parsers_reject_other_forms(parser, raw):
    with pytest.raises(ValueError):
        parser.parse(raw)


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_value_means_unset(blank):
    env = dict.fromkeys((v.name for v in VARIABLES), blank)
    assert Settings.from_env(env) == Settings()


def test_values_are_stripped_and_case_folded_where_the_form_allows():
    settings = Settings.from_env({"RUNWATCH_API_WORKERS": " 4\n", "RUNWATCH_API_LOG_LEVEL": "DEBUG"})
    assert (settings.api_workers, settings.api_log_level) == (4, "debug")


@pytest.mark.parametrize(
    "name, raw, form",
    [
        ("RUNWATCH_API_WORKERS", "four", "a positive integer (e.g. 2)"),
        ("RUNWATCH_QUEUED_STALE_SECONDS", "soon", "a positive integer (e.g. 3600)"),
        ("RUNWATCH_RUNNING_STALE_SECONDS", "0", "a positive integer (e.g. 900)"),
        ("RUNWATCH_BUFFER_MAX_EVENTS", "99", "an integer >= 100 (e.g. 100000)"),
        ("RUNWATCH_HEAL_INTERVAL_SECONDS", "-1", "an integer >= 0 (e.g. 30)"),
        ("RUNWATCH_DRAIN", "sometimes", "one of process, thread, external"),
        ("RUNWATCH_API_LOG_LEVEL", "verbose", "one of debug, info, warning, error, critical"),
        ("RUNWATCH_API_TOKEN_CACHE_SECONDS", "5s", "a number >= 0 (e.g. 5)"),
        ("RUNWATCH_API_BIND", "8000", "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N (e.g. 0.0.0.0:8000)"),
        ("RUNWATCH_REDIS_URL", "localhost:6379", "a Redis URL (e.g. redis://127.0.0.1:6379/0)"),
        ("RUNWATCH_RETENTION_DAYS", "forever", "a positive integer (e.g. 90)"),
        ("RUNWATCH_RETENTION_DAYS_FAILED", "0", "a positive integer (e.g. 90)"),
        ("RUNWATCH_REDACT_KEYS", "a;b", "comma-separated key names (e.g. ssn,x-api-key)"),
        ("RUNWATCH_REDACT_HOOK", "scrub", "a module:function path (e.g. myapp.redaction:scrub)"),
    ],
)
def test_a_malformed_value_names_the_variable_the_form_and_an_example(name, raw, form):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: raw})
    assert str(caught.value) == f"{name} must be {form}, got {raw!r}"


def test_every_malformed_variable_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RUNWATCH_API_WORKERS": "0", "RUNWATCH_DRAIN_BATCH": "x", "RUNWATCH_EVENT_STREAM": "ok"})
    assert str(caught.value).split("; ") == [
        "RUNWATCH_DRAIN_BATCH must be a positive integer (e.g. 50), got 'x'",
        "RUNWATCH_API_WORKERS must be a positive integer (e.g. 2), got '0'",
    ]


def test_an_error_never_echoes_a_password_or_a_secret():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RUNWATCH_DATABASE_URL": "mysql://app:hunter2@db/prod"})
    assert "hunter2" not in str(caught.value) and "'mysql://app:***@db/prod'" in str(caught.value)
    # APPSEC: a secret variable's value never appears, even when its parser rejects it.
    strict = dataclasses.replace(BY_NAME["RUNWATCH_API_SECRET"], parser=p.integer(minimum=1))
    message = malformed(strict, "s3cret-value")
    assert message == "RUNWATCH_API_SECRET must be a positive integer, got a value that is not shown (secret)"
    assert "s3cret" not in repr(Settings(api_secret="s3cret-value"))


def test_a_long_value_is_clipped_in_the_message():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RUNWATCH_API_WORKERS": "x" * 500})
    assert len(str(caught.value)) < 200


def test_retention_days_for_all_outcomes_then_per_outcome():
    settings = Settings.from_env({"RUNWATCH_RETENTION_DAYS": "30", "RUNWATCH_RETENTION_DAYS_FAILED": "400"})
    assert settings.retention_days == {"blocked": 30, "failed": 400, "partially_succeeded": 30, "succeeded": 30}
    only_failed = Settings.from_env({"RUNWATCH_RETENTION_DAYS_FAILED": "7"})
    assert only_failed.retention_days == {"blocked": 90, "failed": 7, "partially_succeeded": 90, "succeeded": 90}


def test_settings_written_as_variables_read_back_the_same():
    """What the drain child process gets: settings given in code survive the trip through its env."""
    settings = Settings(
        database_url="postgresql+psycopg://u:pw@h/db",
        redis_url="redis://h:6379/2",
        data_dir=Path("/srv/rw"),
        thresholds_file=Path("/etc/rw.toml"),
        queued_stale_seconds=11,
        drain_mode="thread",
        retention_days={"blocked": 1, "failed": 2, "partially_succeeded": 3, "succeeded": 4},
        redact_keys=("ssn", "pin"),
        redact_hook="hooks:scrub",
        api_secret="k",
        api_token_cache_seconds=0.25,
        api_access_log="-",
        api_log_level="warning",
    )
    env = settings.as_env()
    assert Settings.from_env(env) == settings
    assert Settings.from_env(Settings().as_env()) == Settings()
    assert all(name in BY_NAME for name in env)


def test_an_unknown_variable_is_a_warning_naming_the_closest_setting(caplog, monkeypatch):
    monkeypatch.setattr(settings_module, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="runwatch.settings"):
        settings = Settings.from_env({"RUNWATCH_HEAL_INTERVAL_SECOND": "5", "RUNWATCH_TOKEN": "rw_x"})
        Settings.from_env({"RUNWATCH_HEAL_INTERVAL_SECOND": "5"})  # once per process, not per call
        Settings.from_env({"RUNWATCH_ZZZ": "1"})
    assert settings == Settings()
    assert [r.getMessage() for r in caplog.records] == [
        "RUNWATCH_HEAL_INTERVAL_SECOND is not a Runwatch setting and is ignored; "
        "did you mean RUNWATCH_HEAL_INTERVAL_SECONDS?",
        "RUNWATCH_ZZZ is not a Runwatch setting and is ignored; `runwatch config` lists the settings",
    ]


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("RUNWATCH_DATABASE_URI", "RUNWATCH_DATABASE_URL"),
        ("RUNWATCH_API_WORKER", "RUNWATCH_API_WORKERS"),
        ("RUNWATCH_RETENTION_DAYS_FAIL", "RUNWATCH_RETENTION_DAYS_FAILED"),
        ("RUNWATCH_DRAIN_MODE", "RUNWATCH_DRAIN"),
        ("RUNWATCH_SOMETHING_ELSE", None),
    ],
)
def test_closest_known_name(typo, meant):
    assert closest(typo) == meant


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
