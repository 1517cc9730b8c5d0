"""Shared test helpers."""

from pathlib import Path

import pytest
import torch
from media import FOOTAGE
from torch import nn

from gdn.models import create_model


def _model_with_bn_statistics(name: str) -> nn.Module:
    """A tiny model in eval mode whose BatchNorms have non-trivial statistics and affine
    parameters, so that folding or exporting them must get them right."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def bn_model():
    """`bn_model(name)`: see `_model_with_bn_statistics`."""
    return _model_with_bn_statistics


@pytest.fixture(scope="session")
def footage_folder(tmp_path_factory) -> Path:
    """A folder dataset of real footage (`gdn.data.footage`, sources in tests/fixtures/footage):
    6 classes x 3 clips of 8 frames at 32x40, `ROOT/<class>/`, every third clip a JPEG folder."""
    from gdn.data.footage import write_camera_folder

    root = tmp_path_factory.mktemp("footage")
    write_camera_folder(sorted(FOOTAGE.glob("*.mp4")), root, per_class=3, frames=8, height=32, width=40,
                        frame_folder_every=3, short_side=64)
    return root


def _footage_config(root: Path, out: Path, **train):
    from gdn.config import Config

    return Config.from_dict({
        "model": {"name": "gdn_tiny"},
        "data": {"dataset": "folder", "root": str(root), "frames": 4, "size": 32, "workers": 0},
        "train": {"epochs": 1, "batch_size": 4, **train}, "out": str(out), "device": "cpu",
    })


@pytest.fixture(scope="session")
def footage_config():
    """`footage_config(root, out, **train)`: gdn_tiny on `footage_folder`, 4 frames at 32 px,
    one epoch of batch 4, on the CPU without loader workers; `train` overrides train keys."""
    return _footage_config


@pytest.fixture(scope="session")
def footage_checkpoint(footage_folder, tmp_path_factory) -> Path:
    """`last.pt` of one epoch of gdn_tiny on `footage_folder` (the scratch recipe)."""
    from gdn.engine.train import train

    return Path(train(_footage_config(footage_folder, tmp_path_factory.mktemp("footage_run")))["last"])
