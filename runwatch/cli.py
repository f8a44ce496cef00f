# PYTHON_ARGCOMPLETE_OK
"""The ``runwatch`` command line.

Core commands live here; commands that need Dramatiq (``demo``, ``drain``) are contributed by
the ``workers`` package through the ``runwatch.commands`` entry point group, so this package
never imports Dramatiq itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points

from . import __version__, output
from .cli_runs import register_runs
from .errors import RunwatchError
from .settings import Settings
from .tokens import ROLES, VIEWER


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import upgrade

    url = Settings.from_env().require_database_url()
    revision = upgrade(url)
    print(f"runwatch: schema is at revision {revision}")
    return 0


#: Columns of ``tokens list`` (JSON: ``tenant_ids`` is null for an all-tenant token).
TOKEN_COLUMNS = tuple(
    output.Column(key, header)
    for key, header in (("id", ""), ("name", ""), ("role", ""), ("state", ""), ("scope", ""),
                        ("tenant_ids", "tenants"), ("created_at", "created"), ("revoked_at", "revoked"))
)  # fmt: skip


def _tokens_create(args: argparse.Namespace) -> int:
    from .db import engine_for
    from .tokens import create_token

    with engine_for(Settings.from_env().require_database_url()).begin() as conn:
        tenants = None if args.all_tenants else args.tenant
        secret, info = create_token(conn, name=args.name, tenant_ids=tenants, role=args.role)
    print(f"token {info.id} ({info.name}, {info.role}, {info.scope}) created; the secret is shown only once:",
          file=sys.stderr)  # fmt: skip
    print(secret)
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    from .db import engine_for
    from .tokens import list_tokens

    with engine_for(Settings.from_env().require_database_url()).connect() as conn:
        infos = list_tokens(conn)
    rows = [
        {
            "id": info.id,
            "name": info.name,
            "role": info.role,
            "state": "revoked" if info.revoked_at else "active",
            "scope": info.scope,
            "tenant_ids": info.tenant_ids,
            "created_at": info.created_at,
            "revoked_at": info.revoked_at,
        }
        for info in infos
    ]
    columns = TOKEN_COLUMNS if args.format == output.JSON else [c for c in TOKEN_COLUMNS if c.key != "tenant_ids"]
    output.emit(rows, columns, args.format, empty="(no API tokens)")
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    from .db import engine_for
    from .tokens import revoke_token

    with engine_for(Settings.from_env().require_database_url()).begin() as conn:
        changed = revoke_token(conn, args.id)
    print(f"token {args.id} {'revoked' if changed else 'was already revoked'} (API caches lookups for up to 5 s)")
    return 0


def _config(args: argparse.Namespace) -> int:
    from .config_doc import markdown_table, settings_report

    print(markdown_table() if args.markdown else settings_report(os.environ))
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser(
        "config",
        help="print every setting with its value, default and source (secrets masked)",
        description="Prints every RUNWATCH_* setting: its value, its default and where the value came from.",
    )
    config.add_argument("--markdown", action="store_true", help="print the README's configuration table instead")
    # NOTE: --markdown documents the code, whatever the environment holds; the report checks it itself.
    config.set_defaults(func=_config, check_settings=False)


def _add_tokens(sub: argparse._SubParsersAction) -> None:
    tokens = sub.add_parser("tokens", help="manage bearer tokens of the monitoring API")
    actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print its secret (once)")
    create.add_argument("--name", required=True, help="who or what uses the token")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant", type=int, action="append", metavar="ID", help="a tenant it may see (repeatable)")
    scope.add_argument("--all-tenants", action="store_true", help="every tenant, and runs without a tenant")
    create.add_argument("--role", choices=ROLES, default=VIEWER,
                        help="viewer (default) reads; operator may also requeue and purge dead letters")  # fmt: skip
    create.set_defaults(func=_tokens_create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    output.add_format(listing)
    listing.set_defaults(func=_tokens_list)
    revoke = actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int, help="the token id shown by `tokens list`")
    revoke.set_defaults(func=_tokens_revoke)


SHELLS = ("bash", "zsh", "fish")


def _completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["runwatch"], shell=args.shell))
    return 0


def _add_completion(sub: argparse._SubParsersAction) -> None:
    completion = sub.add_parser(
        "completion",
        help="print the shell completion script to source",
        description='Prints a completion script; e.g. in ~/.bashrc: eval "$(runwatch completion bash)".',
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=_completion, check_settings=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runwatch", description="Run-lifecycle monitoring for Dramatiq.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"runwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate = sub.add_parser("migrate", help="create or upgrade the ledger schema (idempotent)")
    migrate.set_defaults(func=_migrate)
    register_runs(sub)
    _add_tokens(sub)
    _add_config(sub)
    _add_completion(sub)
    for entry in entry_points(group="runwatch.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # a broken plugin must not take the other commands down
            print(f"runwatch: command {entry.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register(sub)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (``_ARGCOMPLETE`` set) and exit; otherwise do nothing."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        _complete(parser)
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not args.verbose:  # NOTE: Alembic narrates every migration step at INFO, pika every connection
            for noisy in ("alembic", "pika"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        if getattr(args, "check_settings", True):
            # NOTE: every setting, before any command starts: a typo is exit 2 whatever the command reads.
            Settings.from_env()
        code = args.func(args)
        sys.stdout.flush()  # NOTE: a closed pipe shows here, inside the handler below, not at exit
        return code
    except RunwatchError as exc:
        print(f"runwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `runwatch runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # NOTE: or exit flushes into the pipe again
        return 141


if __name__ == "__main__":
    sys.exit(main())
