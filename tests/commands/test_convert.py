"""`gdn convert`: a peer's checkpoint becomes a gdn checkpoint that `gdn test`, `predict` and
`train --init-from` take (`export` reads it the same way, through `build_model_from_checkpoint`),
carrying its class names in the peer's order; what cannot be converted is one line and exit
code 2."""

import json
from pathlib import Path

import pytest
import torch

import gdn
from gdn.cli import main
from gdn.config import Config
from gdn.data.synthetic import generate
from gdn.engine.checkpoint import load_checkpoint
from gdn.engine.train import build_model

torch.set_num_threads(1)

TSM_NAME = "TSM_something_RGB_tiny_shift8_blockres_avg_segment4_e1.pth"  # the TSM repository's naming


@pytest.fixture(scope="module")
def ssv1(tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny SSv1 dataset whose labels.csv does not list the classes in sorted order."""
    root = tmp_path_factory.mktemp("ssv1")
    summary = generate(root, format="ssv1", classes=2, train_per_class=1, val_per_class=1, test_per_class=0,
                       height=32, width=32, min_frames=6, max_frames=8, workers=1)
    csv_order = summary.classes
    assert csv_order != sorted(csv_order)
    return root, csv_order


@pytest.fixture(scope="module")
def source(bn_model):
    return bn_model("tsm_tiny")  # 5 classes, random BatchNorm statistics


def run(argv, capsys) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_a_tsm_checkpoint_converts_for_test_predict_and_fine_tuning(tmp_path, ssv1, source, peer_checkpoint,
                                                                          capsys):
    root, csv_order = ssv1
    src = tmp_path / TSM_NAME
    source4 = gdn.create_model("tsm_tiny", num_classes=4)
    source4.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}, strict=False)
    torch.save(peer_checkpoint(source4.eval(), "tsm", arch="tiny"), src)
    out = tmp_path / "tsm.pt"
    code, table, err = run(["convert", src, out, "--model", "tsm_tiny", "--dataset", "ssv1", "--data-root", root], capsys)
    assert code == 0, err
    assert "model        tsm_tiny" in table and "label order  sorted" in table and "frames       4" in table
    ckpt = load_checkpoint(out)
    assert ckpt["classes"] == sorted(csv_order)  # the TSM repository sorts SSv1's class names
    cfg = Config.from_dict(ckpt["config"])
    assert (cfg.model.name, cfg.data.dataset, cfg.data.frames, cfg.data.label_order, cfg.data.root) == (
        "tsm_tiny", "ssv1", 4, "sorted", str(root))
    assert cfg.data.protocol == "tsm"  # gdn test evaluates it as the TSM repository does
    model, _, _ = gdn.load_model(out)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(clip), source4(clip))

    code, res, err = run(["test", out, "--json", "--workers", 0, "--device", "cpu"], capsys)
    assert code == 0, err
    assert json.loads(res)["num_labelled"] == 4
    video = min((root / "20bn-something-something-v1").iterdir())
    code, res, err = run(["predict", out, video, "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    assert json.loads(res)[0]["predictions"][0]["class"] in csv_order
    # gdn train --init-from: the run's model starts from the converted weights
    cfg.apply_overrides([f"model.init_from='{out}'"])
    tuned = build_model(cfg, num_classes=4, fresh=True)
    assert all(torch.equal(v, source4.state_dict()[k]) for k, v in tuned.state_dict().items())
    # and GDN starts from it by the 2D rule (gdn_tiny has tsm_tiny's widths)
    gdn_model = gdn.create_model("gdn_tiny", num_classes=4, pretrained=str(out))
    assert torch.equal(gdn_model.layer2[0].conv2.s.weight, source4.layer2[0].conv2.weight[8:24, 8:24])


def test_class_order_travels_with_the_weights_and_is_checked(tmp_path, ssv1, source, peer_checkpoint, capsys):
    root, csv_order = ssv1
    src = tmp_path / "epoch_1.pth"
    four = {k: v[:4] if k.startswith("fc.") else v for k, v in source.state_dict().items()}
    model = gdn.create_model("tsm_tiny", num_classes=4)
    model.load_state_dict(four)
    # MMAction2 keeps labels.csv order; its 0.x meta names the config
    torch.save(peer_checkpoint(model, "mmaction", meta={"config_name": "tsm_r50_1x1x4_1e_sthv1_rgb.py"}), src)
    code, table, err = run(["convert", src, tmp_path / "csv.pt", "--model", "tsm_tiny", "--data-root", root], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "csv.pt")["classes"] == csv_order
    assert "dataset      ssv1" in table and "label order  csv" in table

    names = tmp_path / "sorted.txt"
    names.write_text("\n".join(sorted(csv_order)) + "\n")
    code, _, err = run(["convert", src, tmp_path / "x.pt", "--model", "tsm_tiny", "--data-root", root,
                        "--classes", names], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"gdn convert: error: {src}: the classes given differ from those of the ssv1 validation "
                             f"annotations under {root} (csv order) (class 0 is {min(csv_order)!r} vs "
                             f"{csv_order[0]!r})")
    # names in sorted order recorded with MMAction2's csv order: `gdn test` refuses, naming both
    code, _, err = run(["convert", src, tmp_path / "sorted.pt", "--model", "tsm_tiny", "--classes", names], capsys)
    assert code == 0, err
    code, _, err = run(["test", tmp_path / "sorted.pt", "--data-root", root, "--workers", 0], capsys)
    assert code == 2 and len(err) == 1
    assert (f"the model's 4 classes differ from the 4 classes of the ssv1 validation annotations under {root} "
            f"(class 0 is {min(csv_order)!r} vs {csv_order[0]!r}, checkpoint vs annotations") in err[0]


@pytest.mark.parametrize("args,message", [
    ([], "the file holds no class names; pass --classes FILE"),
    (["--classes", "three.txt"], "its classifier has 5 outputs, the classes given list 3 classes"),
    (["--model", "gdn_tiny", "--classes", "five.txt"], "holds a TSM network; gdn_tiny is another one"),
    (["--classes", "five.txt", "--from", "mmaction"], "--from mmaction, but its keys are those of format 'tsm'"),
])
def test_what_cannot_be_converted_is_one_line(tmp_path, source, peer_checkpoint, capsys, args, message):
    src = tmp_path / TSM_NAME
    torch.save(peer_checkpoint(source, "tsm", arch="tiny"), src)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    argv = ["convert", src, tmp_path / "out.pt", *[tmp_path / a if a.endswith(".txt") else a for a in args]]
    if "--model" not in args:
        argv += ["--model", "tsm_tiny"]
    code, _, err = run(argv, capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out.pt").exists()


def test_a_file_that_cannot_tell_its_network_asks_for_model_and_test_asks_for_convert(
        tmp_path, source, peer_checkpoint, capsys):
    src = tmp_path / TSM_NAME
    torch.save(peer_checkpoint(source, "tsm", arch="tiny"), src)
    code, _, err = run(["convert", src, tmp_path / "out.pt"], capsys)
    assert code == 2 and len(err) == 1
    assert ("a ResNet with (1, 1, 1, 1) basic blocks per stage and a (16, 3, 7, 7) stem is none of "
            "ResNet-18/34/50/101; pass the gdn model it was built as (--model)") in err[0]
    code, _, err = run(["test", src], capsys)
    assert code == 2 and len(err) == 1
    assert "it is a TSM repository or MMAction2 checkpoint: convert it with `gdn convert SRC OUT.pt`" in err[0]
