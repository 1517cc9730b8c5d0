"""Config: YAML loading, typed overrides, errors that name the key and the file, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gdn.cli import main
from gdn.config import RECIPES, Config, ConfigError, TrainConfig
from gdn.models import list_models

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_paper_recipe():
    cfg = Config()
    t = cfg.train
    assert (t.lr, t.base_batch_size, t.momentum, t.weight_decay) == (0.02, 48, 0.9, 5e-4)
    assert (t.epochs, t.lr_steps, t.lr_gamma, t.clip_grad) == (40, [20, 30], 0.1, 20.0)
    assert cfg.model.dropout == 0.5
    # linear scaling to the effective batch: 16 per process x 4 processes x accumulate 3 = 192
    cfg.train.batch_size, cfg.train.accumulate = 16, 3
    assert cfg.effective_batch_size(world_size=4) == 192
    assert cfg.scaled_lr(world_size=4) == pytest.approx(0.02 * 192 / 48)


def test_recipe_follows_the_weights_and_explicit_keys_win(tmp_path):
    # the finetune recipe is the paper's: the defaults themselves
    default = Config()
    assert {k: getattr(getattr(default, k.split(".")[0]), k.split(".")[1]) for k in RECIPES["finetune"]} == RECIPES["finetune"]
    assert RECIPES["scratch"].keys() == RECIPES["finetune"].keys()

    scratch = Config()
    assert scratch.resolve_recipe() == RECIPES["scratch"]  # no weights: every key from the scratch recipe
    t = scratch.train
    assert (t.recipe, t.lr, t.base_batch_size, t.batch_size, t.schedule, t.warmup_epochs, t.weight_decay,
            scratch.model.dropout) == ("scratch", 0.05, 16, 16, "cosine", 1.0, 1e-4, 0.2)
    for weights in (["model.pretrained=imagenet"], ["model.init_from=run/best.pt"]):
        cfg = Config().apply_overrides(weights)
        cfg.resolve_recipe()
        assert cfg.train.recipe == "finetune" and (cfg.train.lr, cfg.train.schedule) == (0.02, "step")
        assert cfg.train.fc_lr_mult == 1.0  # ImageNet, or the same classes: one lr
    new_head = Config().apply_overrides(["model.init_from=run/best.pt", "model.reset_head=true"])
    new_head.resolve_recipe()
    assert new_head.train.fc_lr_mult == 5.0  # a new head on a video checkpoint learns 5x faster

    # keys set in a file, an override or in code keep their values, even the defaults' values
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.02\n  schedule: step\n")
    cfg = Config.from_yaml(f).apply_overrides(["train.batch_size=48"])
    cfg.model.dropout = 0.3
    assert cfg.resolve_recipe() == {"train.base_batch_size": 16, "train.warmup_epochs": 1.0,
                                    "train.weight_decay": 1e-4}
    assert (cfg.train.lr, cfg.train.schedule, cfg.train.batch_size, cfg.model.dropout) == (0.02, "step", 48, 0.3)
    # the resolved config, saved and read back, resolves to itself; an explicit recipe is kept
    again = Config.from_dict(cfg.to_dict())
    assert again.resolve_recipe() == {} and again == cfg
    forced = Config().apply_overrides(["train.recipe=finetune"])
    forced.resolve_recipe()
    assert forced == Config().apply_overrides(["train.recipe=finetune"])
    with pytest.raises(ConfigError, match="train.recipe='fast' is not one of: auto, scratch, finetune"):
        Config().apply_overrides(["train.recipe=fast"])


def test_yaml_load_and_typed_values(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "model:\n  name: gdn_tiny\n  options: {r_st: 0.5}\n"
        "data:\n  frames: 16\n  short_side: 128\n"
        "train:\n  lr: 5e-4\n  weight_decay: 1\n  lr_steps: [3, 6]\n  clip_grad: null\n"
        "out: runs/x\n"
    )
    cfg = Config.from_yaml(f)
    assert cfg.model.name == "gdn_tiny" and cfg.model.options == {"r_st": 0.5}
    assert cfg.data.frames == 16 and cfg.data.short_side == 128
    # PyYAML reads "5e-4" (no dot) as a string; the float field converts it
    assert cfg.train.lr == 5e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == 1.0 and isinstance(cfg.train.weight_decay, float)
    assert cfg.train.lr_steps == [3, 6] and cfg.train.clip_grad is None
    assert cfg.out == "runs/x"
    assert cfg.train.epochs == TrainConfig().epochs  # untouched keys keep their defaults


def test_overrides_are_parsed_as_yaml():
    cfg = Config().apply_overrides([
        "train.lr=0.01", "train.epochs=3", "train.lr_steps=[1, 2]", "train.sync_bn=true",
        "model.pretrained=null", "model.options.r_st=0.5", "model.options.r_s=1", "data.root=1e5",
        "device=cpu",
    ])
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3 and cfg.train.lr_steps == [1, 2]
    assert cfg.train.sync_bn is True and cfg.model.pretrained is None
    assert cfg.model.options == {"r_st": 0.5, "r_s": 1}
    assert cfg.data.root == "1e5" and cfg.device == "cpu"


def test_unknown_key_in_file_names_file_line_and_valid_keys(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model:\n  name: gdn_tiny\ntrain:\n  epochs: 3\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        Config.from_yaml(f)
    msg = str(e.value)
    assert f"{f}:5" in msg and "'train.lrr'" in msg and "did you mean 'train.lr'" in msg
    for key in ("epochs", "batch_size", "lr_steps", "fc_lr_mult", "accumulate"):
        assert key in msg
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer'.*valid keys in the top level: model, data, train, out, device"):
        Config.from_dict({"optimizer": {}})


def test_malformed_yaml_names_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("train:\n  lr: [0.1\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=rf"{f}:\d+: malformed YAML"):
        Config.from_yaml(f)
    with pytest.raises(ConfigError, match="not found"):
        Config.from_yaml(tmp_path / "missing.yaml")


def test_bad_values_name_the_key_and_leave_the_config_unchanged():
    cfg = Config()
    with pytest.raises(ConfigError, match=r"train.epochs must be int, got 'many'"):
        cfg.apply_overrides(["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"train.amp='fp8' is not one of: auto, bf16, fp16, none"):
        cfg.apply_overrides(["train.amp=fp8"])
    with pytest.raises(ConfigError, match=r"data.protocol='mmaction2' is not one of: gdn, tsm, mmaction"):
        cfg.apply_overrides(["data.protocol=mmaction2"])
    with pytest.raises(ConfigError, match=r"data.sampling='segments' is not one of: tsn, dense"):
        cfg.apply_overrides(["data.sampling=segments"])
    with pytest.raises(ConfigError, match=r"model.name='gdn_r5'.*did you mean gdn_r50"):
        cfg.apply_overrides(["model.name=gdn_r5"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        cfg.apply_overrides(["train.lr"])
    assert cfg == Config()


def test_round_trip_dict_and_yaml(tmp_path):
    cfg = Config().apply_overrides(["model.name=tsm_tiny", "model.options.r_st=0.5", "train.lr_steps=[5]",
                                    "data.short_side=80", "train.clip_grad=null"])
    d = cfg.to_dict()
    assert d["train"]["recipe"] == "scratch" and cfg.train.recipe == "auto"  # saved resolved, the config untouched
    cfg.resolve_recipe()
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    assert Config.from_dict(d) == cfg
    cfg.save_yaml(tmp_path / "config.yaml")
    assert Config.from_yaml(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_hold_only_what_differs_from_the_defaults(path):
    """The defaults of a key the recipe sets are the recipe's: the one the file's weights choose."""
    cfg = Config.from_yaml(path)
    raw = yaml.safe_load(path.read_text())
    default = Config().to_dict()
    with_weights = Config()
    with_weights.model.pretrained = raw.get("model", {}).get("pretrained")
    with_weights.model.init_from = raw.get("model", {}).get("init_from")
    with_weights.resolve_recipe()
    for key in RECIPES["scratch"]:
        section, name = key.split(".")
        default[section][name] = getattr(getattr(with_weights, section), name)
    for section, value in raw.items():
        if isinstance(value, dict):
            same = [k for k, v in value.items() if default[section][k] == v]
            assert not same, f"{path}: {section}.{same} repeat the defaults"
            assert all(getattr(getattr(cfg, section), k) == v for k, v in value.items())
        else:
            assert default[section] != value and getattr(cfg, section) == value


def test_paper_configs_follow_their_recipes():
    for ds in ("sthv1", "sthv2"):
        for name, frames, size, short in [("gdn_r50_8f", 8, 224, 256), ("gdn_r50_16f", 16, 224, 256),
                                          ("gdn_r50_8f_112", 8, 112, 128), ("gdn_r50_16f_112", 16, 112, 128)]:
            cfg = Config.from_yaml(REPO / "configs" / ds / f"{name}.yaml")
            assert (cfg.model.name, cfg.data.frames, cfg.data.size, cfg.data.short_side) == ("gdn_r50", frames, size, short)
            assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.lr_steps) == (0.02, 48, 40, [20, 30])
        for base in ("tsm", "tsn"):
            cfg = Config.from_yaml(REPO / "configs" / ds / f"{base}_r50_8f.yaml")
            t = cfg.train
            assert (t.lr, t.base_batch_size, t.epochs, t.lr_steps, t.fc_lr_mult) == (0.01, 64, 50, [20, 40], 5.0)
            assert cfg.data.flip == "none" and t.weight_decay == 5e-4


def test_case8_config_errors_name_the_key_and_the_choices(tmp_path, capsys):
    """Case 8 (docs/reliability.md): malformed YAML, unknown keys, bad values and unknown models
    name the file, line and key with the choices; the command line prints one line, exit 2."""
    names = list_models()
    with pytest.raises(ConfigError) as e:
        Config().apply_overrides(["model.name=gdn_r99"])
    assert "model.name='gdn_r99'" in str(e.value) and f"choose one of: {', '.join(names)}" in str(e.value)
    f = tmp_path / "typo.yaml"
    f.write_text("model:\n  name: tsn_tiny\ndata:\n  frame: 8\n")
    with pytest.raises(ConfigError) as e:
        Config.from_yaml(f)
    assert f"{f}:4: unknown key 'data.frame' (did you mean 'data.frames'?)" in str(e.value)
    assert "valid keys in 'data': dataset, root," in str(e.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n   lr: 0.1\n")
    # the command line: one line naming the file and line, exit code 2, no traceback
    for cfg_file, words in ((bad, [f"{bad}:3: malformed YAML"]), (f, ["data.frame", "data.frames"])):
        assert main(["train", "--config", str(cfg_file), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words)
    assert main(["train", "--model", "gdn_r99", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gdn_r99" in err[0] and "tsn_tiny" in err[0]
    with pytest.raises(ConfigError, match=r"data.flip='mirror' is not one of: label, naive, none"):
        Config().apply_overrides(["data.flip=mirror"])
    assert main(["train", "--set", "data.frames=eight"]) == 2
    assert "data.frames must be int" in capsys.readouterr().err
