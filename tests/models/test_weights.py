"""Loading weights (gdn.models.weights): ImageNet initialisation from torchvision-format 2D
ResNet state dicts made by the test, and sources that match nothing."""

import pytest
import torch
import torch.nn.functional as F

import gdn
from gdn.engine.checkpoint import save_checkpoint
from gdn.models import create_model
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


def test_a_source_that_matches_nothing_is_an_error_naming_both_sides(tmp_path, peer_checkpoint):
    torch.manual_seed(0)
    path = _save(peer_checkpoint(gdn.create_model("tsm_tiny", num_classes=3), "tsm"), tmp_path)
    torch.manual_seed(1)
    model = gdn.create_model("tsm_tiny", num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as e:
        load_weights(model, path)  # the default asks for gdn's own keys
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{path}: matches almost nothing in this model: 0 of 60 tensors found a source")
    assert "It holds 74 tensors in format 'tsm', e.g. base_model.conv1.weight, " in first
    assert "new_fc.bias; format 'gdn' expects the state dict of a gdn model" in first
    assert "here e.g. conv1.weight, " in first
    assert first.endswith("it looks like format 'tsm': pass format='tsm'")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a refused load changes nothing


def test_detect_format_from_the_keys(peer_checkpoint):
    from gdn.models.weights import clean_state_dict

    assert detect_format(torchvision_resnet_state_dict(18)) == "torchvision"
    assert detect_format(gdn.create_model("tsn_tiny").state_dict()) == "torchvision"  # gdn's 2D models are torchvision's
    assert detect_format(gdn.create_model("gdn_tiny").state_dict()) == "gdn"
    assert detect_format(gdn.create_model("r3d_tiny").state_dict()) == "gdn"
    assert detect_format(clean_state_dict(peer_checkpoint(gdn.create_model("tsm_tiny"), "tsm")["state_dict"])) == "tsm"
    assert detect_format(peer_checkpoint(gdn.create_model("tsm_tiny"), "mmaction")["state_dict"]) == "mmaction"


CLASSES = ["Holding something", "Pushing something from left to right",
           "Pushing something from right to left"]


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_case14_weights_for_another_architecture_list_every_mismatch(tmp_path):
    """Case 14 (docs/reliability.md): weights of another architecture are refused, every
    missing, unexpected and mis-shaped key listed; reset_head never excuses a body mismatch."""
    torch.manual_seed(0)
    source = create_model("tsn_tiny", num_classes=3)
    path = tmp_path / "src.pt"
    save_checkpoint(path, {"model": source.state_dict(), "config": {}, "classes": CLASSES})
    # same family, other widths: every mis-shaped key is listed with both shapes
    wide = create_model("tsn_tiny", num_classes=3, widths=(16, 32, 64, 256))
    with pytest.raises(WeightsMismatchError) as e:
        load_weights(wide, path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: its parameters do not fit this model")
    src, dst = source.state_dict(), wide.state_dict()
    shaped = [k for k in src if src[k].shape != dst[k].shape]
    assert f"mis-shaped (source vs model) ({len(shaped)}): " in msg
    assert "layer4.0.conv1.weight (128, 64, 3, 3) vs model (256, 64, 3, 3)" in msg
    assert f"... ({len(shaped) - 10} more)" in msg  # long lists are cut after 10 names
    # another architecture: missing and unexpected keys listed by name
    tsm = create_model("gdn_tiny", num_classes=3)
    missing = sorted(set(tsm.state_dict()) - set(source.state_dict()))
    unexpected = sorted(set(source.state_dict()) - set(tsm.state_dict()))
    assert missing or unexpected
    with pytest.raises(WeightsMismatchError) as e:
        load_weights(tsm, source.state_dict())
    msg = str(e.value)
    if missing:
        assert f"missing in the source ({len(missing)})" in msg and missing[0] in msg
    if unexpected:
        assert f"unexpected in the source ({len(unexpected)})" in msg and unexpected[0] in msg
    with pytest.raises(WeightsMismatchError):  # reset_head does not excuse a body mismatch
        load_weights(tsm, path, reset_head=True)


def test_case14_other_class_count_needs_reset_head(tmp_path):
    """Case 14 (docs/reliability.md): another class count loads only with reset_head, which
    re-initialises fc and loads everything else exactly; a refused load changes nothing."""
    torch.manual_seed(0)
    source = create_model("tsn_tiny", num_classes=3)
    path = tmp_path / "src.pt"
    save_checkpoint(path, {"model": source.state_dict(), "config": {}, "classes": CLASSES})
    torch.manual_seed(1)
    target = create_model("tsn_tiny", num_classes=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as e:
        load_weights(target, path)
    msg = str(e.value)
    assert "only the classifier 'fc' differs" in msg and "reset_head=True" in msg
    assert "fc.weight (3, 128) vs model (5, 128)" in msg and "fc.bias (3,) vs model (5,)" in msg
    assert_same_params(target.state_dict(), before)  # a refused load changes nothing

    torch.manual_seed(2)
    report = load_weights(target, path, reset_head=True)
    assert report.head_reset == ["fc.weight", "fc.bias"]
    assert report.missing == [] and report.unexpected == [] and set(report.mismatched) == {"fc.weight", "fc.bias"}
    got, src = target.state_dict(), source.state_dict()
    assert len(report.loaded) == len(src) - 2
    for k in src:
        if not k.startswith("fc."):
            assert torch.equal(got[k], src[k]), k
    torch.manual_seed(2)
    fresh = torch.nn.Linear(128, 5)  # what reset_parameters draws under the same seed
    assert torch.equal(got["fc.weight"], fresh.weight) and torch.equal(got["fc.bias"], fresh.bias)

    # same class count: the head is loaded, unless a reset is asked for
    same = create_model("tsn_tiny", num_classes=3)
    assert load_weights(same, path).head_reset == []
    assert_same_params(same.state_dict(), source.state_dict())
    # DDP-prefixed state dicts load too
    prefixed = {f"module.{k}": v for k, v in source.state_dict().items()}
    assert len(load_weights(create_model("tsn_tiny", num_classes=3), prefixed).loaded) == len(src)


def test_imagenet_offline_is_one_line_naming_the_file_and_the_url(monkeypatch, tmp_path):
    """`pretrained="imagenet"` without a network: one line that says the download failed and how
    to pass a local copy of torchvision's file instead."""
    import urllib.error

    def offline(url, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError) as e:
        gdn.create_model("gdn_r18", num_classes=3, pretrained="imagenet")
    assert str(e.value) == (
        f"{url}: download failed (URLError: <urlopen error [Errno -3] Temporary failure in name resolution>); "
        "fetch resnet18-f37072fd.pth from that URL where there is network and pass its path "
        "(pretrained='/path/resnet18-f37072fd.pth', gdn train --pretrained /path/resnet18-f37072fd.pth), "
        f"or put it in {tmp_path}/hub/checkpoints, where the download would have saved it")
