"""Every ``pdstudy.x.y`` the documentation names exists: no stale module path survives a move."""

import importlib
import re

import pytest

from pdstudy.core.paths import repo_root

ROOT = repo_root()
DOCS = [ROOT / "README.md", *sorted((ROOT / "data_manifest").glob("*.md")), *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "reports" / "README.md"]
DOTTED = re.compile(r"`(pdstudy(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
# docs/architecture.md's table of pre-redesign names lists modules that no longer exist, on purpose
HISTORICAL = re.compile(r"^\|\s*`pdstudy\.[a-z_.]+`\s*\|.*->|^\| old")


def resolve(dotted: str) -> object:
    """Import the longest importable module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def references() -> list[tuple[str, int, str]]:
    out = []
    for path in DOCS:
        if not path.exists():
            continue
        in_old_table = False
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("## "):
                in_old_table = "old" in line.lower() and "new" in line.lower()
            if in_old_table or HISTORICAL.search(line):
                continue
            out += [(path.relative_to(ROOT).as_posix(), n, m) for m in DOTTED.findall(line)]
    return out


def test_docs_name_something():
    assert len(references()) > 20, "the README and docs should name the package's functions"


@pytest.mark.parametrize("where,line,dotted", references())
def test_documented_name_exists(where, line, dotted):
    try:
        resolve(dotted)
    except (ModuleNotFoundError, AttributeError) as exc:
        pytest.fail(f"{where}:{line} names {dotted}, which does not exist ({exc})")
