"""pyproject.toml ranges, requirements.lock pins and environment.yml describe one environment."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import REPO
from packaging.requirements import Requirement

ROOT = REPO


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def _direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    return [Requirement(d) for d in deps]


def _conda_pip() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    out = {}
    for item in pip:
        if "==" in item:
            name, version = item.split("==")
            out[_norm(name)] = version
    return out


def test_every_direct_dependency_is_locked_within_its_range():
    lock = _lock()
    for req in _direct():
        assert _norm(req.name) in lock, f"{req.name} missing from requirements.lock"
        assert req.specifier.contains(lock[_norm(req.name)], prereleases=True), (
            f"{req.name}=={lock[_norm(req.name)]} (lock) is outside {req.specifier} (pyproject.toml)"
        )


def test_environment_yml_pins_the_locked_versions():
    lock, conda = _lock(), _conda_pip()
    direct = {_norm(r.name) for r in _direct()}
    assert set(conda) == direct, f"environment.yml differs: extra {set(conda) - direct}, missing {direct - set(conda)}"
    for name, version in conda.items():
        assert lock[name] == version, f"{name}: environment.yml {version} != requirements.lock {lock[name]}"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    py = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert py == ["python=3.11"]


def test_installed_versions_match_the_lock():
    from importlib import metadata

    lock = _lock()
    for req in _direct():
        assert metadata.version(req.name) == lock[_norm(req.name)], f"{req.name} installed != lock; run make env"
