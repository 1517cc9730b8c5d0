"""The peers' checkpoints (gdn.models.weights "tsm" / "mmaction", gdn.models.peers, gdn.load_model):
files written in the TSM repository's and MMAction2's formats from gdn models with random
weights and random BatchNorm statistics (so that a swapped bn1/bn2 would show) load back into
the network they came from with identical logits; what matches no model fails loudly."""

import pytest
import torch

import gdn
from gdn.errors import UsageError
from gdn.models.layers import TSM
from gdn.models.peers import describe_checkpoint
from gdn.models.weights import WeightsMismatchError, load_weights, shifted_blocks

torch.set_num_threads(1)

CLIP = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # 3 frames: the shift moves data


def save(tmp_path, name, obj) -> str:
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(CLIP)


TSM_CASES = [  # (gdn model, file name as the TSM repository's main.py makes it, arch entry)
    ("tsm_r50", "TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth", "resnet50"),
    ("tsn_r50", "TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth", "resnet50"),
    ("tsm_r18", "TSM_somethingv2_RGB_resnet18_shift8_blockres_avg_segment16_e45.pth", "resnet18"),
    ("tsn_r18", "TSM_something_RGB_resnet18_avg_segment8_e45.pth", "resnet18"),
    ("tsm_r101", "TSM_something_RGB_resnet101_shift8_blockres_avg_segment8_e45.pth", "resnet101"),
]


@pytest.mark.parametrize("name,filename,arch", TSM_CASES)
def test_tsm_repository_checkpoints_give_the_logits_of_the_network_they_came_from(
        tmp_path, bn_model, peer_checkpoint, name, filename, arch):
    source = bn_model(name)
    path = save(tmp_path, filename, peer_checkpoint(source, "tsm", arch=arch))
    model, cfg, classes = gdn.load_model(path)
    assert not model.training and classes is None  # the TSM repository stores no class names
    assert (cfg.model.name, cfg.model.options) == (name, {})
    assert torch.equal(logits(model), logits(source))
    segments, dataset = int(filename.split("segment")[1].split("_")[0]), filename.split("_")[1]
    assert cfg.data.frames == segments
    assert (cfg.data.dataset, cfg.data.label_order) == {
        "something": ("ssv1", "sorted"), "somethingv2": ("ssv2", "sorted"), "kinetics": ("list", "sorted")}[dataset]


def test_tsm_repository_classifier_without_dropout_is_base_model_fc(tmp_path, bn_model, peer_checkpoint):
    source = bn_model("tsm_r18")
    ckpt = peer_checkpoint(source, "tsm", arch="resnet18")
    state = ckpt["state_dict"]
    for p in ("weight", "bias"):
        state[f"module.base_model.fc.{p}"] = state.pop(f"module.new_fc.{p}")
    model, _, _ = gdn.load_model(save(tmp_path, "TSM_something_RGB_resnet18_shift8_blockres_avg_segment8_e45.pth", ckpt))
    assert torch.equal(logits(model), logits(source))


MMACTION_CASES = [  # (gdn model, meta as MMAction2 writes it)
    ("tsm_r50", {"config_name": "tsm_r50_1x1x8_50e_sthv1_rgb.py"}, ("ssv1", 8)),  # 0.x: the config's name
    ("tsm_r101", {"cfg": "model = dict(type='Recognizer2D', backbone=dict(type='ResNetTSM', depth=101, "
                  "shift_div=8), cls_head=dict(type='TSMHead'))\nann_file_val = 'data/sthv2/sthv2_val_list_videos.txt'\n"
                  "train_pipeline = [dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8)]"},
     ("ssv2", 8)),  # 1.x: the config text
    ("tsn_r50", {"experiment_name": "tsn_imagenet-pretrained-r50_8xb32-1x1x16-50e_sthv2-rgb_20230221_101010"},
     ("ssv2", 16)),
]


@pytest.mark.parametrize("name,meta,told", MMACTION_CASES)
def test_mmaction_checkpoints_give_the_logits_of_the_network_they_came_from(
        tmp_path, bn_model, peer_checkpoint, name, meta, told):
    source = bn_model(name)
    ckpt = peer_checkpoint(source, "mmaction", meta=meta)
    # unpublished checkpoints keep the data preprocessor's constants: ImageNet's, x 255
    ckpt["state_dict"]["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    model, cfg, _ = gdn.load_model(save(tmp_path, "epoch_50.pth", ckpt))
    assert cfg.model.name == name and (cfg.data.dataset, cfg.data.frames) == told
    assert cfg.data.label_order == ("csv" if told[0] == "ssv1" else "sorted")  # MMAction2 keeps labels.csv order
    assert torch.equal(logits(model), logits(source))
    if name.startswith("tsn_"):
        # MMAction2's TSNHead averages the frames' features before fc_cls, gdn averages the frames'
        # logits: the same numbers (fc is linear) up to float rounding, within 1e-6 of the largest
        # logit (3.3e-7 here; peers.md measured 4.7e-7 against MMAction2's own code).
        with torch.no_grad():
            theirs = source.fc(source.forward_features(CLIP).mean(1))
        ours = logits(model)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6 * ours.abs().max().item())
        assert ours.argmax(1).tolist() == theirs.argmax(1).tolist()


def test_tsm_r101_shifts_every_second_block_of_every_stage_as_the_peers_build_it():
    # make_temporal_shift (TSM repository, MMAction2's ResNetTSM): n_round = 2 when layer3 has
    # >= 23 blocks, and block i of each stage shifts when i % n_round == 0.
    blocks = (3, 4, 23, 3)
    expected = {f"layer{s + 1}.{i}" for s, n in enumerate(blocks) for i in range(n) if i % 2 == 0}
    assert shifted_blocks(gdn.create_model("tsm_r101")) == expected and len(expected) == 18
    assert len(shifted_blocks(gdn.create_model("tsm_r50"))) == 16  # every block below 23


def test_shifts_in_other_blocks_than_the_models_are_refused(tmp_path, bn_model, peer_checkpoint):
    path = save(tmp_path, "w.pth", peer_checkpoint(bn_model("tsm_r101"), "tsm", arch="resnet101"))
    every_block = gdn.create_model("tsn_r101", num_classes=5, conv_makers=TSM())
    with pytest.raises(WeightsMismatchError, match=r"shifts the residual branch of 18 blocks, this model of 33 "
                                                   r"\(TSM ResNet-101 shifts every second block"):
        load_weights(every_block, path, format=None)


def test_the_file_decides_the_network_and_an_uncertain_guess_asks_for_model(tmp_path, bn_model, peer_checkpoint):
    source = bn_model("tsm_r18")
    ckpt = peer_checkpoint(source, "tsm", arch="resnet18")
    renamed = save(tmp_path, "tsm_sthv1.pth", ckpt)  # a name that tells nothing
    with pytest.raises(WeightsMismatchError, match=r"tsm_sthv1.pth: the file does not say how many channels its shift "
                                                   r"moves .*pass --model tsm_r18 for 1/8 each way"):
        gdn.load_model(renamed)
    model, cfg, _ = gdn.load_model(renamed, model="tsm_r18")
    assert torch.equal(logits(model), logits(source)) and cfg.data.frames == 8  # config default: the file has none
    with pytest.raises(UsageError, match=r"its keys say its blocks shift in time \(TSM\); tsn_r18 has no shift: use tsm_r18"):
        gdn.load_model(renamed, model="tsn_r18")
    with pytest.raises(UsageError, match=r"holds a TSM network; gdn_r18 is another one. .* pretrained"):
        gdn.load_model(renamed, model="gdn_r18")
    tsn = save(tmp_path, "TSM_something_RGB_resnet18_avg_segment8_e45.pth",
               peer_checkpoint(bn_model("tsn_r18"), "tsm", arch="resnet18"))
    assert gdn.load_model(tsn, model="tsm_r18").config.model.name == "tsm_r18"  # the user says it: same weights
    model, cfg, _ = gdn.load_model(save(tmp_path, "TSM_something_RGB_resnet18_shift4_blockres_avg_segment8_e45.pth", ckpt))
    assert cfg.model.options == {"fold_div": 4} and model.layer2[1].shift.fold_div == 4


@pytest.mark.parametrize("filename,entries,message", [
    ("TSM_something_RGB_resnet50_avg_segment8_e45.pth", {}, "the file name .* says TSN, its keys say TSM"),
    ("w.pth", {"arch": "resnet101"}, "the checkpoint's 'arch' entry says resnet101, its tensors are those of ResNet-50"),
    ("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth", {}, "a TSM with non-local blocks"),
    ("TSM_something_RGB_resnet50_shift8_blockres_tpool_avg_segment8_e45.pth", {}, "a TSM with temporal pooling"),
    ("TSM_something_RGB_resnet50_shift8_block_avg_segment8_e45.pth", {}, "a TSM with shift place 'block'"),
    ("TSM_kinetics_Flow_resnet50_shift8_blockres_avg_segment8_e50.pth", {}, "a Flow model"),
])
def test_metadata_that_contradicts_the_tensors_or_a_variant_gdn_lacks_is_an_error(
        tmp_path, bn_model, peer_checkpoint, filename, entries, message):
    path = save(tmp_path, filename, peer_checkpoint(bn_model("tsm_r50"), "tsm", **entries))
    with pytest.raises(WeightsMismatchError, match=message):
        gdn.load_model(path)


def test_files_that_match_no_model_fail_naming_the_format_found(tmp_path, bn_model, peer_checkpoint):
    unknown = save(tmp_path, "unknown.pth", {"state_dict": {"encoder.weight": torch.zeros(3)}})
    with pytest.raises(WeightsMismatchError, match=r"unknown.pth: not a TSM repository or MMAction2 checkpoint "
                                                   r"\(its keys are in format 'unknown', e.g. encoder.weight\)"):
        gdn.load_model(unknown)
    r3d = peer_checkpoint(bn_model("i3d_r50"), "mmaction")  # inflate_style '3x3x3': every 3x3 inflated
    r3d["state_dict"]["backbone.layer1.0.conv2.conv.weight"] = torch.zeros(64, 64, 3, 3, 3)
    with pytest.raises(WeightsMismatchError, match="an I3D with 3x3x3 kernels"):
        gdn.load_model(save(tmp_path, "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.pth", r3d))
    with pytest.raises(UsageError, match="--from tsm, but its keys are those of format 'mmaction'"):
        gdn.load_model(save(tmp_path, "tsn.pth", peer_checkpoint(bn_model("tsn_r50"), "mmaction")), format="tsm")


@pytest.mark.parametrize("format,key,wrong", [
    ("mmaction", "backbone.layer2.0.conv2.bn.weight", "backbone.layer2.0.conv2.bnorm.weight"),
    ("tsm", "module.base_model.layer3.1.bn2.running_var", "module.base_model.layer3.1.bn_2.running_var"),
])
def test_one_key_renamed_wrongly_fails_instead_of_loading_the_rest(tmp_path, bn_model, peer_checkpoint, format, key, wrong):
    ckpt = peer_checkpoint(bn_model("tsn_r50"), format)
    ckpt["state_dict"][wrong] = ckpt["state_dict"].pop(key)
    path = save(tmp_path, "TSM_something_RGB_resnet50_avg_segment8_e45.pth", ckpt)
    with pytest.raises(WeightsMismatchError) as e:
        gdn.load_model(path)
    assert "its parameters do not fit this model" in str(e.value)
    expected_missing = "layer2.0.bn2.weight" if format == "mmaction" else "layer3.1.bn2.running_var"
    assert f"missing in the source (1): {expected_missing}" in str(e.value)
    assert "unexpected in the source (1): " + wrong.removeprefix("module.").removeprefix("base_model.") in str(e.value)
    model = gdn.create_model("tsn_r50", num_classes=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError):
        load_weights(model, path, format=format)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing half-loaded


def test_a_peer_checkpoint_starts_gdn_by_the_2d_rule(tmp_path, bn_model, peer_checkpoint):
    source = bn_model("tsm_r50")
    path = save(tmp_path, "TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth", peer_checkpoint(source, "tsm"))
    torch.manual_seed(1)
    model = gdn.create_model("gdn_r50", num_classes=5)
    t_before = model.layer3[1].conv2.t.weight.clone()
    report = load_weights(model, path, format=None)
    assert report.format == "tsm" and len(report.random_init) == 16 and report.head_reset == []
    w2d = source.layer3[1].conv2.weight  # (256, 256, 3, 3): GDM groups 64 / 128 / 64
    assert torch.equal(model.layer3[1].conv2.s.weight, w2d[64:192, 64:192])
    assert torch.equal(model.layer3[1].conv2.st.weight, w2d[:64, :64].unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3)
    assert torch.equal(model.layer3[1].conv2.t.weight, t_before)
    assert torch.equal(model.layer4[2].bn3.running_var, source.layer4[2].bn3.running_var)
    # no classifier (or one of another class count): re-initialised, as for ImageNet weights
    backbone = peer_checkpoint(source, "mmaction")
    del backbone["state_dict"]["cls_head.fc_cls.weight"], backbone["state_dict"]["cls_head.fc_cls.bias"]
    report = load_weights(model, save(tmp_path, "backbone.pth", backbone), format=None)
    assert report.format == "mmaction" and report.head_reset == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == 318 - 16 + 2 * 16  # each 2D 3x3 kernel becomes a GDM's st and s


def test_describe_reads_each_peers_metadata(peer_checkpoint, bn_model):
    tsm = describe_checkpoint(peer_checkpoint(bn_model("tsm_r50"), "tsm"),
                              "/zoo/TSM_something_RGB_resnet50_shift8_blockres_avg_segment16_e45.pth")
    assert (tsm.format, tsm.model, tsm.num_classes, tsm.frames, tsm.dataset, tsm.label_order) == (
        "tsm", "tsm_r50", 5, 16, "ssv1", "sorted")
    assert tsm.facts[:2] == ["a ResNet with (3, 4, 6, 3) bottleneck blocks per stage (the tensors)",
                             "a temporal shift in 16 blocks (the '.net' wrappers in the keys)"]
    mma = describe_checkpoint(peer_checkpoint(bn_model("tsn_r50"), "mmaction"),
                              "tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb_20220906-cd10898e.pth")
    assert (mma.model, mma.frames, mma.dataset, mma.label_order) == ("tsn_r50", 8, "kinetics400", None)


# MMAction2's I3D model zoo names (docs/peers.md): the file name says the config.
I3D_ZOO = "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth"
I3D_NL_ZOO = "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-afd8f562.pth"
I3D_CLIP = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
# What MMAction2 1.x keeps of the config in `meta["cfg"]` for Wang and Gupta's Something-Something I3D-NL
SSV1_CFG = ("model = dict(type='Recognizer3D', backbone=dict(type='ResNet3d', depth=50, conv1_kernel=(5, 7, 7), "
            "conv1_stride_t=1, pool1_stride_t=1, spatial_strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), "
            "non_local_cfg=dict(sub_sample=True, use_scale=False, norm_cfg=dict(type='BN3d', requires_grad=True), "
            "mode='embedded_gaussian')))\ntrain_pipeline = [dict(type='SampleFrames', clip_len=32, frame_interval=2, "
            "num_clips=1)]\nann_file_val = 'data/sthv1/sthv1_val_list_rawframes.txt'\n")


@pytest.mark.parametrize("name,filename,meta,options", [
    ("i3d_r50", I3D_ZOO, None, {}),
    ("i3d_nl_r50", I3D_NL_ZOO, None, {}),
    ("i3d_nl_r50", "sthv1_i3d_nl.pth", {"cfg": SSV1_CFG}, {"temporal_strides": [1, 1, 2], "res5_stride": 1}),
    ("i3d_r50", I3D_ZOO.replace("r50_", "r50-heavy_"), None,  # every block inflated, time kept to res2
     {"inflate": [[1] * 3, [1] * 4, [1] * 6, [1] * 3], "temporal_strides": [1, 1, 2]}),
])
def test_mmaction_i3d_checkpoints_give_the_logits_of_the_network_they_came_from(
        tmp_path, bn_model, peer_checkpoint, name, filename, meta, options):
    """Every conv of MMAction2's I3D is a Conv3d (1x1x1 and 1x3x3 kernels load into gdn's per-frame
    convs) and its non-local blocks are mmcv's; the inflation pattern comes from the tensors, the
    strides from its config or zoo name."""
    source = bn_model(name, **options)
    ckpt = peer_checkpoint(source, "mmaction", **({"meta": meta} if meta else {}))
    assert ckpt["state_dict"]["backbone.layer1.0.conv1.conv.weight"].shape == (64, 64, 3, 1, 1)
    assert ckpt["state_dict"]["backbone.layer1.1.conv2.conv.weight"].shape == (64, 64, 1, 3, 3)
    model, cfg, _ = gdn.load_model(save(tmp_path, filename, ckpt))
    assert (cfg.model.name, cfg.model.options, cfg.data.frames, cfg.data.sampling) == (name, options, 32, "dense")
    with torch.no_grad():
        assert torch.equal(model(I3D_CLIP), source.eval()(I3D_CLIP))
    if name == "i3d_nl_r50":
        assert sum(".non_local_block." in k for k in ckpt["state_dict"]) == 5 * 12


def test_mmaction_i3d_without_its_settings_asks_for_model_and_other_variants_are_refused(
        tmp_path, bn_model, peer_checkpoint):
    ckpt = peer_checkpoint(bn_model("i3d_nl_r50"), "mmaction")
    path = save(tmp_path, "my_i3d.pth", ckpt)  # no config text, not a model zoo name
    with pytest.raises(WeightsMismatchError, match="does not say its temporal strides .* pass --model i3d_nl_r50"):
        gdn.load_model(path)
    model, cfg, _ = gdn.load_model(path, model="i3d_nl_r50")  # MMAction2's Kinetics settings
    assert cfg.model.name == "i3d_nl_r50" and model.temporal_strides == (2, 2, 2)
    with pytest.raises(UsageError, match="holds MMAction2's I3D; tsn_r50 is another network"):
        gdn.load_model(path, model="tsn_r50")
    dot = I3D_NL_ZOO.replace("embedded-gaussian", "dot-product")
    with pytest.raises(WeightsMismatchError, match="non-local blocks in 'dot_product' mode"):
        gdn.load_model(save(tmp_path, dot, ckpt))
