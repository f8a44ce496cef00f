"""`runwatch tokens create|list|revoke`: the secret once, only its hash stored."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from runwatch.cli import main
from runwatch.tokens import authenticate, hash_token


@pytest.fixture
def cli_env(database_url, monkeypatch, engine):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    yield
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE api_tokens RESTART IDENTITY CASCADE"))


def test_create_list_revoke(cli_env, capsys, engine):
    assert main(["tokens", "create", "--name", "grafana", "--tenant", "4", "--tenant", "2"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("rw_") and len(secret) > 40
    assert main(["tokens", "create", "--name", "sre", "--all-tenants"]) == 0
    capsys.readouterr()
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash, tenant_ids FROM api_tokens ORDER BY id")).all()
    assert stored[0] == (hash_token(secret), [2, 4]) and stored[1][1] is None
    assert main(["tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"grafana +viewer +active +tenants 2,4", listing)
    assert re.search(r"sre +viewer +active +all tenants", listing)
    assert secret not in listing
    assert main(["tokens", "revoke", "1"]) == 0 and "revoked" in capsys.readouterr().out
    assert main(["tokens", "list"]) == 0 and re.search(r"grafana +viewer +revoked", capsys.readouterr().out)
    assert main(["tokens", "revoke", "99"]) == 2 and "no API token with id 99" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["tokens", "create", "--name", "x"],
    ["tokens", "create", "--name", "x", "--tenant", "1", "--all-tenants"],
    ["tokens", "create", "--name", "x", "--tenant", "abc"],
])  # fmt: skip
def test_create_needs_exactly_one_scope(cli_env, capsys, engine, argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "usage:" in capsys.readouterr().err  # argparse's usage error, not a crash
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 0


@pytest.mark.parametrize("argv, message", [
    (["tokens", "create", "--name", " ", "--all-tenants"], "non-blank name"),
    (["tokens", "create", "--name", "x", "--tenant", "0"], "positive integers"),
])  # fmt: skip
def test_create_rejects_bad_values(cli_env, capsys, argv, message):
    assert main(argv) == 2 and message in capsys.readouterr().err


def test_a_token_is_a_viewer_unless_created_as_an_operator(cli_env, capsys, engine):
    assert main(["tokens", "create", "--name", "oncall", "--all-tenants", "--role", "operator"]) == 0
    secret = capsys.readouterr().out.strip()
    assert main(["tokens", "create", "--name", "dashboard", "--all-tenants"]) == 0
    with engine.begin() as conn:
        roles = conn.execute(text("SELECT name, role FROM api_tokens ORDER BY id")).all()
        assert roles == [("oncall", "operator"), ("dashboard", "viewer")]
        assert authenticate(conn, secret).is_operator
        # The CHECK holds whatever writes the table.
        with pytest.raises(IntegrityError):
            conn.execute(text("UPDATE api_tokens SET role = 'admin' WHERE name = 'oncall'"))


def test_an_unknown_role_is_a_usage_error(cli_env, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["tokens", "create", "--name", "x", "--all-tenants", "--role", "admin"])
    assert exited.value.code == 2 and "invalid choice: 'admin'" in capsys.readouterr().err


def test_list_as_json_lines_shows_the_role_and_never_the_secret(cli_env, capsys):
    assert main(["tokens", "create", "--name", "oncall", "--tenant", "3", "--role", "operator"]) == 0
    secret = capsys.readouterr().out.strip()
    assert main(["tokens", "create", "--name", "sre", "--all-tenants"]) == 0 and main(["tokens", "revoke", "2"]) == 0
    capsys.readouterr()
    assert main(["tokens", "list", "--format", "json"]) == 0
    out = capsys.readouterr().out
    tokens = [json.loads(line) for line in out.splitlines()]
    keys = ["id", "name", "role", "state", "scope", "tenant_ids", "created_at", "revoked_at"]
    assert [list(t) for t in tokens] == [keys, keys]  # stable keys, in a stable order
    assert (tokens[0]["role"], tokens[0]["state"], tokens[0]["tenant_ids"], tokens[0]["revoked_at"]) == (
        "operator",
        "active",
        [3],
        None,
    )
    assert (tokens[1]["role"], tokens[1]["state"], tokens[1]["tenant_ids"]) == ("viewer", "revoked", None)
    assert tokens[0]["created_at"].endswith("Z") and tokens[1]["revoked_at"].endswith("Z")
    assert secret not in out and "\x1b" not in out


def test_list_table_in_a_pipe_is_plain_text(cli_env, capsys):
    assert main(["tokens", "list"]) == 0 and capsys.readouterr().out == "(no API tokens)\n"
    assert main(["tokens", "create", "--name", "grafana", "--all-tenants", "--role", "operator"]) == 0
    capsys.readouterr()
    assert main(["tokens", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "role", "state", "scope", "created", "revoked"]
    assert "\x1b" not in "".join(lines) and re.search(r"grafana +operator +active +all tenants +\d{4}-", lines[2])
