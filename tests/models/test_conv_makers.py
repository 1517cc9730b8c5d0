"""The conv-maker seam: a temporal conv defined here, in one class, runs through every part of
the project (registry, training, BatchNorm folding, ONNX export, 2D initialisation) without a
line of src/ knowing it."""

import pytest
import torch
from torch import nn

import gdn
from gdn.export import export_onnx
from gdn.models import CONV_MAKERS, TSM, TemporalShift, VideoResNet
from gdn.models.fold import fold_bn, fold_into_conv
from gdn.models.layers import FrameConv2d
from gdn.models.weights import load_weights

torch.set_num_threads(1)

# (in_planes) of the eight maker-built convs of a tiny ResNet (one basic block per stage, both
# 3x3 convs from the maker): layer1 16, 16; layer2 16, 32; layer3 32, 64; layer4 64, 128.
TINY_MAKER_INPUTS = (16, 16, 16, 32, 32, 64, 64, 128)


class DepthwiseTemporalConv(nn.Module):
    """A new temporal conv: a depthwise 3x1x1 conv over time (one filter per channel, as in
    channel-separated networks), then a per-frame 3x3 conv carrying the stride."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1):
        super().__init__()
        self.temporal = nn.Conv3d(in_planes, in_planes, (3, 1, 1), padding=(1, 0, 0), groups=in_planes, bias=False)
        self.spatial = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        nt, c, h, w = x.shape
        clips = x.view(nt // num_frames, num_frames, c, h, w).transpose(1, 2)  # (N, C, T, H, W)
        x = self.temporal(clips).transpose(1, 2).reshape(nt, c, h, w)  # (N*T, C, H, W)
        return self.spatial(x)

    def init_from_2d(self, weight: torch.Tensor) -> list[str]:
        """The 2D kernel goes to the spatial conv and the temporal conv starts as the identity
        (centre tap 1): the module starts as the 2D conv it came from."""
        self.spatial.weight.data.copy_(weight)
        self.temporal.weight.data.zero_()
        self.temporal.weight.data[:, :, 1] = 1.0
        return []

    def fold_bn(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        fold_into_conv(self.spatial, scale, shift)


def _with_bn_statistics(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.num_features, generator=g)
            m.bias.data = 0.4 * torch.rand(m.num_features, generator=g) - 0.2
            m.running_mean = 0.6 * torch.rand(m.num_features, generator=g) - 0.3
            m.running_var = 0.5 + 1.5 * torch.rand(m.num_features, generator=g)
    return model.eval()


def test_a_new_conv_builds_every_family_member_and_trains():
    torch.manual_seed(0)
    tsn = gdn.create_model("tsn_tiny", num_classes=4)
    model = gdn.create_model("tsn_tiny", num_classes=4, dropout=0.0, conv_makers=[DepthwiseTemporalConv] * 4)
    convs = [m for m in model.modules() if isinstance(m, DepthwiseTemporalConv)]
    assert [c.temporal.in_channels for c in convs] == list(TINY_MAKER_INPUTS)
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n_params(model) == n_params(tsn) + 3 * sum(TINY_MAKER_INPUTS)  # plus one 3-tap filter per input channel
    assert set(model.state_dict()) - set(tsn.state_dict()) == {
        f"layer{i}.0.conv{j}.{part}.weight" for i in range(1, 5) for j in (1, 2) for part in ("temporal", "spatial")}

    # an entrypoint's own makers give way to explicit ones, names and callables mixed per stage
    mixed = gdn.create_model("gdn_tiny", conv_makers=[DepthwiseTemporalConv, "gdm", "2d", CONV_MAKERS["3d"]])
    assert [type(s[0].conv2).__name__ for s in mixed.stages()] == [
        "DepthwiseTemporalConv", "GDM", "FrameConv2d", "VideoConv3d"]

    clips = torch.randn(4, 3, 4, 16, 16)
    labels = torch.tensor([0, 1, 2, 3])
    temporal_before = convs[3].temporal.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert not torch.equal(convs[3].temporal.weight, temporal_before)  # time is learnt too


def test_a_new_conv_folds_batchnorm_and_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _with_bn_statistics(gdn.create_model("tsn_tiny", num_classes=5, conv_makers=[DepthwiseTemporalConv] * 4))
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(c.spatial.bias is not None for c in folded.modules() if isinstance(c, DepthwiseTemporalConv))
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(clips)
        torch.testing.assert_close(folded(clips), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    # export_onnx folds, exports and raises unless onnxruntime gives PyTorch's logits (batch 1 and 3)
    path = export_onnx(model, tmp_path / "new.onnx", frames=4, size=32, tolerance=1e-4)
    assert path.stat().st_size > 0


def test_a_new_conv_initialises_from_2d_weights(tmp_path):
    torch.manual_seed(0)
    tsn = _with_bn_statistics(gdn.create_model("tsn_tiny", num_classes=5))
    path = tmp_path / "tsn.pth"
    torch.save(tsn.state_dict(), path)  # a 2D ResNet under torchvision's names

    model = gdn.create_model("tsn_tiny", num_classes=5, conv_makers=[DepthwiseTemporalConv] * 4, pretrained=str(path))
    source = tsn.state_dict()
    for name, conv in model.named_modules():
        if isinstance(conv, DepthwiseTemporalConv):
            assert torch.equal(conv.spatial.weight, source[f"{name}.weight"]), name
            assert conv.temporal.weight[:, :, 1].eq(1).all() and conv.temporal.weight[:, :, [0, 2]].eq(0).all()
    for key in ("conv1.weight", "layer2.0.bn1.running_var", "layer3.0.downsample.0.weight", "fc.weight"):
        assert torch.equal(model.state_dict()[key], source[key]), key
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():  # starts as the 2D network it came from, frame by frame
        torch.testing.assert_close(model.eval()(clips), tsn(clips), rtol=1e-5, atol=1e-5)

    report = load_weights(gdn.create_model("tsn_tiny", num_classes=5, conv_makers=[DepthwiseTemporalConv] * 4),
                          path, format=None)
    assert report.format == "torchvision"
    assert report.random_init == [] and report.missing == [] and report.unexpected == []
    assert "layer4.0.conv2.temporal.weight" in report.loaded and "layer4.0.conv2.spatial.weight" in report.loaded


def test_fold_bn_names_the_method_a_conv_must_implement():
    class NoFold(nn.Module):
        """A conv maker's module with no fold_bn."""

        def __init__(self, in_planes, out_planes, stride):
            super().__init__()
            self.conv = FrameConv2d(in_planes, out_planes, stride)

        def forward(self, x, num_frames):
            return self.conv(x, num_frames)

    model = gdn.create_model("tsn_tiny", conv_makers=[NoFold, "2d", "2d", "2d"])
    with pytest.raises(TypeError, match=r"cannot fold bn1 into conv1 \(NoFold\): give NoFold a method fold_bn\(scale, shift\)"):
        fold_bn(model)


def test_a_maker_carries_the_residual_shift():
    class Shifted:
        """Per-frame convs and a quarter of the channels shifted each way on the residual branch."""

        def __call__(self, in_planes, out_planes, stride):
            return FrameConv2d(in_planes, out_planes, stride)

        def residual_shift(self, index):
            return TemporalShift(4)

    model = gdn.create_model("tsn_tiny", conv_makers=[Shifted(), "2d", TSM(fold_div=2), "2d"])
    shifts = [s[0].shift for s in model.stages()]
    assert [type(s).__name__ for s in shifts] == ["TemporalShift", "NoneType", "TemporalShift", "NoneType"]
    assert (shifts[0].fold_div, shifts[2].fold_div) == (4, 2)
    assert gdn.create_model("tsm_tiny").layer4[0].shift.fold_div == 8


def test_maker_names_resolve_through_one_dict():
    assert set(CONV_MAKERS) == {"2d", "gdm", "gst", "3d", "2plus1d", "shift"}
    kw = dict(block="basic", layers=(1, 1), widths=(8, 16), stem_width=8)
    with pytest.raises(ValueError, match="unknown conv maker 'gdn'; choose one of 2d, gdm"):
        VideoResNet(conv_makers="gdn", **kw)
    with pytest.raises(TypeError, match="a conv maker is a name or a callable"):
        VideoResNet(conv_makers=[3, "2d"], **kw)
    with pytest.raises(ValueError, match="2 stages, 3 makers"):
        VideoResNet(conv_makers=["2d"] * 3, **kw)
