"""The model family: shapes, gradients, exact weight counts and the equivalences of section 2."""

import pytest
import torch
import torch.nn.functional as F

import gdn
from gdn.models.layers import GDM, TemporalShift, VideoConv3d, split_channels
from gdn.models.profile import TABLE1_PAPER, block_weight_factors, count_params, profile_model

torch.set_num_threads(1)


@pytest.mark.parametrize("name", gdn.list_models())
def test_every_model_forward_backward(name):
    torch.manual_seed(0)
    model = gdn.create_model(name, num_classes=7)
    frames = getattr(model, "frame_multiple", 3)  # I3D takes multiples of its temporal strides only
    x = torch.randn(2, 3, frames, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []


@pytest.mark.parametrize("frames", [1, 5])
@pytest.mark.parametrize("size", [33, 64])
def test_any_frame_count_and_size(frames, size):
    model = gdn.create_model("gdn_tiny", num_classes=3).eval()
    assert model(torch.randn(1, 3, frames, size, size)).shape == (1, 3)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="gdn_r50"):
        gdn.create_model("gdn_r5O")


def test_registry_names():
    required = {"gdn_r18", "gdn_r50", "gdn_r101", "tsn_r50", "tsm_r50", "r3d_r50", "r2plus1d_r50",
                "gst_r50", "s3d_r50", "i3d_r50", "i3d_nl_r50", "eco_lite", "eco_full", "gdn_tiny", "tsn_tiny",
                "tsm_tiny", "r3d_tiny", "i3d_tiny", "i3d_nl_tiny", "eco_lite_tiny", "eco_full_tiny"}
    assert required <= set(gdn.list_models())
    assert gdn.list_models("gdn_*") == sorted(n for n in gdn.list_models() if n.startswith("gdn_"))


def test_torchvision_parameter_names():
    keys = set(gdn.create_model("gdn_r50").state_dict())
    for k in ["conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer3.2.conv1.weight",
              "layer3.2.conv2.st.weight", "layer3.2.conv2.s.weight", "layer3.2.conv2.t.weight",
              "layer4.2.bn3.weight", "fc.weight", "fc.bias"]:
        assert k in keys
    tsn = set(gdn.create_model("tsn_r50").state_dict())
    assert "layer3.2.conv2.weight" in tsn and len(tsn) == 320  # torchvision resnet50 has 320 entries


@pytest.mark.parametrize(
    "cin,cout,r_st,r_s,expected",
    [
        (64, 64, 0.25, 0.5, 33 * 64 * 64 // 8),
        (64, 128, 0.25, 0.5, 33 * 64 * 128 // 8),
        (64, 64, 1.0, 0.0, 27 * 64 * 64),
        (64, 64, 0.0, 1.0, 9 * 64 * 64),
        (64, 64, 0.25, 0.75, 27 * 16 * 16 + 9 * 48 * 48),
        (10, 10, 0.25, 0.5, 27 * 3 * 3 + 9 * 5 * 5 + 3 * 2 * 2),
    ],
)
def test_gdm_weight_count(cin, cout, r_st, r_s, expected):
    assert count_params(GDM(cin, cout, 1, r_st, r_s)) == expected


def test_split_channels_sum_and_empty_groups():
    assert split_channels(64, 0.25, 0.5) == (16, 32, 16)
    assert split_channels(10, 0.25, 0.5) == (3, 5, 2)
    assert split_channels(7, 1.0, 0.0) == (7, 0, 0)
    assert split_channels(7, 0.0, 1.0) == (0, 7, 0)
    assert sum(split_channels(13, 0.3, 0.6)) == 13
    with pytest.raises(ValueError):
        split_channels(8, 0.7, 0.5)


def test_gdm_spatial_only_is_per_frame_conv2d():
    torch.manual_seed(0)
    gdm = GDM(8, 12, stride=2, r_st=0.0, r_s=1.0)
    assert gdm.st is None and gdm.t is None
    x = torch.randn(2 * 4, 8, 9, 9)  # (N*T, C, H, W)
    expected = F.conv2d(x, gdm.s.weight, stride=2, padding=1)
    torch.testing.assert_close(gdm(x, 4), expected, rtol=0, atol=0)


def test_gdm_spatiotemporal_only_is_conv3d():
    torch.manual_seed(0)
    gdm = GDM(6, 6, stride=1, r_st=1.0, r_s=0.0)
    video = torch.randn(2, 6, 5, 7, 7)  # (N, C, T, H, W)
    expected = F.conv3d(video, gdm.st.weight, padding=1)
    frames = video.transpose(1, 2).reshape(10, 6, 7, 7)
    out = gdm(frames, 5).view(2, 5, 6, 7, 7).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_gdm_groups_are_concatenated_in_order():
    torch.manual_seed(0)
    gdm = GDM(16, 16)  # groups 4 / 8 / 4
    x = torch.randn(3 * 2, 16, 6, 6)
    video = x.view(2, 3, 16, 6, 6).transpose(1, 2)
    st = F.conv3d(video[:, :4], gdm.st.weight, padding=1)
    t = F.conv3d(video[:, 12:], gdm.t.weight, padding=(1, 0, 0))
    s = F.conv2d(x[:, 4:12], gdm.s.weight, padding=1).view(2, 3, 8, 6, 6).transpose(1, 2)
    expected = torch.cat([st, s, t], 1).transpose(1, 2).reshape(6, 16, 6, 6)
    torch.testing.assert_close(gdm(x, 3), expected, rtol=1e-5, atol=1e-5)


def test_gdm_mismatched_split_is_an_error():
    with pytest.raises(ValueError, match="group"):
        GDM(2, 16, 1, 0.25, 0.5)  # the spatio-temporal group would map 0 -> 4 channels


def test_inflated_group_equals_2d_conv_on_identical_frames():
    torch.manual_seed(0)
    weight2d = torch.randn(8, 8, 3, 3)
    gdm = GDM(8, 8, r_st=1.0, r_s=0.0)
    gdm.init_from_2d(weight2d)
    frame = torch.randn(1, 8, 10, 10)
    clip = frame.repeat(6, 1, 1, 1)  # 6 identical frames
    out = gdm(clip, 6)
    expected = F.conv2d(frame, weight2d, padding=1)
    for t in range(1, 5):  # interior frames: the three taps see the same frame
        torch.testing.assert_close(out[t:t + 1], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[0:1], expected, atol=1e-3)  # the padded ends see zeros


def test_temporal_shift_moves_exactly_one_eighth_each_way():
    shift = TemporalShift(8)
    n, t, c = 2, 4, 16
    x = torch.arange(n * t * c, dtype=torch.float32).view(n * t, c, 1, 1) + 1
    out = shift(x, t).view(n, t, c)
    v = x.view(n, t, c)
    # channels 0-1 come from the next frame, 2-3 from the previous, the rest stay.
    torch.testing.assert_close(out[:, :-1, 0:2], v[:, 1:, 0:2])
    assert (out[:, -1, 0:2] == 0).all()
    torch.testing.assert_close(out[:, 1:, 2:4], v[:, :-1, 2:4])
    assert (out[:, 0, 2:4] == 0).all()
    torch.testing.assert_close(out[:, :, 4:], v[:, :, 4:])


def test_tsm_shifts_only_the_residual_branch():
    """TSM's residual shift (TSM paper, Fig. 2): the block's residual branch reads the shifted
    input, its identity path the input as it was."""
    torch.manual_seed(0)
    block = gdn.create_model("tsm_tiny", num_classes=3).eval().layer1[0]
    assert isinstance(block.shift, TemporalShift) and block.downsample is None  # identity = the input
    t = 4
    x = torch.randn(2 * t, 16, 8, 8)  # (N*T, C, H, W)

    def branch(inp):
        return block.bn2(block.conv2(block.relu(block.bn1(block.conv1(inp, t))), t))

    shifted = block.shift(x, t)
    assert not torch.equal(shifted, x)
    with torch.no_grad():
        out = block(x, t)
        assert torch.equal(out, torch.relu(branch(shifted) + x))
        assert not torch.allclose(out, torch.relu(branch(shifted) + shifted))  # a shifted identity
        assert not torch.allclose(out, torch.relu(branch(x) + x))  # no shift at all
    assert gdn.create_model("tsn_tiny").layer1[0].shift is None


def test_per_stage_makers_express_s3d():
    model = gdn.create_model("s3d_tiny")
    assert type(model.layer1[0].conv1).__name__ == "FrameConv2d"
    assert isinstance(model.layer4[0].conv1, VideoConv3d)


def test_table1_block_weights():
    factors = block_weight_factors()
    for label in ("C2D", "C3D", "P3D", "GDM"):
        assert factors[label] == TABLE1_PAPER[label]
    assert factors["GST"] == 27 / 16 + 9 * 9 / 16  # our GST split (r_st 1/4, r_s 3/4); see docs/results.md


def test_profile_matches_paper_scale():
    gdn_row = profile_model("gdn_r50", 8, 224)
    tsn_row = profile_model("tsn_r50", 8, 224)
    # GDN replaces 9 * w^2 with 33/8 * w^2 in every bottleneck's 3x3 conv.
    widths = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    assert tsn_row["params"] - gdn_row["params"] == sum(int((9 - 33 / 8) * w * w) for w in widths)
    assert gdn_row["params"] == 17_734_382
    assert tsn_row["params"] == 23_864_558
    assert 24.5 < gdn_row["gmacs"] < 24.9 and 32.6 < tsn_row["gmacs"] < 32.8
