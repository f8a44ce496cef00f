"""The redaction layer: every shape it masks, what it leaves readable, and how it is extended."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from runwatch import events as ev
from runwatch import redact
from runwatch.errors import ConfigError
from runwatch.redact import MASK, RedactingFilter, Redactor
from runwatch.settings import Settings

R = Redactor()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("boom 0 password=hunter2", "boom 0 password=***"),
        ("db_password: s3cr3t, next", "db_password: ***, next"),
        ("X-Api-Key = abc123; rest", "X-Api-Key = ***; rest"),
        ("SESSION_ID=zzz github_token=ggg", "SESSION_ID=*** github_token=***"),
        ("--client-secret=abc --verbose", "--client-secret=*** --verbose"),
        ("token=abc== next", "token=*** next"),
        ("PRIVATE.KEY: k", "PRIVATE.KEY: ***"),
        ("api key: k1 and refresh-token=k2", "api key: *** and refresh-token=***"),
        ("csrftoken=c1;credentials=c2", "csrftoken=***;credentials=***"),
    ],
)
def test_key_value_shapes(text, expected):
    assert R.text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"api_key": "abc", "user": "bob"}', '{"api_key": "***", "user": "bob"}'),
        ('{"api_key": "ab\\"cd", "n": 1}', '{"api_key": "***", "n": 1}'),
        ("{'token': 'it\\'s', 'n': 1}", "{'token': '***', 'n': 1}"),
        ("{'pwd': 1234, 'n': 1}", "{'pwd': ***, 'n': 1}"),
        ('password = b"s3"', 'password = b"***"'),
        ('password = f"{pw}x"', 'password = f"***"'),
        ('password = """multi\nline"""', 'password = """***"""'),
        ('password="cut off here', 'password="*** off here'),
        ('"{\\"password\\": \\"abc\\"}"', '"{\\"password\\": \\"***\\"}"'),
        ('"Authorization": "Bearer abc"', '"Authorization": "***"'),
        ("KeyError: '\"api_key\": \"a\\\\\"b\" tail'", "KeyError: '\"api_key\": \"***\" tail'"),  # a repr of JSON
        ("run(x, tokens=['a', ['b']], n=1)", "run(x, tokens=[***], n=1)"),
        ('{"session": {"id": "x", "n": {"y": 1}}, "b": 2}', '{"session": {***}, "b": 2}'),
        ("auth=(user, pw) next", "auth=(***) next"),
    ],
)
def test_quoted_shapes(text, expected):
    assert R.text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJ.x.y", "Authorization: Bearer ***"),
        ("proxy-authorization: Basic dXNlcjpwYXNz", "proxy-authorization: Basic ***"),
        ("AUTHORIZATION: Token abc123 more", "AUTHORIZATION: Token *** more"),
        ("got Bearer abc.def-123/+x== from header", "got Bearer *** from header"),
        ("bearer abc", "bearer ***"),
    ],
)
def test_authorization_headers_keep_the_scheme(text, expected):
    assert R.text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:hunter2@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("redis://:p@ss@host/0", "redis://:***@host/0"),
        ("git+https://x-access-token:ghp_1@github.com/o/r", "git+https://x-access-token:***@github.com/o/r"),
        ("https://host/cb?token=abc&a=b", "https://host/cb?token=***&a=b"),
        ("https://host/cb?a=b&api_key=xyz&c=d", "https://host/cb?a=b&api_key=***&c=d"),
        ("see http://example.com:8080/p?a=1&b=2", "see http://example.com:8080/p?a=1&b=2"),
    ],
)
def test_urls(text, expected):
    assert R.text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Cookie: sid=abc; theme=dark", "Cookie: sid=***; theme=***"),
        ("set-cookie: id=a3; Path=/; HttpOnly\nnext: line", "set-cookie: id=***; Path=***; HttpOnly\nnext: line"),
        ("X-Cookie-Jar: a=1; b=2", "X-Cookie-Jar: a=***; b=***"),
        ("cookie: rawvalue rest", "cookie: *** rest"),
        ('raise E(f"Cookie: a={x}; b=2")', 'raise E(f"Cookie: a=***; b=***")'),
    ],
)
def test_cookie_headers_mask_every_pair(text, expected):
    assert R.text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token: X-Api-Key: s1", "token: X-Api-Key: ***"),
        ("password= Cookie: a=s2; b=s3 tail", "password= Cookie: a=***; b=*** tail"),
        ("Cookie: a=s4 Bearer s5", "Cookie: a=*** Bearer ***"),
        ("pwd: abc: def", "pwd: *** def"),
    ],
)
def test_an_empty_value_does_not_swallow_the_next_key(text, expected):
    assert R.text(text) == expected


def test_values_stop_where_the_surrounding_code_resumes():
    line = '    raise RuntimeError(f"boom {i} password=hunter2")'
    assert R.text(line) == '    raise RuntimeError(f"boom {i} password=***")'
    assert R.text("call(token=abc, other=1)") == "call(token=***, other=1)"
    assert R.text("[secret=abc]{auth=x}<pwd=y>") == "[secret=***]{auth=***}<pwd=***>"


@pytest.mark.parametrize(
    "text",
    [
        "ValueError: invalid literal for int() with base 10: 'abc'",
        'File "workers/run.py", line 12, in progress\n    checked = validate_summary({"processed": processed})',
        "if token == expected: return None",
        "while (chunk := read()) and token != last:",
        "ordinary text: x=1, y=2 (see http://example.com:8080/path?q=1)",
        "connection refused by db-1:5432 after 3 attempts",
        "KeyError: 'missing'",
        "Traceback (most recent call last):",
    ],
)
def test_ordinary_text_and_code_stay_as_they_are(text):
    assert R.text(text) == text


def test_masking_is_idempotent():
    text = 'password=a Authorization: Bearer b Cookie: c=d; e=f {"token": "g"} redis://:h@x'
    once = R.text(text)
    assert R.text(once) == once and not any(c in once.replace("Cookie", "") for c in ("=a", "b ", "=d", '"g"', ":h@"))


def test_value_masks_denylisted_keys_whatever_the_type_and_redacts_strings():
    data = {
        "user": "bob",
        "Password": 1234,
        "nested": {"X-Api-Key": ["a", "b"], "note": "token=abc"},
        "items": [{"session_id": {"deep": 1}}, "plain", ("access_token=z", 5)],
        "count": 3,
        None: "x",
    }
    assert R.value(data) == {
        "user": "bob",
        "Password": MASK,
        "nested": {"X-Api-Key": MASK, "note": "token=***"},
        "items": [{"session_id": MASK}, "plain", ("access_token=***", 5)],
        "count": 3,
        None: "x",
    }
    assert data["Password"] == 1234  # a copy, the input is untouched


def test_value_masks_what_nests_too_deep():
    deep: list = ["token=a"]
    for _ in range(redact.MAX_DEPTH + 5):
        deep = [deep]
    out = R.value(deep)
    while isinstance(out, list):
        out = out[0]
    assert out == MASK


@pytest.mark.parametrize("name", ["db_password", "X-Api-Key", "github_token", "SESSION_ID", "Set-Cookie", "my auth"])
def test_key_names_match_as_substrings_in_any_case_and_separator(name):
    assert R.is_secret_key(name) and R.text(f"{name}=v") == f"{name}={MASK}"


@pytest.mark.parametrize("name", ["user", "count", "message", "path", "queue_name"])
def test_ordinary_key_names_do_not_match(name):
    assert not R.is_secret_key(name) and R.text(f"{name}=v") == f"{name}=v"


def test_extra_keys():
    redactor = Redactor(extra_keys=("ssn", "iban-number"))
    assert redactor.text("ssn=123 IBAN.Number: DE00 token=t") == "ssn=*** IBAN.Number: *** token=***"
    assert redactor.value({"customer_ssn": 1}) == {"customer_ssn": MASK}
    with pytest.raises(ConfigError, match="key names"):
        Redactor(extra_keys=("bad$name",))


def test_the_hook_runs_after_the_builtin_rules_on_every_text():
    seen = []

    def hook(s: str) -> str:
        seen.append(s)
        return s.replace("acct-42", "acct-**")

    redactor = Redactor(hook=hook)
    assert redactor.text("acct-42 password=x") == "acct-** password=***"
    assert redactor.value({"a": ["acct-42"]}) == {"a": ["acct-**"]}
    assert seen == ["acct-42 password=***", "acct-42"]


def test_a_failing_hook_masks_the_whole_text_and_logs_no_text(caplog):
    def hook(s: str) -> str:
        raise RuntimeError(f"cannot handle {s}")

    with caplog.at_level(logging.ERROR, logger="runwatch.redact"):
        assert Redactor(hook=hook).text("acct-42") == MASK
        assert Redactor(hook=lambda s: None).text("acct-42") == MASK
    assert len(caplog.records) == 2 and all("acct-42" not in r.getMessage() for r in caplog.records)


@pytest.fixture
def hook_module(monkeypatch):
    module = types.ModuleType("rw_test_hooks")
    module.mask_accounts = lambda s: s.replace("acct-42", "acct-**")
    module.not_callable = 3
    monkeypatch.setitem(sys.modules, "rw_test_hooks", module)
    redact.load_hook.cache_clear()
    yield module
    redact.load_hook.cache_clear()


def test_from_settings_reads_keys_and_hook_and_chains_the_python_hook(hook_module):
    env = {"RUNWATCH_REDACT_KEYS": "ssn, iban", "RUNWATCH_REDACT_HOOK": "rw_test_hooks:mask_accounts"}
    settings = Settings.from_env(env)
    assert settings.redact_keys == ("ssn", "iban") and settings.redact_hook == "rw_test_hooks:mask_accounts"
    redactor = redact.from_settings(settings, hook=lambda s: s.replace("acct-**", "acct-##"))
    assert redactor.text("ssn=1 acct-42") == "ssn=*** acct-##"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("rw_test_hooks.mask_accounts", "not of that form"),
        ("rw_test_hooks:", "not of that form"),
        ("rw_no_such_module_xyz:f", "cannot import 'rw_no_such_module_xyz'"),
        ("rw_test_hooks:missing", "has no 'missing'"),
        ("rw_test_hooks:not_callable", "is not callable"),
    ],
)
def test_a_bad_hook_path_is_a_config_error_naming_the_variable_and_the_form(hook_module, path, problem):
    with pytest.raises(ConfigError) as info:
        redact.from_settings(Settings(redact_hook=path))
    message = str(info.value)
    assert "RUNWATCH_REDACT_HOOK" in message and "package.module:function" in message and problem in message


def test_bad_redact_keys_name_the_variable():
    with pytest.raises(ConfigError, match="RUNWATCH_REDACT_KEYS"):
        Settings.from_env({"RUNWATCH_REDACT_KEYS": "ok,bad$"})


def test_the_process_default_is_replaceable(monkeypatch):
    monkeypatch.setattr(redact, "_default", None)
    monkeypatch.setenv("RUNWATCH_REDACT_KEYS", "ssn")
    assert redact.default().text("ssn=1") == "ssn=***"
    redact.set_default(Redactor(hook=str.upper))
    assert redact.default().text("ssn=1") == "SSN=1"


def test_sanitize_error_uses_the_layer_on_one_capped_line():
    text = ev.sanitize_error('cannot connect: {"api_key":\n "k1"} Authorization: Bearer k2 ' + "x" * 2000)
    assert "k1" not in text and "k2" not in text and "\n" not in text and len(text) == ev.MAX_TEXT_CHARS
    assert ev.sanitize_error("token:\nk3") == "token: ***"  # a key and its value on two lines


def test_redacting_filter_masks_message_arguments_and_traceback():
    try:
        try:
            raise KeyError("api_key=inner1")
        except KeyError as exc:
            raise RuntimeError("password=outer1") from exc
    except RuntimeError as exc:
        error = exc
    exc_info = (type(error), error, error.__traceback__)
    args = ("job", "arg1")
    record = logging.LogRecord("dramatiq.worker", logging.ERROR, __file__, 1, "Failed %s token=%s", args, exc_info)
    assert RedactingFilter(R).filter(record) is True
    formatted = logging.Formatter().format(record)
    assert "Failed job token=***" in formatted and "RuntimeError: password=***" in formatted
    assert "KeyError: 'api_key=***'" in formatted and 'File "tests/unit/test_redact.py"' in formatted
    assert not any(s in formatted for s in ("inner1", "outer1", "arg1", __file__))


def test_redacting_filter_never_raises_into_the_caller():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("only one",), None)
    assert RedactingFilter(R).filter(record) is True
    assert record.getMessage() == "*** (unformattable record)"
