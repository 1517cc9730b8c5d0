"""The command line: one error path for every command (gdn.errors)."""

from __future__ import annotations

import pytest

from gdn.cli import COMMANDS, main


@pytest.mark.parametrize("argv,reason", [
    (["export", "/nonexistent.pt", "--onnx", "x.onnx"], "/nonexistent.pt: checkpoint not found"),
    (["test", "/nonexistent.pt"], "/nonexistent.pt: checkpoint not found"),
    (["predict", "/nonexistent.pt", "clip.mp4"], "/nonexistent.pt: checkpoint not found"),
    (["explain", "/nonexistent.pt", "clip.mp4", "--out", "/tmp/gdn-never-written"], "/nonexistent.pt: checkpoint not found"),
    (["ensemble", "/nonexistent.npz"], "/nonexistent.npz: score file not found"),
    (["train", "--config", "/nonexistent.yaml"], "/nonexistent.yaml: config file not found"),
    (["profile", "--models", "gdn_r5"], "unknown model(s) gdn_r5"),
    (["bench", "--models", "gdn_r5", "--device", "cpu"], "gdn_r5"),
    (["demo", "--epochs", "0"], "--epochs must be >= 1"),
    (["synth", "/tmp/gdn-never-written", "--classes", "99"], "99"),
], ids=lambda v: v[0] if isinstance(v, list) else "")
def test_a_user_error_is_one_line_and_exit_code_2(argv, reason, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"gdn {argv[0]}: error: ") and reason in err[0]


def test_every_command_is_listed_with_a_summary():
    from gdn.cli import build_parser

    text = build_parser().format_help()
    assert all(name in text for name in COMMANDS)


def test_predict_speaks_of_the_file_not_of_a_dataset(tmp_path, capsys, caplog):
    """`gdn predict` on a missing file names the file (no dataset root or annotation file is
    involved); a video cut short is predicted, with a warning that it ends early and how many
    frames were read."""
    from media import LOSSLESS, gradient_frames, write_video

    from gdn.config import Config
    from gdn.engine.checkpoint import save_checkpoint
    from gdn.models import create_model

    cfg = Config()
    cfg.model.name, cfg.data.frames, cfg.data.size = "tsn_tiny", 4, 32
    model = create_model("tsn_tiny", num_classes=2)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "config": cfg.to_dict(), "classes": ["a", "b"],
                           "epoch": 1, "step": 0, "global_step": 1, "best_top1": None, "metrics": {}})
    suffix, codec, pix_fmt, options = LOSSLESS["ffv1-mkv"]
    whole = tmp_path / f"whole{suffix}"
    write_video(whole, gradient_frames(40), codec, pix_fmt, options)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with caplog.at_level("WARNING"):
        assert main(["predict", str(ckpt), str(tmp_path / "missing.mp4"), str(cut), "--device", "cpu"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"gdn predict: {tmp_path}/missing.mp4: file not found"]
    assert out.splitlines()[0] == str(cut)  # predicted
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{cut}: the file ends early: ") and "(about 40 frames)" in warning
