"""Notebook conventions: one parameters cell whose defaults are the quick profile, no stored outputs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pdstudy.core.params import PARAMETER_RULES, load_profile
from pdstudy.core.paths import repo_root
from pdstudy.study.notebooks import declared_parameters, parse_overrides, select_notebooks

REPO = repo_root()

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RUN_KEYS = {"run_dir", "data_dir", "manifest"}  # injected by the runner, not by the profile


def test_notebooks_exist():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert "01" in names
    assert names == sorted(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_quick_defaults(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    declared = declared_parameters(path)
    assert "run_dir" in declared
    quick = load_profile("quick")
    for key, default in declared.items():
        if key in RUN_KEYS:
            continue
        assert key in quick, f"{path.name}: parameter {key!r} has no value in profiles/quick.yaml"
        assert eval(default) == quick[key], f"{path.name}: default {key}={default} != quick profile {quick[key]!r}"
    for key in ("run_dir", "data_dir"):
        if key in declared:
            assert eval(declared[key]) == "", f"{path.name}: {key} defaults to '' (the checkout's folder, any cwd)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_checked_in_the_cell_right_after_the_parameters_cell(path):
    """The check reads the cell papermill inserts after the parameters cell, so it must come next."""
    cells = nbformat.read(path, as_version=4).cells
    index = next(i for i, c in enumerate(cells) if _is_parameters(c))
    assert "globals().update(notebook_parameters(globals()))" in cells[index + 1].source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_parameter_has_a_value_rule(path):
    missing = sorted(set(declared_parameters(path)) - set(PARAMETER_RULES))
    assert not missing, f"{path.name}: no rule in pdstudy.core.params.PARAMETER_RULES for {missing}"


def test_profiles_share_keys():
    assert set(load_profile("quick")) == set(load_profile("paper"))
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("fast")


def test_select_and_overrides():
    folder = NOTEBOOKS[0].parent
    assert [p.name[:2] for p in select_notebooks(folder, ["1"])] == ["01"]
    with pytest.raises(ValueError, match="no notebook numbered"):
        select_notebooks(folder, ["97"])
    assert parse_overrides(["a=3", "b=true", "c=x", "d=0.5"]) == {"a": 3, "b": True, "c": "x", "d": 0.5}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["novalue"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_assignment_in_the_parameters_cell_is_seen_by_papermill(path):
    """papermill drops a line it cannot parse (e.g. a second '=' in a comment): nothing may be lost."""
    import ast

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    missed = assigned - set(declared_parameters(path))
    assert not missed, f"{path.name}: papermill does not see {missed}"


# --------------------------------------------------------------------------- notebooks only call the package

MAX_CELL_LINES = 10  # a code cell: at most this many counted lines
MAX_CHECK_CELL_LINES = 15  # a cell containing `assert` (the checks cell)
_DEF_OR_CLASS = re.compile(r"^\s*(?:async\s+def|def|class)\s")
_IMPORT = re.compile(r"^\s*(?:import|from)\s")


def _is_parameters(cell) -> bool:
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def _parse(source: str) -> ast.Module | None:
    """The cell as Python, IPython magics and shell escapes blanked (line numbers kept); None if unparsable."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def counted_lines(source: str) -> list[str]:
    """Lines of a code cell that count against the limit: not blank, not a comment, not part of an import."""
    lines = source.splitlines()
    tree = _parse(source)
    if tree is None:
        imports = {i for i, line in enumerate(lines, 1) if _IMPORT.match(line)}
    else:
        imports = {i for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                   for i in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
    return [line for i, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#") and i not in imports]


def defines_function_or_class(source: str) -> bool:
    tree = _parse(source)
    if tree is None:
        return any(_DEF_OR_CLASS.match(line) for line in source.splitlines())
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for node in ast.walk(tree))


def cell_problems(path: Path) -> list[str]:
    """Every code cell (but the parameters cell) over its line limit or defining a function or class."""
    problems = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code" or _is_parameters(cell):
            continue
        n = len(counted_lines(cell.source))
        limit = MAX_CHECK_CELL_LINES if re.search(r"\bassert\b", cell.source) else MAX_CELL_LINES
        if n > limit:
            problems.append(f"{path.name} cell {index}: {n} lines (max {limit}; blank, comment and import lines "
                            "not counted)")
        if defines_function_or_class(cell.source):
            problems.append(f"{path.name} cell {index}: defines a function or class (move it into the package)")
    return problems


def test_counted_lines():
    source = ("# a comment\nimport pandas as pd\nfrom pdstudy.core import (\n    run_dir,\n)\n\n"
              "x = f(\n    1,\n)  # trailing\n%matplotlib inline\n")
    assert counted_lines(source) == ["x = f(", "    1,", ")  # trailing", "%matplotlib inline"]
    assert defines_function_or_class("def f():\n    pass\n")
    assert defines_function_or_class("if True:\n    class A:\n        pass\n")
    assert defines_function_or_class("%time x = 1\ndef f(:\n")  # unparsable: line check
    assert not defines_function_or_class("x = 'def f(): pass'\nundefined = 1\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_only_call_the_package(path):
    """Code cells hold at most 10 lines (15 with asserts), no def/class; the parameters cell is exempt."""
    problems = cell_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    tagged = [i for i, c in enumerate(cells) if _is_parameters(c)]
    assert len(tagged) == 1, f"{path.name}: cells {tagged} are tagged 'parameters'; exactly one must be"
    assert cells[tagged[0]].cell_type == "code", f"{path.name}: the parameters cell must be a code cell"


#: Notebooks that ruff must pass (ruff lints notebooks natively; `make lint` runs it on notebooks/ too).
LINTED = NOTEBOOKS


@pytest.mark.parametrize("path", LINTED, ids=lambda p: p.name)
def test_notebook_passes_ruff(path):
    pytest.importorskip("ruff")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           str(path)], capture_output=True, text=True, cwd=path.parents[1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
