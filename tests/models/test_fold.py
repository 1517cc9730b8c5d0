"""gdn.models.fold: BatchNorm folded into the conv before it gives the same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdn.models import list_models
from gdn.models.fold import fold_bn


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_fold_bn_keeps_outputs(name, bn_model):
    model = bn_model(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_bn(model)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert not folded.training
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(k.endswith("running_mean") for k in folded.state_dict()) == 0
    assert sum(k.endswith("running_mean") for k in model.state_dict()) == n_bn
    for k, v in model.state_dict().items():  # the input model is untouched
        assert torch.equal(v, state[k]), k


def test_fold_bn_refuses_an_unfoldable_batchnorm():
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="not folded"):
        fold_bn(model)
