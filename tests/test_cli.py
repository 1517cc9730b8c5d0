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
