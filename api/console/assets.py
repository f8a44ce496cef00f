"""The console's static files, shipped inside the package and served by the app itself.

Files are read once at import; each URL carries a digest of its content (``?v=``), so a
browser may cache an asset for a year and still never runs a stale script after an upgrade.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import falcon

#: Content types of the shipped assets, by file extension.
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
PREFIX = "/console/static/"


def _load() -> dict[str, tuple[bytes, str, str]]:
    files = {}
    for entry in resources.files("runwatch.api.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in TYPES:
            body = entry.read_bytes()
            files[entry.name] = (body, TYPES[suffix], hashlib.sha256(body).hexdigest()[:12])
    return files


FILES = _load()


def url(name: str) -> str:
    return f"{PREFIX}{name}?v={FILES[name][2]}"


class AssetResource:
    """``GET /console/static/{name}``: one of the shipped files, or 404 (no path is ever opened)."""

    auth_required = False

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        found = FILES.get(name)
        if found is None:
            raise falcon.HTTPNotFound()
        body, content_type, _digest = found
        resp.data = body
        resp.content_type = content_type
        resp.set_header("Cache-Control", "public, max-age=31536000, immutable")
        resp.set_header("X-Content-Type-Options", "nosniff")
