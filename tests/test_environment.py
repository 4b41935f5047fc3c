"""pyproject.toml ranges, requirements.lock pins and environment.yml describe one environment."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement

from pdstudy.core.paths import repo_root

REPO = repo_root()

ROOT = REPO
PLATFORM = "Linux x86_64"


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


def _conda_env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _conda_pip() -> list[str]:
    env = _conda_env()
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _conda_covers(pip_lines: list[str]) -> tuple[dict[str, str], set[str], list[str]]:
    """What a conda pip section installs: explicit pins, lock files it reads (-r), editable installs (-e)."""
    pins: dict[str, str] = {}
    locks: set[str] = set()
    editables: list[str] = []
    for item in pip_lines:
        item = item.strip()
        option = re.match(r"^(-r|--requirement|-e|--editable)[\s=]+(.+)$", item)
        if option and option.group(1) in ("-r", "--requirement"):
            # conda writes the pip section to a file in environment.yml's folder and runs pip there
            target = (ROOT / option.group(2).removeprefix("file:")).resolve()
            locks.add(target.name if target.parent == ROOT.resolve() else str(target))
        elif option:
            editables.append(option.group(2))
        elif "==" in item:
            name, version = item.split("==")
            pins[_norm(name)] = version
    return pins, locks, editables


def test_every_direct_dependency_is_locked_within_its_range():
    lock = _lock()
    for req in _direct():
        assert _norm(req.name) in lock, f"{req.name} missing from requirements.lock"
        assert req.specifier.contains(lock[_norm(req.name)], prereleases=True), (
            f"{req.name}=={lock[_norm(req.name)]} (lock) is outside {req.specifier} (pyproject.toml)"
        )


def test_environment_yml_installs_the_whole_lock_and_the_project():
    pins, locks, editables = _conda_covers(_conda_pip())
    lock = _lock()
    covered = set(pins) | (set(lock) if "requirements.lock" in locks else set())
    assert set(lock) <= covered, (
        f"environment.yml installs only part of requirements.lock (missing {sorted(set(lock) - covered)[:10]} ...); "
        "its pip section must read -r requirements.lock"
    )
    assert locks == {"requirements.lock"}, f"environment.yml's pip section must read -r requirements.lock, got {locks}"
    for name, version in pins.items():
        assert lock.get(name) == version, f"{name}: environment.yml {version} != requirements.lock {lock.get(name)}"
    assert editables == [".[test]"], f"environment.yml must install the project with -e .[test], got {editables}"
    py = [d for d in _conda_env()["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert py == ["python=3.11"]


def test_the_lock_holds_everything_the_project_pulls_in():
    """Walk the installed metadata from pdstudy[test]'s direct dependencies: every package reached is pinned.

    A package added to pyproject.toml with a pin for itself but not for what it pulls in fails here.
    """
    lock = _lock()
    todo = [(req, frozenset(req.extras)) for req in _direct()]
    seen: set[str] = set()
    missing: set[str] = set()
    while todo:
        req, extras = todo.pop()
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in lock:
            missing.add(name)
            continue
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            pytest.skip(f"{req.name} is not installed here; run make env")
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((sub, frozenset(sub.extras)))
    assert not missing, f"pulled in but not pinned in requirements.lock: {sorted(missing)}"


def test_ipywidgets_is_a_dependency_so_tqdm_shows_widgets_in_jupyterlab():
    names = {_norm(r.name) for r in _direct()}
    assert "ipywidgets" in names and "ipywidgets" in _lock()


def test_the_platform_of_the_lock_is_stated():
    lock_header = "\n".join(line for line in (ROOT / "requirements.lock").read_text().splitlines()
                            if line.startswith("#"))
    yml_header = "\n".join(line for line in (ROOT / "environment.yml").read_text().splitlines()
                           if line.startswith("#"))
    readme = (ROOT / "README.md").read_text()
    repro = readme.split("## Reproducibility", 1)[1].split("\n## ", 1)[0]
    for where, text in (("requirements.lock", lock_header), ("environment.yml", yml_header),
                        ("README's Reproducibility section", repro)):
        assert PLATFORM in text and "CUDA" in text, f"{where} does not say the lock serves {PLATFORM} (CUDA wheels)"
    assert any(name.startswith("nvidia-") for name in _lock()), "the lock no longer pins CUDA wheels: update the text"


def test_installed_versions_match_the_lock():
    lock = _lock()
    for req in _direct():
        assert metadata.version(req.name) == lock[_norm(req.name)], f"{req.name} installed != lock; run make env"


def test_readme_names_the_kernel_as_jupyterlab_shows_it():
    kernelspec = pytest.importorskip("jupyter_client.kernelspec")
    name = kernelspec.KernelSpecManager().get_kernel_spec("python3").display_name
    readme = (ROOT / "README.md").read_text()
    assert f'kernel "{name}"' in readme, f"README should name the kernel {name!r}, as JupyterLab's launcher shows it"
