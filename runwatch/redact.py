"""One redaction layer for every text that leaves a job: exception text, tracebacks, stored arguments.

The default denylist follows Sentry's default data scrubbing (its ``DEFAULT_SCRUBBED_FIELDS``)::

    password passwd pwd secret api_key apikey access_token refresh_token auth authorization
    bearer credentials private_key privatekey session sessionid cookie set-cookie token csrf

A key name matches when, lower-cased and with ``-``, ``.`` and spaces read as ``_``, it
*contains* a denylisted name, as in Sentry: ``db_password``, ``X-Api-Key``, ``github_token``,
``SESSION_ID`` all match (so do ``author`` and ``oauth_state``: over-masking is the safe side).
``RUNWATCH_REDACT_KEYS`` adds names; ``RUNWATCH_REDACT_HOOK`` (and ``workers.install(redact=...)``)
adds a ``str -> str`` function that runs after the built-in rules on every text.

Shapes masked in text (the mask is ``***``):

- ``key=value``, ``key: value``, ``key = value``, ``--key=value``, query strings (``?token=x&a=b``);
- a bracketed value on one line, nested up to one level: ``tokens=['a', 'b']``, ``"session": {...}``;
- quoted keys and values: ``"api_key": "..."``, ``'token': '...'``, escaped quotes inside the value,
  Python string prefixes (``b"..."``, ``f"..."``), triple quotes, a quote left open by a cut;
- ``Authorization: Bearer|Basic|Token|Digest|Negotiate|NTLM xxx`` (the scheme word stays) and a
  bare ``Bearer xxx``;
- URL userinfo: ``scheme://user:PASS@host`` becomes ``scheme://user:***@host``;
- ``Cookie:`` / ``Set-Cookie:`` header values: each of the ``name=value`` pairs that follow.

An unquoted value stops at whitespace, a quote or one of ``,;&()[]{}<>\\`` so that the code
around it stays readable. Not masked: a secret with no key in front of it (a bare positional
argument, ``password is hunter2``), the words after the first one in ``password: two words``, a
bracketed value nested deeper than one level or spanning lines under a denylisted key in *text*
(``value()`` masks whole sub-trees of structured data).
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import tracebacks
from .errors import ConfigError

#: Sentry's default scrubbed field names (https://docs.sentry.io/security-legal-pii/scrubbing/).
DEFAULT_KEYS = (
    "password", "passwd", "pwd", "secret", "api_key", "apikey", "access_token", "refresh_token", "auth",
    "authorization", "bearer", "credentials", "private_key", "privatekey", "session", "sessionid", "cookie",
    "set-cookie", "token", "csrf",
)  # fmt: skip
MASK = "***"
#: Structured values nested deeper than this are masked whole rather than walked.
MAX_DEPTH = 32
#: The expected form of ``RUNWATCH_REDACT_HOOK``.
HOOK_FORM = "package.module:function"

logger = logging.getLogger("runwatch.redact")

_KEY_NAME = re.compile(r"^[A-Za-z0-9_.\- ]+$")
_NORMALIZE = str.maketrans({"-": "_", ".": "_", " ": "_"})
_HOOK_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
# An unquoted value: up to whitespace, a quote, or punctuation that closes the code around it.
_RUN = r"""(?!=)[^\s"'`,;&()\[\]{}<>\\]+"""
_SCHEMES = r"(?:bearer|basic|token|digest|negotiate|ntlm)"
# A bracketed value on one line, nested at most one level: ``tokens=['a', 'b']``, ``auth=(u, p)``.
_BRACKETS = "|".join(
    rf"\{o}(?:[^\{o}\{c}\n]|\{o}[^\{o}\{c}\n]*\{c})*\{c}" for o, c in (("[", "]"), ("{", "}"), ("(", ")"))
)


def normalize_key(name: str) -> str:
    """``X-Api-Key`` -> ``x_api_key``: the form denylisted names are compared in."""
    return name.lower().translate(_NORMALIZE)


def _term(name: str) -> str:
    """A normalized name as a pattern that accepts any of the separators ``_ - . space``."""
    return r"[_\-. ]".join(re.escape(part) for part in name.split("_"))


def _compile(terms: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(_term(t) for t in sorted(terms, key=len, reverse=True))
    key_name = rf"[\w\-.]*?(?:{names})[\w\-.]*"
    key = rf"(?<![\w\-.])(?P<key>{key_name})"
    value = (
        # NOTE: an empty value followed by another key on the line ("token: X-Api-Key: s") is no
        # value: masking the next key's name would leave that key's own value bare.
        rf"(?!{key_name}[ \t]*:(?:\s|$))"
        rf"(?:(?P<bracket>{_BRACKETS})"
        rf"""|(?P<triple>(?P<tp>[rbuf]{{0,2}})(?P<tq>\"\"\"|''')(?:\\.|[\s\S])*?(?P=tq))"""
        rf"""|(?P<quoted>(?P<qp>[rbuf]{{0,2}})(?P<q>["'])(?:\\+.|(?!(?P=q))[^\\\n])*(?P=q))"""
        rf"""|(?P<esc>\\(?P<eq>["'])(?:(?!\\(?P=eq))[^\n])*\\(?P=eq))"""
        rf"|(?P<scheme>{_SCHEMES}[ \t]+){_RUN}"
        rf"""|(?P<open>\\?["']?){_RUN})"""
    )
    # A cookie header's value: name=value pairs, ';'-separated (attributes like HttpOnly end it:
    # what follows them is not a cookie, and may be another shape, "Bearer x", to mask on its own).
    pair = r"""[^\s=;,"']+=[^\s;,"']*"""
    cookie = (
        r"(?<![\w\-.])(?P<ckey>[\w\-.]*?cookie[\w\-.]*)(?P<csep>[ \t]*:[ \t]*)"
        rf"(?P<pairs>{pair}(?:[ \t]*[;,][ \t]*{pair})*)"
    )
    userinfo = r"""(?<![\w+.\-])(?P<url>[a-z][a-z0-9+.\-]*://[^\s:/?#@"'<>]*:)[^\s/?#"'<>]+@"""
    key_value = rf"""{key}(?P<kclose>\\?["'])?(?P<sep>[ \t]*[:=][ \t]*)(?:{value})"""
    bearer = r"(?<![\w\-.])(?P<bearer>bearer[ \t]+)[a-z0-9\-._~+/]+=*"
    return re.compile(f"{cookie}|{userinfo}|{key_value}|{bearer}", re.IGNORECASE)


_COOKIE_PAIR = re.compile(r"(?P<name>[^\s=;,]+)=[^\s;,]*")


def _replace(m: re.Match[str]) -> str:
    if m["ckey"] is not None:
        return m["ckey"] + m["csep"] + _COOKIE_PAIR.sub(lambda p: p["name"] + "=" + MASK, m["pairs"])
    if m["url"] is not None:
        return m["url"] + MASK + "@"
    if m["bearer"] is not None:
        return m["bearer"] + MASK
    head = m["key"] + (m["kclose"] or "") + m["sep"]
    if m["bracket"] is not None:
        return head + m["bracket"][0] + MASK + m["bracket"][-1]
    if m["triple"] is not None:
        return head + m["tp"] + m["tq"] + MASK + m["tq"]
    if m["quoted"] is not None:
        return head + m["qp"] + m["q"] + MASK + m["q"]
    if m["esc"] is not None:
        return head + "\\" + m["eq"] + MASK + "\\" + m["eq"]
    if m["scheme"] is not None:
        return head + m["scheme"] + MASK
    return head + m["open"] + MASK


class Redactor:
    """Masks secrets in text (``text``) and in JSON-like data (``value``)."""

    def __init__(self, *, extra_keys: Iterable[str] = (), hook: Callable[[str], str] | None = None) -> None:
        extra = tuple(extra_keys)
        for name in extra:
            if not isinstance(name, str) or not _KEY_NAME.match(name):
                raise ConfigError(f"redaction key names are letters, digits, '_', '-', '.' or spaces, got {name!r}")
        self.keys = tuple(dict.fromkeys(normalize_key(k) for k in (*DEFAULT_KEYS, *extra)))
        self.hook = hook
        # PERF: a name containing another (sessionid, session) matches nothing more as a substring.
        self._probes = tuple(k for k in self.keys if not any(o != k and o in k for o in self.keys))
        self._pattern = _compile(self._probes)

    def is_secret_key(self, name: str) -> bool:
        """Whether a value stored under ``name`` is masked whole."""
        normalized = normalize_key(name)
        return any(k in normalized for k in self._probes)

    def text(self, s: str) -> str:
        """``s`` with every recognised secret masked, then passed through the hook."""
        s = self._mask(s)
        if self.hook is None:
            return s
        try:
            out = self.hook(s)
        except Exception as exc:
            # APPSEC: fail closed; the hook's error message could quote the text, so log its type only.
            logger.error("redaction hook failed (%s); the whole text is masked", type(exc).__name__)
            return MASK
        if not isinstance(out, str):
            logger.error("redaction hook returned %s, not str; the whole text is masked", type(out).__name__)
            return MASK
        return out

    def value(self, obj: Any, _depth: int = 0) -> Any:
        """A copy of ``obj`` with denylisted keys' values masked (whatever their type) and strings redacted."""
        if isinstance(obj, str):
            return self.text(obj)
        if _depth >= MAX_DEPTH and isinstance(obj, Mapping | list | tuple):
            return MASK
        if isinstance(obj, Mapping):
            return {
                k: MASK if isinstance(k, str) and self.is_secret_key(k) else self.value(v, _depth + 1)
                for k, v in obj.items()
            }
        if isinstance(obj, tuple):
            return tuple(self.value(v, _depth + 1) for v in obj)
        if isinstance(obj, list):
            return [self.value(v, _depth + 1) for v in obj]
        return obj

    def _mask(self, s: str) -> str:
        if '"""' in s or "'''" in s:  # a triple-quoted value may span lines
            return self._pattern.sub(_replace, s) if self._may_hold_secret(s) else s
        # PERF: no other shape spans lines, and most lines of a traceback name no secret: a
        # C-speed substring scan per line spares them the regular expression.
        return "\n".join(
            self._pattern.sub(_replace, line) if self._may_hold_secret(line) else line for line in s.split("\n")
        )

    def _may_hold_secret(self, s: str) -> bool:
        folded = s.lower().replace("-", "_").replace(".", "_").replace(" ", "_")
        return "://" in s or any(k in folded for k in self._probes)


@functools.lru_cache(maxsize=8)
def load_hook(path: str) -> Callable[[str], str]:
    """Import ``package.module:function`` once; a bad path is a ``ConfigError`` naming the variable."""
    problem = None
    if not _HOOK_PATH.match(path):
        problem = "not of that form"
    else:
        module_name, _, attribute = path.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except ImportError as exc:
            problem = f"cannot import {module_name!r} ({type(exc).__name__})"
        except AttributeError:
            problem = f"{module_name!r} has no {attribute!r}"
        else:
            if not callable(target):
                problem = f"{attribute!r} is not callable"
    if problem is not None:
        raise ConfigError(f"RUNWATCH_REDACT_HOOK must name a function as {HOOK_FORM}, got {path!r}: {problem}")
    return target


def _chain(*hooks: Callable[[str], str] | None) -> Callable[[str], str] | None:
    present = [h for h in hooks if h is not None]
    if len(present) < 2:
        return present[0] if present else None

    def chained(s: str) -> str:
        for hook in present:
            s = hook(s)
        return s

    return chained


def from_settings(settings: Any, *, hook: Callable[[str], str] | None = None) -> Redactor:
    """The redactor ``RUNWATCH_REDACT_KEYS`` / ``RUNWATCH_REDACT_HOOK`` describe, plus a Python ``hook``."""
    configured = load_hook(settings.redact_hook) if settings.redact_hook else None
    return Redactor(extra_keys=settings.redact_keys, hook=_chain(configured, hook))


_default: Redactor | None = None


def default() -> Redactor:
    """This process's redactor: the one ``set_default`` installed, else the environment's."""
    global _default
    if _default is None:
        from .settings import Settings

        _default = from_settings(Settings.from_env())
    return _default


def set_default(redactor: Redactor | None) -> None:
    """Make ``redactor`` this process's redactor (``None``: read the environment again on next use)."""
    global _default
    _default = redactor


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message and traceback before any handler formats it.

    Runwatch's own log lines carry no job text; Dramatiq's ("Failed to process message ...")
    print the raw exception. Attach this to your handlers to mask those too::

        handler.addFilter(RedactingFilter())
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:  # APPSEC: fail closed, and never raise into the code that logged
            record.msg, record.args = f"{MASK} (unformattable record)", None
            record.exc_info = record.exc_text = record.stack_info = None
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        redactor = self._redactor or default()
        record.msg, record.args = redactor.text(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = tracebacks.format_exception(record.exc_info[1], redactor).rstrip("\n")
            record.exc_info = None  # NOTE: other handlers would format the raw exception from it
        elif record.exc_text:
            record.exc_text = redactor.text(tracebacks.relative_frames(record.exc_text))
        if record.stack_info:
            record.stack_info = redactor.text(tracebacks.relative_frames(record.stack_info))
