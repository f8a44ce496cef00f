"""The README and docs/ point only at files and anchors that exist (a moved file breaks a test, not a reader)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: [text](target) links, not images' external URLs; the target up to an optional #anchor.
LINK = re.compile(r"\]\(([^)\s]+)\)")
#: `path/like/this.py` spans naming a repository file (a directory, or a name with an extension).
CODE_PATH = re.compile(r"`((?:runwatch|workers|bridge|api|tests|bench|scripts|deploy|docs)/[\w./-]*)`")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower-case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        missing_anchor = file.exists() and anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text())
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert broken == [], f"{doc.name}: links to nothing: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_repository_path_named_exists(doc: Path) -> None:
    missing = sorted({p for p in CODE_PATH.findall(doc.read_text()) if not (ROOT / p.rstrip("/")).exists()})
    assert missing == [], f"{doc.name} names files that are not in the repository: {missing}"
