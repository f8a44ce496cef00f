"""``runwatch config``: every setting with its value, default and source, or the README's table.

Both views are printed from ``runwatch.variables.VARIABLES``; the README keeps the Markdown one
between two markers, rewritten by ``scripts/config-table`` and checked by a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import parsers
from .settings import Settings, default_of, unknown_message, unknown_variables
from .variables import VARIABLES, Variable

README_START = "<!-- config-table:start -->"
README_END = "<!-- config-table:end -->"
_HEADER = ("variable", "value", "default", "source")


def _shown(var: Variable, value: Any) -> str:
    """``value`` as it may be printed: secrets masked, URLs without their password."""
    if value is None or value == ():
        return "unset"
    if var.secret:
        return "***"
    text = var.parser.format(value)
    return parsers.mask_url(text) if var.parser.mask is parsers.mask_url else text


def _value(var: Variable, settings: Settings, env: Mapping[str, str]) -> Any:
    value = getattr(settings, var.field)
    if not var.keys:
        return value
    if len(var.keys) == 1:
        return value.get(var.keys[0])
    # NOTE: a row for every key: what it set, or its default (per-key rows say what won).
    return var.parser.parse(env[var.name].strip()) if _is_set(var, env) else default_of(var)


def _is_set(var: Variable, env: Mapping[str, str]) -> bool:
    return bool((env.get(var.name) or "").strip())


def _source(var: Variable, env: Mapping[str, str]) -> str:
    if _is_set(var, env):
        return "env"
    # A per-key row without its own variable takes the value of the row that sets every key.
    broader = [v for v in VARIABLES if v.field == var.field and len(v.keys) > 1 and set(var.keys) <= set(v.keys)]
    if var.keys and len(var.keys) == 1 and any(_is_set(v, env) for v in broader):
        return f"env ({broader[0].name})"
    return "default"


def settings_report(env: Mapping[str, str]) -> str:
    """The aligned table ``runwatch config`` prints; raises ``ConfigError`` on a malformed variable."""
    settings = Settings.from_env(env)
    rows = [_HEADER] + [
        (var.name, _shown(var, _value(var, settings, env)), _shown(var, default_of(var)), _source(var, env))
        for var in VARIABLES
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"warning: {unknown_message(name, guess)}" for name, guess in unknown_variables(env)]
    return "\n".join(lines)


def _markdown_default(var: Variable) -> str:
    if var.default_text is not None:
        return var.default_text
    default = default_of(var)
    return "unset" if default is None else f"`{var.parser.format(default)}`"


def markdown_table() -> str:
    """The README's configuration table (no surrounding blank lines)."""
    lines = ["| variable | default | accepted values | meaning |", "|---|---|---|---|"]
    for var in VARIABLES:
        example = var.example if var.example is not None else var.parser.example
        accepted = f"{var.parser.expected}, e.g. `{example}`" if example else var.parser.expected
        cells = (f"`{var.name}`", _markdown_default(var), accepted, var.meaning)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def table_in(readme: str) -> str | None:
    """The text between the README's markers (stripped), or None when the markers are missing."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        return None
    return readme[start + len(README_START) : end].strip()


def with_table(readme: str, table: str) -> str:
    """``readme`` with ``table`` between its markers; ``ValueError`` when they are missing."""
    if table_in(readme) is None:
        raise ValueError(f"the README has no {README_START} ... {README_END} markers")
    head, _, rest = readme.partition(README_START)
    _, _, tail = rest.partition(README_END)
    return f"{head}{README_START}\n{table}\n{README_END}{tail}"


def rewrite_readme(path: Path) -> bool:
    """Put the current table into the README at ``path``; True if it changed."""
    before = path.read_text()
    after = with_table(before, markdown_table())
    if after != before:
        path.write_text(after)
    return after != before
