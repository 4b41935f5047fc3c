"""Notebook conventions: one parameters cell whose defaults are the quick profile, no stored outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from pdstudy.core.params import load_profile
from pdstudy.study.notebooks import declared_parameters, parse_overrides, select_notebooks

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
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
            assert eval(declared[key]).startswith("../"), "defaults are relative to notebooks/"


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
