"""Checkpoints: atomic writes, safe loading, fallback to the previous file, model rebuilding."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

import subprocess
import sys
import textwrap
from pathlib import Path

from gdn import create_model
from gdn.cli import main
from gdn.models.weights import load_weights
from gdn.config import Config
from gdn.engine import checkpoint as C
from gdn.engine.checkpoint import (
    CheckpointError,
    build_model_from_checkpoint,
    find_resume_checkpoint,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)

torch.set_num_threads(1)
CLASSES = ["a", "b", "c"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def make_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = Config.from_dict({"model": {"name": "tsn_tiny", "dropout": 0.1}})
    model = create_model("tsn_tiny", num_classes=len(CLASSES), dropout=0.1)
    return {"model": model.state_dict(), "config": cfg.to_dict(), "classes": CLASSES, "epoch": seed,
            "step": 0, "global_step": 0, "rng": get_rng_state(), "versions": C.versions(),
            "best_top1": None, "metrics": {}}


def test_save_load_round_trip_and_previous_kept(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state(1), keep_previous=True)
    save_checkpoint(path, make_state(2), keep_previous=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]
    assert load_checkpoint(path)["epoch"] == 2
    assert load_checkpoint(tmp_path / "last.prev.pt")["epoch"] == 1
    ckpt = load_checkpoint(path)
    for k, v in make_state(2)["model"].items():
        assert torch.equal(ckpt["model"][k], v)


def test_crash_during_write_keeps_previous_and_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state(1), keep_previous=True)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_state(2), keep_previous=True)
    assert path.read_bytes() == before  # the previous checkpoint is intact...
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # ...no tmp file, no rotation


def test_truncated_checkpoint_is_named_and_auto_resume_falls_back(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state(1), keep_previous=True)
    save_checkpoint(path, make_state(2), keep_previous=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{path}: checkpoint is truncated or corrupt"):
        load_checkpoint(path)
    found_path, ckpt = find_resume_checkpoint(tmp_path)
    assert found_path == tmp_path / "last.prev.pt" and ckpt["epoch"] == 1
    # both unreadable: an error naming both files
    (tmp_path / "last.prev.pt").write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        find_resume_checkpoint(tmp_path)
    assert str(path) in str(e.value) and str(tmp_path / "last.prev.pt") in str(e.value)
    assert find_resume_checkpoint(tmp_path / "empty") is None  # nothing there: a fresh run


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'nope.pt'}: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'text.pt'}: checkpoint is truncated or corrupt"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain.pt: not a gdn checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


class Malicious:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_case13_malicious_pickle_is_refused_by_every_command_and_never_runs(tmp_path, capsys):
    """Case 13 (docs/reliability.md): a checkpoint whose pickle would run a command is refused by
    the safe loader (load_checkpoint, load_weights, gdn test, predict, train --resume), one line
    and exit 2 on the command line; the project's own checkpoints pass that loader as they are."""
    target = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    state = make_state(0)
    save_checkpoint(tmp_path / "own.pt", state)
    assert torch.load(tmp_path / "own.pt", weights_only=True)["classes"] == CLASSES
    state["metrics"] = Malicious(target)
    torch.save(state, bad)  # plain pickle-based save: what an attacker would ship
    with pytest.raises(CheckpointError, match=rf"{bad}: refused to load.*posix.system"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=rf"{bad}: refused to load"):
        load_weights(create_model("tsn_tiny", num_classes=3), bad)
    for argv in (["test", str(bad)], ["predict", str(bad), str(tmp_path / "clip.mp4")],
                 ["train", "--out", str(tmp_path / "run"), "--resume", str(bad)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refused to load" in err[0], argv
    assert not target.exists()


def test_rng_state_round_trip_is_plain_and_exact(tmp_path):
    torch.manual_seed(3); np.random.seed(3); random.seed(3)
    torch.rand(5); np.random.rand(5); random.random()
    save_checkpoint(tmp_path / "r.pt", {**make_state(0), "rng": get_rng_state()})
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(99); np.random.seed(99); random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])  # loaded with weights_only=True
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_build_model_from_checkpoint_alone(tmp_path):
    state = make_state(5)
    # a DDP-style prefix is removed on load
    state["model"] = {f"module.{k}": v for k, v in state["model"].items()}
    save_checkpoint(tmp_path / "m.pt", state)
    model, cfg, classes = build_model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert cfg.model.name == "tsn_tiny" and cfg.model.dropout == 0.1 and classes == CLASSES
    assert not model.training and model.fc.out_features == 3
    reference = create_model("tsn_tiny", num_classes=3, dropout=0.1)
    reference.load_state_dict(make_state(5)["model"])
    reference.eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_case11_writer_killed_mid_write_leaves_previous_and_next_write_cleans_up(tmp_path):
    """Case 11 (docs/reliability.md): a writer killed mid-write (no cleanup possible) leaves the
    previous checkpoint intact and a hidden temporary file, which the next write removes."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "epoch": 1})
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {SRC!r})
        from gdn.engine.checkpoint import save_checkpoint
        def killed(obj, f, *a, **k):
            f.write(b"PK partial")
            f.flush()
            os._exit(137)  # like SIGKILL: no cleanup of any kind runs
        torch.save = killed
        save_checkpoint({str(path)!r}, {{"model": {{"w": torch.zeros(3)}}, "config": {{}}, "epoch": 2}},
                        keep_previous=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert proc.returncode == 137
    assert path.read_bytes() == before  # the previous checkpoint is intact
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.tmp")  # only a hidden temp file
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}, "epoch": 2}, keep_previous=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]
    assert load_checkpoint(path)["epoch"] == 2 and load_checkpoint(tmp_path / "last.prev.pt")["epoch"] == 1
