"""Shared test helpers."""

import pytest
import torch
from torch import nn

from gdn.models import create_model


def _model_with_bn_statistics(name: str) -> nn.Module:
    """A tiny model in eval mode whose BatchNorms have non-trivial statistics and affine
    parameters, so that folding or exporting them must get them right."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):  # 2D and 3D (ECO)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def bn_model():
    """`bn_model(name)`: see `_model_with_bn_statistics`."""
    return _model_with_bn_statistics
