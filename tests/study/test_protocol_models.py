"""The Study's model parameters of the 3D ResNet and the hybrid (``volume_depth``, ``hybrid_depth``); no training."""

from __future__ import annotations

import pytest

from pdstudy.core.params import STUDY_PARAMETERS, load_profile
from pdstudy.study.jobs import JobSpec, check_job
from pdstudy.study.protocol import MODEL_PARAMETERS, VOLUME_DEPTH_DEFAULT, methods, study_configs


def _params(tmp_path, *, without_model_parameters=False, **extra):
    params = {k: v for k, v in load_profile("quick").items() if k in STUDY_PARAMETERS}
    params.update(run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), manifest="")
    if without_model_parameters:
        for name in MODEL_PARAMETERS:
            params.pop(name, None)
    params.update(extra)
    return params


def test_model_parameters_default_when_absent(tmp_path):
    if set(MODEL_PARAMETERS) <= set(STUDY_PARAMETERS):  # once every profile and notebook declares them
        with pytest.raises(ValueError, match="missing study parameter"):
            study_configs(_params(tmp_path, without_model_parameters=True))
        return
    p, _, settings = study_configs(_params(tmp_path, without_model_parameters=True))
    assert settings.volume_depth == VOLUME_DEPTH_DEFAULT and settings.hybrid_depth is None
    assert not set(MODEL_PARAMETERS) & set(p)


def test_model_parameters_reach_the_settings_and_the_provenance(tmp_path):
    p, _, settings = study_configs(_params(tmp_path, volume_depth=8, hybrid_depth=2))
    assert (settings.volume_depth, settings.hybrid_depth) == (8, 2)
    assert p["volume_depth"] == 8 and p["hybrid_depth"] == 2  # recorded with the study's parameters
    assert study_configs(_params(tmp_path, hybrid_depth=""))[2].hybrid_depth is None  # empty: the row's default


@pytest.mark.parametrize(("name", "value"), [("volume_depth", 0), ("volume_depth", 2.5), ("volume_depth", True),
                                             ("hybrid_depth", -1), ("hybrid_depth", "4")])
def test_bad_model_parameters_are_named(tmp_path, name, value):
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1"):
        study_configs(_params(tmp_path, **{name: value}))


def test_the_new_rows_are_methods_of_a_study_and_jobs(tmp_path):
    ids = [m.id for m in methods("baseline", ["efficientnet_b7_transformer", "resnet50_3d"])]
    assert ids == ["baseline:efficientnet_b7_transformer", "baseline:resnet50_3d"]
    for mid in (*ids, "pd:efficientnet_b7_transformer>efficientnet_b7_transformer"):
        check_job(JobSpec(parameters=_params(tmp_path, volume_depth=8), method=mid, seed=0))
    with pytest.raises(ValueError, match="mixes volume models"):
        methods("kd", ["resnet50_3d>efficientnet_b7"])
