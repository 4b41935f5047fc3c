"""Notebook parameters: values checked up front, unknown injected names refused, default folders of the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdstudy.core.params import (
    PAPERMILL_INJECTED_HEADER,
    PARAMETER_CHOICES,
    PARAMETER_RULES,
    ParameterError,
    check_parameter_values,
    injected_parameters,
    load_profile,
    notebook_parameters,
)
from pdstudy.core.paths import repo_root

PARAMS_CELL = "# Parameters (papermill injects overrides after this cell)\nprofile = 'quick'\nrun_dir = ''\nseed = 0\n"
CHECK_CELL = "globals().update(notebook_parameters(globals()))"


def injected(**values) -> str:
    """A cell as papermill's Python translator writes it."""
    return PAPERMILL_INJECTED_HEADER + "\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_the_profiles_pass_their_own_rules(profile):
    check_parameter_values(load_profile(profile))


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("image_size", 64.5, "image_size must be an integer >= 8, got 64.5"),
    ("synth_patients", "forty", "synth_patients must be an integer >= 4, got 'forty'"),
    ("seed", True, "seed must be an integer >= 0, got True"),
    ("lr", 0, "lr must be a number > 0, got 0"),
    ("val_fraction", 1.0, "val_fraction must be a number > 0 and < 1, got 1.0"),
    ("lr", float("nan"), "lr must be a number > 0"),
    ("pretrained", "yes", "pretrained must be True or False, got 'yes'"),
    ("protocol", "loso", "protocol must be one of ['fixed', 'cv'], got 'loso'"),
    ("seeds", [], "seeds must be a non-empty list, each item an integer >= 0, got []"),
    ("seeds", [0, 1.5], "seeds must be a non-empty list"),
    ("kd_chains", ["efficientnet_b7>"], "kd_chains must be a list of chains"),
    ("dca_prevalence", 1.2, "dca_prevalence must be empty"),
    ("run_dir", 3, "run_dir must be a path"),
    ("synth_sites", 0, "synth_sites must be an integer >= 1 and <= 4, got 0"),
    ("synth_sites", 5, "synth_sites must be an integer >= 1 and <= 4, got 5"),
    ("synth_sites", 2.0, "synth_sites must be an integer"),
    ("synth_site_shift", -0.5, "synth_site_shift must be a number >= 0 and <= 2, got -0.5"),
    ("synth_site_shift", 2.5, "synth_site_shift must be a number >= 0 and <= 2, got 2.5"),
    ("synth_site_poor", 0, "synth_site_poor must be a number > 0, got 0"),
    ("synth_site_poor", float("inf"), "synth_site_poor must be a number > 0"),
    ("test_sites", "B", "test_sites must be a list of site codes"),
    ("test_sites", ["St Mary's"], "empty = leave-one-site-out, got [\"St Mary's\"]"),
    ("test_sites", [""], "test_sites must be a list of site codes"),
    ("test_sites", ["A" * 33], "test_sites must be a list of site codes"),
    ("test_sites", [1], "test_sites must be a list of site codes"),
    ("external_baseline", "", "external_baseline must be a non-empty string"),
    ("external_pd_chain", 3, "external_pd_chain must be a non-empty string"),
])
def test_a_bad_value_is_named_with_what_it_must_be(name, value, expected):
    params = {**load_profile("quick"), name: value}
    with pytest.raises(ParameterError) as info:
        check_parameter_values(params)
    assert expected in str(info.value)
    assert str(info.value).count(" must be ") == 1  # only the offending parameter


def test_every_problem_is_reported_at_once_and_good_values_pass():
    with pytest.raises(ParameterError) as info:
        check_parameter_values({"image_size": 64.5, "synth_patients": "forty", "epochs": 2})
    assert "image_size" in str(info.value) and "synth_patients" in str(info.value) and "epochs" not in str(info.value)
    check_parameter_values({"lr": 1, "fov_mm": 384, "dca_prevalence": "", "dca_prevalence_unused": object()})
    check_parameter_values({"dca_prevalence": 0.3, "seeds": (0, 1), "cam_method": "gradcam++"})


def test_site_parameters_accept_their_range():
    check_parameter_values({"synth_sites": 1, "synth_site_shift": 0.0, "synth_site_poor": 0.25})
    check_parameter_values({"synth_sites": 4, "synth_site_shift": 2.0, "synth_site_poor": 3})
    check_parameter_values({"test_sites": []})  # empty: leave-one-site-out
    check_parameter_values({"test_sites": ["B", "site-2", "C_3"]})
    check_parameter_values({"test_sites": ("A",)})
    quick = load_profile("quick")
    assert quick["test_sites"] == [] and quick["synth_sites"] == 2 and quick["synth_site_poor"] == 1.0


def test_crop_larger_than_the_canvas_is_refused():
    with pytest.raises(ParameterError, match=r"crop_size must be <= image_size \(64\), got 80"):
        check_parameter_values({"image_size": 64, "crop_size": 80})


def test_every_choice_parameter_has_a_rule_and_a_profile_value():
    quick = load_profile("quick")
    for name, options in PARAMETER_CHOICES.items():
        assert PARAMETER_RULES[name].kind == "choice" and quick.get(name, options[0]) in options


def test_the_choices_are_the_ones_the_code_accepts():
    """The choice lists in core must be those of the modules that act on them."""
    from pdstudy.learn import CAM_METHODS, CAM_TARGETS, OPTIMIZERS, SCHEDULES, SELECTIONS
    from pdstudy.stats import AUC_CI_METHODS
    from pdstudy.study import PROTOCOLS

    assert PARAMETER_CHOICES["optimizer"] == tuple(OPTIMIZERS)
    assert PARAMETER_CHOICES["schedule"] == tuple(SCHEDULES)
    assert PARAMETER_CHOICES["select"] == tuple(SELECTIONS)
    assert PARAMETER_CHOICES["auc_ci"] == tuple(AUC_CI_METHODS)
    # notebooks 02-08 choose fixed | cv; the Study also runs notebook 09's external protocol
    assert tuple(PROTOCOLS) == (*PARAMETER_CHOICES["protocol"], "external")
    assert PARAMETER_CHOICES["cam_target"] == tuple(CAM_TARGETS)
    assert set(PARAMETER_CHOICES["cam_method"]) == set(CAM_METHODS)


# --------------------------------------------------------------------------- injected names

def test_injected_names_come_from_the_cell_papermill_inserted():
    history = ["", PARAMS_CELL, injected(run_dri="x", seed=1), CHECK_CELL]
    names, declared = injected_parameters(history)
    assert names == ["run_dri", "seed"] and declared == ["profile", "run_dir", "seed"]


@pytest.mark.parametrize("history", [
    ["", PARAMS_CELL, CHECK_CELL],  # nbval / JupyterLab "run all"
    ["", "x = 1", "lr = 'whatever'", PARAMS_CELL, "my_var = 2", CHECK_CELL],  # cells run by hand, in any order
    [CHECK_CELL],
    [],
])
def test_without_papermill_nothing_counts_as_injected(history):
    assert injected_parameters(history) == ([], [])


def test_a_misspelt_injected_name_stops_the_notebook_with_the_valid_names():
    ns = {"In": ["", PARAMS_CELL, injected(run_dri="/x"), CHECK_CELL], "profile": "quick", "run_dir": "/r",
          "seed": 0, "run_dri": "/x"}
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['run_dri'\].*\['profile', 'run_dir', 'seed'\]"):
        notebook_parameters(ns, quiet=True)


def test_underscore_names_and_declared_names_injected_are_fine(tmp_path):
    ns = {"In": ["", PARAMS_CELL, injected(run_dir=str(tmp_path), _hidden=1), CHECK_CELL], "profile": "quick",
          "run_dir": str(tmp_path), "seed": 0}
    assert notebook_parameters(ns, quiet=True) == {"run_dir": str(tmp_path.resolve())}


def test_rerun_in_jupyterlab_with_other_variables_defined(tmp_path):
    """Variables a user defined (even misspelt parameter-like names) are not injected parameters."""
    ns = {"In": ["", "run_dri = 1", "qc = None", PARAMS_CELL, CHECK_CELL], "run_dri": 1, "qc": None,
          "profile": "quick", "run_dir": str(tmp_path), "seed": 0, "_": None, "Out": {}, "get_ipython": print}
    assert notebook_parameters(ns, quiet=True) == {"run_dir": str(tmp_path.resolve())}


def test_a_bad_value_stops_before_paths_are_resolved():
    ns = {"In": [], "image_size": 64.5, "run_dir": ""}
    with pytest.raises(ParameterError, match="image_size must be an integer"):
        notebook_parameters(ns, quiet=True)


# --------------------------------------------------------------------------- default folders

def test_empty_folders_are_the_checkouts_whatever_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = notebook_parameters({"profile": "paper", "run_dir": "", "data_dir": "", "manifest": ""})
    root = repo_root()
    assert out == {"run_dir": str(root / "reports" / "paper"), "data_dir": str(root / "data")}
    printed = capsys.readouterr().out
    assert f"run_dir = {root / 'reports' / 'paper'}" in printed and "default" in printed
    assert notebook_parameters({"run_dir": ""}, quiet=True) == {"run_dir": str(root / "reports" / "quick")}


def test_relative_folders_are_taken_from_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = notebook_parameters({"run_dir": "runs/a", "weights_dir": "w", "readers_csv": ""})
    assert out == {"run_dir": str(tmp_path.resolve() / "runs" / "a"), "weights_dir": str(tmp_path.resolve() / "w")}
    assert "relative to" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # checking writes nothing


def test_no_checkout_means_an_explicit_folder_is_needed(monkeypatch):
    import pdstudy.core.params as params

    def nowhere():
        raise FileNotFoundError("no pdstudy checkout above /site-packages/pdstudy")

    monkeypatch.setattr(params, "repo_root", nowhere)
    with pytest.raises(ParameterError, match="data_dir is empty .* pass data_dir explicitly"):
        notebook_parameters({"data_dir": ""}, quiet=True)
    assert notebook_parameters({"data_dir": "/d"}, quiet=True) == {"data_dir": str(Path("/d").resolve())}
