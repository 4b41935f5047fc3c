"""Study parameters and the quick/paper profiles that set them."""

from __future__ import annotations

import ast
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pdstudy.core.paths import repo_root
from pdstudy.core.vocab import is_site_code

PROFILES = ("quick", "paper")


#: Parameters holding file or folder paths (made absolute before injection).
PATH_PARAMETERS = ("run_dir", "data_dir", "manifest", "readers_csv", "weights_dir")


def load_profile(name: str) -> dict[str, Any]:
    """Parameters of a profile (``quick`` or ``paper``), as notebook parameter names."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {list(PROFILES)}")

    text = resources.files("pdstudy.core").joinpath("profiles", f"{name}.yaml").read_text()
    return yaml.safe_load(text)


#: Notebook parameters a Study reads (all are keys of the profiles).
STUDY_PARAMETERS = (
    "run_dir", "data_dir", "manifest", "image_size", "fov_mm", "workers", "synth_patients", "synth_seed",
    "synth_slices", "synth_size", "synth_clinical_signal", "seeds", "protocol", "cv_folds", "cv_repeats",
    "val_fraction", "split_seed",
    "pretrained", "weights_dir", "stand_ins", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "warmup_epochs", "schedule", "beta", "alpha", "temperature", "kd_convention", "drop_rate", "drop_path_rate",
    "slices_per_patient", "crop_size", "top_k", "select", "volume_depth", "hybrid_depth",
    "synth_sites", "synth_site_shift", "synth_site_poor",
)

# --------------------------------------------------------------------------- checking parameter values

#: Allowed values of the parameters that name a choice: the one list, which the modules acting on them
#: (``learn.train``, ``learn.cam``, ``stats.discrimination``, ``study.protocol``) take from here.
PARAMETER_CHOICES: dict[str, tuple[str, ...]] = {
    "profile": PROFILES,
    "protocol": ("fixed", "cv"),
    "optimizer": ("adamw", "sgd"),
    "schedule": ("batch", "epoch"),
    "select": ("last", "best_val"),
    "kd_convention": ("algorithm1", "eq1"),
    "auc_ci": ("logit", "wald"),
    "cam_method": ("gradcam", "gradcam++", "eigencam"),
    "cam_target": ("predicted", "true"),
}


@dataclass(frozen=True)
class _Rule:
    """What one parameter must be: ``kind`` (int, float, bool, str, path, choice, list, chains, share_or_empty,
    sites), bounds for numbers (``low``/``high``, open when ``*_open``) and list items."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    item: _Rule | None = None

    def expected(self, name: str) -> str:
        if self.kind == "choice":
            return f"one of {list(PARAMETER_CHOICES[name])}"
        if self.kind == "list":
            return f"a non-empty list, each item {self.item.expected(name)}"
        if self.kind == "chains":
            return "a list of chains 'arch>arch' (teacher first), e.g. ['efficientnet_b7>efficientnet_b7']"
        if self.kind == "share_or_empty":
            return "empty (the test set's own prevalence) or a number strictly between 0 and 1"
        if self.kind == "sites":
            return ("a list of site codes (1-32 letters, digits, '-' or '_'), e.g. ['B']; "
                    "empty = leave-one-site-out")
        words = {"int": "an integer", "float": "a number", "bool": "True or False", "str": "a non-empty string",
                 "path": "a path (a string; empty = the default)"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return words + (" " + " and ".join(bounds) if bounds else "")

    def ok(self, name: str, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind in ("path", "str"):
            return isinstance(value, str) and (self.kind == "path" or bool(value.strip()))
        if self.kind == "choice":
            return isinstance(value, str) and value in PARAMETER_CHOICES[name]
        if self.kind == "share_or_empty":
            return value == "" or (_is_number(value) and 0 < float(value) < 1)
        if self.kind == "sites":
            return isinstance(value, list | tuple) and all(is_site_code(v) for v in value)
        if self.kind in ("list", "chains"):
            if not isinstance(value, list | tuple) or not value:
                return False
            if self.kind == "chains":
                return all(isinstance(v, str) and all(p.strip() for p in v.split(">")) for v in value)
            return all(self.item.ok(name, v) for v in value)
        if self.kind == "int" and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
            return False
        if self.kind == "float" and not _is_number(value):
            return False
        x = float(value)
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


_NAT = _Rule("int", low=0)
_POS = _Rule("int", low=1)
_SHARE = _Rule("float", low=0, high=1, high_open=True)

#: Every notebook parameter and what its value must be (``tests/test_notebooks.py`` checks that each
#: notebook's parameters have a rule).
PARAMETER_RULES: dict[str, _Rule] = {
    **dict.fromkeys(PATH_PARAMETERS, _Rule("path")),
    **{name: _Rule("choice") for name in PARAMETER_CHOICES},
    **dict.fromkeys(("seed", "synth_seed", "split_seed"), _NAT),
    "synth_patients": _Rule("int", low=4), "synth_slices": _Rule("int", low=8), "synth_size": _Rule("int", low=32),
    "synth_clinical_signal": _Rule("float", low=0, high=1), "fusion_pd_chain": _Rule("str"),
    "synth_sites": _Rule("int", low=1, high=4), "synth_site_shift": _Rule("float", low=0, high=2),
    "synth_site_poor": _Rule("float", low=0, low_open=True),
    "test_sites": _Rule("sites"), "external_baseline": _Rule("str"), "external_pd_chain": _Rule("str"),
    "image_size": _Rule("int", low=8), "fov_mm": _Rule("float", low=0, low_open=True), "workers": _NAT,
    "seeds": _Rule("list", item=_NAT), "cv_folds": _Rule("int", low=2), "cv_repeats": _POS,
    "val_fraction": _Rule("float", low=0, high=1, low_open=True, high_open=True),
    "pretrained": _Rule("bool"), "stand_ins": _Rule("bool"),
    "epochs": _POS, "batch_size": _POS, "lr": _Rule("float", low=0, low_open=True),
    "weight_decay": _Rule("float", low=0), "warmup_epochs": _Rule("float", low=0),
    "beta": _SHARE, "alpha": _Rule("float", low=0, high=1), "temperature": _Rule("float", low=0, low_open=True),
    "drop_rate": _SHARE, "drop_path_rate": _SHARE, "slices_per_patient": _NAT, "crop_size": _Rule("int", low=8),
    "top_k": _POS, "volume_depth": _POS, "hybrid_depth": _NAT, "baselines": _Rule("list", item=_Rule("str")),
    "kd_chains": _Rule("chains"),
    "pd_chains": _Rule("chains"), "cam_localise": _Rule("str"), "curve_architectures": _Rule("list", item=_Rule("str")),
    "curve_iterations": _POS,
    "dca_prevalence": _Rule("share_or_empty"),
}


class ParameterError(ValueError):
    """One or more parameters have values they cannot have; the message names each and what was expected."""


def check_parameter_values(params: Mapping[str, Any]) -> None:
    """Check notebook parameter values against :data:`PARAMETER_RULES`, all at once, before any work.

    Parameters
    ----------
    params : mapping
        Parameter name -> value, as a notebook or ``pdstudy run`` holds them. Names without a rule are not checked.

    Raises
    ------
    ParameterError
        One line per offending parameter: its name, what it must be, and the value given
        (e.g. ``image_size must be an integer >= 8, got 64.5``).
    """
    problems = [f"{name} must be {rule.expected(name)}, got {params[name]!r}"
                for name, rule in PARAMETER_RULES.items() if name in params and not rule.ok(name, params[name])]
    if "crop_size" in params and "image_size" in params and not problems \
            and int(params["crop_size"]) > int(params["image_size"]):
        problems.append(f"crop_size must be <= image_size ({params['image_size']}), got {params['crop_size']}")
    if problems:
        raise ParameterError("invalid parameter value(s):\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- a notebook's own parameters

#: First line of the cell papermill inserts after a notebook's parameters cell.
PAPERMILL_INJECTED_HEADER = "# Parameters"


def _assigned_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)]


def injected_parameters(history: Sequence[str]) -> tuple[list[str], list[str]]:
    """The names papermill injected and the names the notebook declares, from the kernel's input history.

    papermill runs the notebook's ``parameters`` cell, then the cell it inserts (first line ``# Parameters``),
    then the cell that calls this; so in IPython's ``In`` list the injected cell is the one before last
    and the parameters cell the one before it. Run from JupyterLab or nbval there is no injected cell,
    whatever the user ran before.

    Parameters
    ----------
    history : sequence of str
        The kernel's ``In`` (cell sources in execution order, the current cell last).

    Returns
    -------
    injected, declared : list of str
        Both empty when the previous cell was not inserted by papermill.
    """
    if len(history) < 3 or history[-2].splitlines()[:1] != [PAPERMILL_INJECTED_HEADER]:
        return [], []
    return _assigned_names(history[-2]), _assigned_names(history[-3])


def notebook_parameters(namespace: Mapping[str, Any], *, quiet: bool = False) -> dict[str, Any]:
    """Check a notebook's parameters once, right after its parameters cell, and fill in the default folders.

    1. A name papermill injected that the parameters cell does not declare (``-p run_dri X``) stops the
       notebook with the list of valid names; ``_``-names are ignored.
    2. Every value is checked (:func:`check_parameter_values`).
    3. An empty ``run_dir`` becomes ``<checkout>/reports/<profile>`` and an empty ``data_dir``
       ``<checkout>/data``; relative paths are made absolute against the kernel's working directory
       (papermill's ``--cwd``). The folders used are printed.

    Parameters
    ----------
    namespace : mapping
        The notebook's ``globals()``.
    quiet : bool
        Do not print the folders.

    Returns
    -------
    dict
        The path parameters the namespace holds, resolved (``globals().update(...)`` them in the notebook).

    Raises
    ------
    ParameterError
        Naming the unknown or invalid parameters.
    """
    injected, declared = injected_parameters(list(namespace.get("In") or []))
    unknown = sorted(n for n in set(injected) - set(declared) if not n.startswith("_"))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}: this notebook declares {sorted(declared)} "
                             "(check the spelling of papermill's -p / -f names)")
    check_parameter_values(namespace)
    out: dict[str, Any] = {}
    defaults = {"run_dir": ("reports", str(namespace.get("profile") or "quick")), "data_dir": ("data",)}
    for key in PATH_PARAMETERS:
        value = namespace.get(key)
        if not isinstance(value, str):
            continue
        if not value.strip() and key in defaults:
            try:
                root = repo_root()
            except FileNotFoundError as exc:
                raise ParameterError(f"{key} is empty and its default lies in the pdstudy checkout, which was not "
                                     f"found ({exc}); pass {key} explicitly") from None
            out[key] = str(root.joinpath(*defaults[key]))
            note = f"(default: {'/'.join(defaults[key])} of the checkout)"
        elif value.strip():
            out[key] = str(Path(value).expanduser().resolve())
            note = "" if Path(value).is_absolute() else f"(given as {value!r}, relative to {Path.cwd()})"
        else:
            continue
        if not quiet:
            print(f"{key} = {out[key]} {note}".rstrip())
    return out
