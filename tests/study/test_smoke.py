"""`make paper-smoke`'s pieces: weights files written in the layouts users download, and the overrides."""

from __future__ import annotations

import pytest
import torch

from pdstudy.core.params import check_parameter_values, load_profile
from pdstudy.learn.models import build_model, local_weights_file
from pdstudy.study.smoke import PAPER_SMOKE_OVERRIDES, SMOKE_ARCHITECTURES, write_local_weights


def test_the_smoke_shrinks_work_not_code_paths():
    paper = load_profile("paper")
    params = {**paper, **PAPER_SMOKE_OVERRIDES}
    check_parameter_values(params)
    assert params["crop_size"] == 224 and params["image_size"] == 256 and params["pretrained"] is True
    assert params["stand_ins"] is False and set(SMOKE_ARCHITECTURES) <= set(paper["baselines"])
    assert set(PAPER_SMOKE_OVERRIDES) <= set(paper), "every override is a profile parameter"


@pytest.mark.parametrize("name", ["test_resnet", "test_resnet3d"])
def test_written_weights_are_found_and_loaded(tmp_path, name):
    (path,) = write_local_weights(tmp_path, [name])
    assert local_weights_file(tmp_path, name) == path
    if path.suffix == ".pth":  # MedicalNet's layout: a state_dict wrapper, DataParallel's module. prefixes
        saved = torch.load(path, map_location="cpu")["state_dict"]
        assert saved and all(k.startswith("module.") for k in saved)
    else:
        from safetensors.torch import load_file

        saved = load_file(str(path))
    model = build_model(name, weights_path=path)
    loaded = model.state_dict()
    shared = [k for k in saved if k.removeprefix("module.") in loaded
              and saved[k].shape == loaded[k.removeprefix("module.")].shape]
    assert len(shared) > 10
    assert all(torch.equal(saved[k], loaded[k.removeprefix("module.")]) for k in shared)
    assert write_local_weights(tmp_path, [name]) == [path]  # kept, not rewritten
