"""Loading weights (gdn.models.weights): ImageNet initialisation from torchvision-format 2D
ResNet state dicts made by the test, and sources that match nothing."""

import pytest
import torch
import torch.nn.functional as F

import gdn
from gdn.models.weights import CheckpointError, WeightsMismatchError, detect_format, load_weights

torch.set_num_threads(1)

BASIC = {18: (2, 2, 2, 2)}
BOTTLENECK = {50: (3, 4, 6, 3)}


def torchvision_resnet_state_dict(depth: int, num_classes: int = 1000, seed: int = 0) -> dict:
    """Random weights under torchvision's ResNet key names and shapes (written from its rules)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(key, o, i, k):
        sd[key] = torch.randn(o, i, k, k, generator=g) * (2.0 / (i * k * k)) ** 0.5

    def bn(key, c):
        sd[f"{key}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{key}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{key}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{key}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{key}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    bottleneck = depth in BOTTLENECK
    layers = BOTTLENECK[depth] if bottleneck else BASIC[depth]
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            if bottleneck:
                conv(f"{p}.conv1.weight", planes, inplanes, 1); bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2.weight", planes, planes, 3); bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3.weight", planes * 4, planes, 1); bn(f"{p}.bn3", planes * 4)
            else:
                conv(f"{p}.conv1.weight", planes, inplanes, 3); bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2.weight", planes, planes, 3); bn(f"{p}.bn2", planes)
            if j == 0 and (i > 0 or inplanes != planes * expansion):
                conv(f"{p}.downsample.0.weight", planes * expansion, inplanes, 1); bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    sd["fc.weight"] = 0.01 * torch.randn(num_classes, inplanes, generator=g)
    sd["fc.bias"] = torch.zeros(num_classes)
    return sd


def reference_resnet18(sd: dict, images: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet-18 forward in eval mode, written with functional ops."""

    def bn(x, key):
        return F.batch_norm(x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"],
                            sd[f"{key}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(images, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for i, n in enumerate(BASIC[18]):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + x)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


def test_state_dict_matches_torchvision_when_available():
    tv = pytest.importorskip("torchvision")
    ours = torchvision_resnet_state_dict(50)
    theirs = tv.models.resnet50().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_all_spatial_gdn_from_2d_weights_equals_2d_resnet_per_frame(tmp_path):
    sd = torchvision_resnet_state_dict(18)
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    model = gdn.create_model("gdn_r18", num_classes=1000, pretrained=str(path), r_st=0.0, r_s=1.0).eval()
    clip = torch.randn(2, 3, 4, 64, 64)
    frames = clip.transpose(1, 2).reshape(8, 3, 64, 64)
    expected = reference_resnet18(sd, frames).view(2, 4, -1).mean(1)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), expected, rtol=1e-4, atol=1e-4)


def test_gdm_groups_take_slices_inflation_and_keep_temporal_random(tmp_path):
    sd = torchvision_resnet_state_dict(50)
    torch.manual_seed(1)
    model = gdn.create_model("gdn_r50", num_classes=174)
    t_before = model.layer3[1].conv2.t.weight.clone()
    report = load_weights(model, _save(sd, tmp_path), format="torchvision")
    w2d = sd["layer3.1.conv2.weight"]  # (256, 256, 3, 3): groups 64 / 128 / 64
    conv2 = model.layer3[1].conv2
    torch.testing.assert_close(conv2.s.weight, w2d[64:192, 64:192], rtol=0, atol=0)
    torch.testing.assert_close(conv2.st.weight, w2d[:64, :64].unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
    assert torch.equal(conv2.t.weight, t_before)
    assert "layer3.1.conv2.t.weight" in report.random_init
    assert len(report.random_init) == 16  # one temporal group per bottleneck
    assert report.head_reset == ["fc.weight", "fc.bias"]  # 1000 ImageNet classes vs 174
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(model.layer2[0].downsample[1].running_var, sd["layer2.0.downsample.1.running_var"])
    torch.testing.assert_close(model.conv1.weight, sd["conv1.weight"])


def test_inflated_3d_and_2plus1d_makers(tmp_path):
    sd = torchvision_resnet_state_dict(50)
    path = _save(sd, tmp_path)
    r3d = gdn.create_model("r3d_r50", pretrained=path)
    torch.testing.assert_close(r3d.layer1[0].conv2.weight, sd["layer1.0.conv2.weight"].unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
    r21 = gdn.create_model("r2plus1d_r50")
    report = load_weights(r21, path, format="torchvision")
    torch.testing.assert_close(r21.layer2[1].conv2.spatial.weight, sd["layer2.1.conv2.weight"])
    assert "layer2.1.conv2.temporal.weight" in report.random_init


def test_wrapped_state_dicts_and_reports(tmp_path):
    sd = torchvision_resnet_state_dict(18, num_classes=5)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    del wrapped["state_dict"]["module.layer1.0.bn1.weight"]
    wrapped["state_dict"]["module.extra.weight"] = torch.zeros(1)
    model = gdn.create_model("tsn_r18", num_classes=5)
    report = load_weights(model, _save(wrapped, tmp_path), format="torchvision")
    assert report.missing == ["layer1.0.bn1.weight"]
    assert report.unexpected == ["extra.weight"]
    assert report.head_reset == []
    torch.testing.assert_close(model.fc.weight, sd["fc.weight"])


def test_wrong_depth_is_an_error(tmp_path):
    path = _save(torchvision_resnet_state_dict(18), tmp_path)
    with pytest.raises(ValueError, match="same ResNet depth"):
        gdn.create_model("gdn_r50", pretrained=path)


def test_missing_or_unreadable_file_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: weights file not found"):
        gdn.create_model("gdn_tiny", pretrained=str(tmp_path / "nope.pth"))
    text = tmp_path / "text.pth"
    text.write_text("not a tensor file")
    with pytest.raises(CheckpointError, match=f"{text}: weights file is truncated or corrupt"):
        gdn.create_model("gdn_tiny", pretrained=str(text))


def _save(obj, tmp_path) -> str:
    path = tmp_path / "weights.pth"
    torch.save(obj, path)
    return str(path)


def tsm_repository_checkpoint(model: torch.nn.Module) -> dict:
    """`model`'s weights as the TSM repository's main.py saves them (DataParallel prefix, the
    shift wrapper's `.net` on each block's conv1, `new_fc`); see shared/reference/peers.md."""
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith("fc."):
            k = f"new_fc.{k[3:]}"
        else:
            k = "base_model." + (k.replace(".conv1.", ".conv1.net.") if k.startswith("layer") else k)
        state[f"module.{k}"] = v
    return {"epoch": 45, "arch": "resnet50", "best_prec1": 50.0, "state_dict": state}


def test_a_source_that_matches_nothing_is_an_error_naming_both_sides(tmp_path):
    torch.manual_seed(0)
    path = _save(tsm_repository_checkpoint(gdn.create_model("tsm_tiny", num_classes=3)), tmp_path)
    assert "module.base_model.layer1.0.conv1.net.weight" in torch.load(path)["state_dict"]
    torch.manual_seed(1)
    model = gdn.create_model("tsm_tiny", num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for load in (lambda: load_weights(model, path), lambda: load_weights(model, path, format=None)):
        with pytest.raises(WeightsMismatchError) as e:
            load()
        first = str(e.value).splitlines()[0]
        assert first.startswith(f"{path}: matches almost nothing in this model: 0 of 60 tensors found a source")
        assert "It holds 74 tensors in format 'unknown', e.g. base_model.conv1.weight, " in first
        assert "new_fc.bias; format 'gdn' expects the state dict of a gdn model" in first
        assert "here e.g. conv1.weight, " in first
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a refused load changes nothing
    with pytest.raises(WeightsMismatchError, match="matches almost nothing"):  # was: 0 tensors, 2 warnings
        gdn.create_model("tsm_tiny", num_classes=3, pretrained=path)


def test_a_format_plugs_in_as_one_filter_and_one_entry(tmp_path, monkeypatch):
    """What the checkpoint-interop issue adds for the TSM repository's format, written here to
    show the seam fits it: detection from the keys, and a filter that renames."""
    from gdn.models.weights import FORMATS, WeightsFormat

    def tsm_filter(state_dict, model):
        renamed = {}
        for k, v in state_dict.items():
            k = k.removeprefix("base_model.").replace(".conv1.net.", ".conv1.").replace("new_fc.", "fc.")
            renamed[k] = v
        return renamed, []

    monkeypatch.setitem(FORMATS, "tsm", WeightsFormat(
        detect=lambda sd: any(k.startswith("base_model.") for k in sd), filter=tsm_filter,
        expects="the TSM repository's keys (base_model.layer1.0.conv1.net.weight, new_fc.weight)"))
    torch.manual_seed(0)
    source = gdn.create_model("tsm_tiny", num_classes=3).eval()
    path = _save(tsm_repository_checkpoint(source), tmp_path)
    model = gdn.create_model("tsm_tiny", num_classes=3, pretrained=path).eval()
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    report = load_weights(gdn.create_model("tsm_tiny", num_classes=3), path, format=None)
    assert report.format == "tsm" and len(report.loaded) == 74
    with pytest.raises(WeightsMismatchError, match="it looks like format 'tsm': pass format='tsm'"):
        load_weights(model, path)  # the default asks for gdn's own keys


def test_detect_format_from_the_keys():
    from gdn.models.weights import clean_state_dict, detect_format

    assert detect_format(torchvision_resnet_state_dict(18)) == "torchvision"
    assert detect_format(gdn.create_model("tsn_tiny").state_dict()) == "torchvision"  # gdn's 2D models are torchvision's
    assert detect_format(gdn.create_model("gdn_tiny").state_dict()) == "gdn"
    assert detect_format(gdn.create_model("r3d_tiny").state_dict()) == "gdn"
    tsm = tsm_repository_checkpoint(gdn.create_model("tsm_tiny"))["state_dict"]
    assert detect_format(clean_state_dict(tsm)) is None
