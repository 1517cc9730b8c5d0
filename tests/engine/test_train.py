"""The training engine on a tiny synthetic dataset (CPU): exact resume, signals, NaN, bad data, CLI."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import gdn.engine.train as T
from gdn.cli import main
from gdn.config import Config
from gdn.data.datasets import TooManyBadSamples
from gdn.data.synthetic import generate
from gdn.engine.checkpoint import CheckpointError, load_checkpoint
from gdn.engine.train import NonFiniteLossError, lr_factor, param_groups, partial_bn, train, train_mode

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """4 classes (2 time-reversed pairs), 12 training and 4 validation videos of 32x32 pixels."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, format="ssv2", classes=2, train_per_class=3, val_per_class=1, test_per_class=1,
             height=32, width=32, min_frames=8, max_frames=10, workers=1, overwrite=True)
    return root


def make_cfg(root, out, **train_options) -> Config:
    return Config.from_dict({
        "model": {"name": "gdn_tiny", "dropout": 0.5},
        "data": {"dataset": "ssv2", "root": str(root), "frames": 4, "size": 32, "workers": 0},
        # 3 batches per epoch; warm-up over half an epoch and a step at epoch 1 exercise the schedule
        "train": {"epochs": 2, "batch_size": 4, "base_batch_size": 4, "lr": 0.05, "schedule": "step", "lr_steps": [1],
                  "warmup_epochs": 0.5, **train_options},
        "out": str(out), "device": "cpu",
    })


def on_training_forward(monkeypatch, callback):
    """Make the engine's model call `callback(n, module, output)` on its n-th training forward."""
    real = T.create_model

    def create(*args, **kwargs):
        model = real(*args, **kwargs)
        calls = [0]

        def hook(module, inputs, output):
            if module.training:
                calls[0] += 1
                return callback(calls[0], module, output)

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(T, "create_model", create)


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def metrics(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "clips_per_s")} for r in records]


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory) -> dict:
    """The final parameters of an uninterrupted 2-epoch run of `make_cfg` (3 steps per epoch)."""
    out = tmp_path_factory.mktemp("reference")
    train(make_cfg(synth, out))
    return load_checkpoint(out / "last.pt")["model"]


# ---------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize("workers,accumulate", [(0, 1), (2, 2)])
def test_case10_sigterm_then_resume_equals_uninterrupted_run(synth, tmp_path, monkeypatch, capsys, workers,
                                                             accumulate):
    """Case 10 (docs/reliability.md): SIGTERM mid-epoch saves last.pt at the next optimizer-step
    boundary (exit 143); --resume auto ends with the parameters, optimizer state and metrics of
    an uninterrupted run, with or without loader workers and gradient accumulation."""
    full = train(make_cfg(synth, tmp_path / "full", accumulate=accumulate))
    assert full["final"]["epoch"] == 2

    # The same run through the CLI, with SIGTERM arriving during the 2nd training batch of epoch 2.
    cfg = make_cfg(synth, tmp_path / "cut", accumulate=accumulate)
    cfg.data.workers = workers
    cfg.save_yaml(tmp_path / "cut.yaml")
    on_training_forward(monkeypatch, lambda n, m, out: os.kill(os.getpid(), signal.SIGTERM) if n == 5 else None)
    code = main(["train", "--config", str(tmp_path / "cut.yaml")])
    assert code == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)  # stopped at the step boundary after batch 2
    # optimizer steps: every batch, or (accumulate 2) batch 2 and the end of each 3-batch epoch
    assert ckpt["global_step"] == {1: 3 + 2, 2: 2 + 1}[accumulate]
    assert load_checkpoint(tmp_path / "cut" / "last.prev.pt")["epoch"] == 1  # end of epoch 1

    monkeypatch.undo()
    torch.manual_seed(1234)  # resuming must not depend on the state of the process
    assert main(["train", "--config", str(tmp_path / "cut.yaml"), "--resume", "auto"]) == 0
    assert "best val top-1" in capsys.readouterr().out

    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert_same_state(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert (a["epoch"], a["step"], a["global_step"]) == (b["epoch"], b["step"], b["global_step"])
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")  # same loss, lr, accuracies per epoch


def test_case12_corrupt_last_checkpoint_is_named_and_resume_falls_back(synth, tmp_path, caplog, reference):
    """Case 12 (docs/reliability.md): an empty, random, cut or truncated last.pt is an error naming
    it; --resume auto warns and continues from last.pt.prev, redoing the lost epoch to the
    uninterrupted result; when every candidate is unreadable the CLI names them, exit 2."""
    run = tmp_path / "run"
    train(make_cfg(synth, run, epochs=1))
    train(make_cfg(synth, run, epochs=2), resume="auto")
    last = run / "last.pt"
    data = last.read_bytes()
    for damage in (b"", np.random.default_rng(0).bytes(len(data)), data[:-100], data[: len(data) // 3]):
        last.write_bytes(damage)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(last)
        assert str(e.value).startswith(f"{last}: checkpoint is "), str(e.value)
    last.write_bytes(data[:1000])  # truncated
    with caplog.at_level(logging.WARNING):
        result = train(make_cfg(synth, run, epochs=2), resume="auto")
    assert f"{last}: checkpoint is truncated or corrupt" in caplog.text
    # continued after epoch 1 (last.prev.pt): epoch 2 trained again, to the uninterrupted result
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert load_checkpoint(last)["epoch"] == 2
    assert_same_state(load_checkpoint(last)["model"], reference)

    # every candidate unreadable: the CLI names the files and exits 2
    (run / "last.prev.pt").write_bytes(b"garbage")
    last.write_bytes(b"")
    cfg = make_cfg(synth, run, epochs=4)
    cfg.save_yaml(tmp_path / "c.yaml")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--resume", "auto"]) == 2


def test_case11_crash_during_a_training_checkpoint_write(synth, tmp_path, reference, monkeypatch):
    """Case 11 (docs/reliability.md): torch.save dies half way through the epoch-2 checkpoint:
    last.pt stays epoch 1, nothing partial is left, and --resume auto redoes epoch 2 to the
    uninterrupted result."""
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1: last.pt and best.pt; the third is epoch 2's last.pt
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        train(make_cfg(synth, out))
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir() if "pt" in p.name) == ["best.pt", "last.pt"]
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    train(make_cfg(synth, out), resume="auto")
    assert_same_state(load_checkpoint(out / "last.pt")["model"], reference)


def test_case16_same_seed_same_parameters_whatever_the_worker_count(synth, tmp_path, reference):
    """Case 16 (docs/reliability.md): the same seed gives bit-identical parameters with 0 or 2
    loader workers; another seed differs."""
    cfg = make_cfg(synth, tmp_path / "workers")
    cfg.data.workers = 2
    train(cfg)
    assert_same_state(load_checkpoint(tmp_path / "workers" / "last.pt")["model"], reference)
    train(make_cfg(synth, tmp_path / "seed1", seed=1))
    assert not torch.equal(load_checkpoint(tmp_path / "seed1" / "last.pt")["model"]["fc.weight"],
                           reference["fc.weight"])


# ---------------------------------------------------------------------------- failures
def test_case9_nan_loss_stops_before_the_optimizer_step(synth, tmp_path, monkeypatch):
    """Case 9 (docs/reliability.md): a NaN loss mid-epoch stops the run before backward and the
    optimizer step: the weights are those the failing forward saw, last.pt is the untouched end
    of epoch 1."""
    run = tmp_path / "run"
    seen = {}

    def poison(n, module, output):
        if n == 5:  # epoch 2, batch 2
            seen["last.pt"] = (run / "last.pt").read_bytes()
            seen["params"] = {k: v.detach().clone() for k, v in module.state_dict().items() if "running" not in k}
            seen["model"] = module
            return output * float("nan")

    on_training_forward(monkeypatch, poison)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, step 2 of 3"):
        train(make_cfg(synth, run))
    # no optimizer step was taken with the NaN loss...
    after = {k: v for k, v in seen["model"].state_dict().items() if "running" not in k}
    assert_same_state(seen["params"], after)
    # ...and the last checkpoint is the untouched, loadable end of epoch 1
    assert (run / "last.pt").read_bytes() == seen["last.pt"]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert [p.name for p in run.iterdir() if ".tmp" in p.name] == []


def test_case6_bad_videos_are_counted_and_stop_the_run_over_the_limit(synth, tmp_path, capsys, caplog):
    """Case 6 (docs/reliability.md): unreadable training videos are skipped, named in warnings and
    counted; over data.max_bad_fraction the epoch ends with one error line (exit 1) and is not
    recorded as done."""
    root = tmp_path / "data"
    shutil.copytree(synth, root)
    train_ids = [e["id"] for e in json.loads((root / "something-something-v2-train.json").read_text())]
    (root / "20bn-something-something-v2" / f"{train_ids[0]}.webm").write_bytes(b"not a video")

    # one bad file of 12: each epoch requests it once and takes its neighbour instead
    result = train(make_cfg(root, tmp_path / "ok", epochs=1).apply_overrides(["data.max_bad_fraction=0.5"]))
    assert result["final"]["num_skipped"] == 1
    assert json.loads((tmp_path / "ok" / "metrics.jsonl").read_text())["num_skipped"] == 1

    bad = root / "20bn-something-something-v2" / f"{train_ids[0]}.webm"
    cfg = make_cfg(root, tmp_path / "strict", epochs=1).apply_overrides(["data.max_bad_fraction=0.05"])
    with caplog.at_level(logging.WARNING):
        with pytest.raises(TooManyBadSamples, match=r"epoch 1: 1 unreadable videos were skipped for 12 samples "
                                                    r"\(8.33% > max_bad_fraction 5.00%\).*gdn check-data"):
            train(cfg)
    assert str(bad) in caplog.text  # the warning names the file
    assert not (tmp_path / "strict" / "last.pt").exists()  # the epoch is not recorded as done
    cfg.save_yaml(tmp_path / "strict.yaml")
    assert main(["train", "--config", str(tmp_path / "strict.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gdn train: error: epoch 1: 1 unreadable videos")


# ---------------------------------------------------------------------------- CLI
def test_cli_end_to_end_writes_the_run_folder(synth, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "tsn_tiny", "--dataset", "ssv2", "--data-root", str(synth),
                 "--frames", "4", "--size", "32", "--epochs", "2", "--batch-size", "4", "--lr", "0.01",
                 "--workers", "0", "--device", "cpu", "--out", str(out),
                 "--set", "train.base_batch_size=4", "--set", "train.eval_every=2"])
    assert code == 0
    table = capsys.readouterr().out
    assert "best val top-1" in table and str(out / "best.pt") in table
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt", "config.yaml", "curves.png", "frame-counts-ssv2.json", "last.prev.pt", "last.pt",
        "metrics.jsonl"]
    cfg = Config.from_yaml(out / "config.yaml")
    assert (cfg.model.name, cfg.data.frames, cfg.train.lr, cfg.train.base_batch_size) == ("tsn_tiny", 4, 0.01, 4)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["val_top1"] is None and records[1]["val_top1"] is not None  # eval_every=2
    assert set(records[1]) >= {"loss", "lr", "train_top1", "val_top1", "val_top5", "clips_per_s", "time",
                               "num_skipped"}
    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "last.pt")
    assert best["epoch"] == 2 and best["best_top1"] == records[1]["val_top1"]
    assert last["config"] == cfg.to_dict() == yaml.safe_load((out / "config.yaml").read_text())
    assert last["classes"] == sorted(last["classes"]) and len(last["classes"]) == 4
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- recipe pieces
def test_lr_schedule_values():
    cfg = Config().apply_overrides(["train.epochs=40", "train.warmup_epochs=2"])
    assert lr_factor(cfg, 0.0) == 0.0 and lr_factor(cfg, 1.0) == 0.5  # linear warm-up
    assert [lr_factor(cfg, e) for e in (2.0, 19.99)] == [1.0, 1.0]
    assert lr_factor(cfg, 20.0) == pytest.approx(0.1) and lr_factor(cfg, 30.0) == pytest.approx(0.01)
    cfg.apply_overrides(["train.schedule=cosine"])
    assert lr_factor(cfg, 2.0) == 1.0 and lr_factor(cfg, 21.0) == pytest.approx(0.5)
    assert lr_factor(cfg, 40.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(cfg, 11.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 9.5 / 38)))


def test_no_weight_decay_on_bn_and_biases_and_fc_lr_mult():
    model = T.create_model("tsn_tiny", num_classes=5)
    groups = param_groups(model, weight_decay=5e-4, fc_lr_mult=5.0)
    by_param = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_param[id(p)]
        assert g["weight_decay"] == (5e-4 if p.ndim > 1 else 0.0), name
        assert g["lr_mult"] == (5.0 if name.startswith("fc.") else 1.0), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_partial_bn_freezes_all_but_the_first():
    model = T.create_model("tsn_tiny", num_classes=3)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    frozen = partial_bn(model)
    assert frozen == bns[1:]
    before = [bn.running_mean.clone() for bn in bns]
    train_mode(model, frozen)
    model(torch.randn(2, 3, 2, 32, 32))
    assert not torch.equal(bns[0].running_mean, before[0])  # the first BN still adapts
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(bns[1:], before[1:]))
    assert all(not p.requires_grad for bn in bns[1:] for p in bn.parameters())
    names = {n for g in param_groups(model, 5e-4, 1.0) for n, p in model.named_parameters()
             if any(p is q for q in g["params"])}
    assert "bn1.weight" in names and "layer1.0.bn1.weight" not in names


# ---------------------------------------------------------------------------- fine-tuning
def test_init_from_checkpoint_and_reset_head(synth, tmp_path, capsys):
    source = train(make_cfg(synth, tmp_path / "source", epochs=1))
    weights = load_checkpoint(source["last"])["model"]

    # lr 0: after an epoch the weights are still exactly the ones fine-tuning started from
    cfg = make_cfg(synth, tmp_path / "tuned", epochs=1, lr=0.0)
    cfg.apply_overrides([f"model.init_from='{source['last']}'"])
    tuned = train(cfg)["model"].state_dict()
    for k, v in weights.items():
        if "running" not in k and "num_batches" not in k:  # BN statistics move in train mode
            assert torch.equal(tuned[k], v), k

    # another class count: refused with the mismatched keys unless the head is reset
    other = tmp_path / "other"
    generate(other, format="ssv2", classes=1, train_per_class=6, val_per_class=1, test_per_class=1,
             height=32, width=32, min_frames=8, max_frames=10, workers=1, overwrite=True)
    args = ["train", "--model", "gdn_tiny", "--dataset", "ssv2", "--data-root", str(other), "--frames", "4",
            "--size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu",
            "--init-from", source["last"], "--out", str(tmp_path / "two")]
    assert main(args) == 2
    assert "fc.weight" in capsys.readouterr().err
    assert main(args + ["--reset-head", "--out", str(tmp_path / "three")]) == 0
    state = load_checkpoint(tmp_path / "three" / "last.pt")["model"]
    assert state["fc.weight"].shape[0] == 2


# ---------------------------------------------------------------------------- starting a run
def test_bad_model_option_fails_before_any_data_is_read(tmp_path, capsys):
    """A typo in model.options names the option and the valid ones, before data is opened: the
    data root here does not even exist, and nothing is written."""
    out = tmp_path / "run"
    code = main(["train", "--model", "gdn_tiny", "--data-root", str(tmp_path / "no-such-data"), "--out", str(out),
                 "--set", "model.options.r_sst=0.3"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.options.r_sst" in err[0] and "did you mean 'r_st'" in err[0]
    assert "r_s" in err[0] and "dropout" in err[0]  # the valid options are listed
    assert not out.exists()


def test_set_takes_several_overrides_and_flag_errors_name_the_flag(capsys):
    from gdn.cli import build_parser
    from gdn.commands.train import build_config

    args = build_parser("train").parse_args(["train", "--set", "train.lr=0.05", "train.epochs=7", "--frames", "4"])
    cfg = build_config(args)
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.frames) == (0.05, 7, 4)
    assert main(["train", "--model", "gdn_r5"]) == 2
    assert "--model gdn_r5: model.name='gdn_r5' is not a known model (did you mean gdn_r50" in capsys.readouterr().err


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(synth, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = make_cfg(synth, out, epochs=1)
    cfg.save_yaml(tmp_path / "run.yaml")
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 0
    before = (out / "last.pt").read_bytes(), (out / "metrics.jsonl").read_text()
    capsys.readouterr()

    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--resume auto" in err and "--overwrite" in err
    assert ((out / "last.pt").read_bytes(), (out / "metrics.jsonl").read_text()) == before  # untouched

    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--overwrite"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # a fresh run, not appended
    assert not (out / "last.prev.pt").exists() or load_checkpoint(out / "last.prev.pt")["epoch"] == 0


def test_a_failed_start_removes_what_it_created(synth, tmp_path, capsys):
    """Weights that do not fit fail the start; the run folder it created (config, frame-count
    cache) is removed, and a folder that existed keeps exactly what it had."""
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv9.weight": torch.zeros(3)}, wrong)
    args = ["--model", "gdn_tiny", "--dataset", "ssv2", "--data-root", str(synth), "--frames", "4", "--size", "32",
            "--workers", "0", "--device", "cpu", "--init-from", str(wrong)]
    out = tmp_path / "new"
    assert main(["train", *args, "--out", str(out)]) == 2
    assert "wrong.pt" in capsys.readouterr().err
    assert not out.exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["train", *args, "--out", str(mine)]) == 2
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_loader_workers_ignore_ctrl_c():
    """Ctrl-C reaches every process of the terminal's group; the workers must leave the stop to
    the main process (a checkpoint at the next step) instead of dying under it."""
    from torch.utils.data import DataLoader

    from gdn.data.loader import init_worker

    class Handlers(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with T.StopRequest().installed() as stop:  # the training loop's handlers are what the workers inherit
        assert signal.getsignal(signal.SIGINT) is stop and signal.getsignal(signal.SIGTERM) is stop
        got = list(DataLoader(Handlers(), batch_size=None, num_workers=1, worker_init_fn=init_worker))
    assert got == [[True, True], [True, True]]
    # restored here to what they were (a shell starts a background job with SIGINT ignored)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_two_ctrl_c_to_the_whole_process_group_end_with_one_line_and_a_checkpoint(synth, tmp_path):
    """The terminal's Ctrl-C goes to the trainer and its loader workers; pressed twice 0.3 s
    apart, the run ends with exit 130, one line on stderr and a loadable last checkpoint."""
    import subprocess
    import sys
    import time

    cfg = make_cfg(synth, tmp_path / "run", epochs=50)
    cfg.data.workers = 2
    cfg.save_yaml(tmp_path / "run.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "gdn", "train", "--config", str(tmp_path / "run.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    while proc.poll() is None:  # the second press, and more while it exits: none may cost a traceback
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if not ln[:2].isdigit()]  # log lines start with the time
    assert len(lines) == 1 and lines[0].startswith("gdn train: stopped: training interrupted"), err
    assert "Traceback" not in err
    assert err.count("SIGINT received") == 1
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] >= 1


def test_a_second_ctrl_c_before_the_stop_checkpoint_keeps_the_previous_one(synth, tmp_path, monkeypatch, capsys):
    cfg = make_cfg(synth, tmp_path / "run", epochs=3)
    cfg.save_yaml(tmp_path / "run.yaml")

    def twice(n, module, output):
        if n == 5:  # epoch 2, second batch: the first asks for a stop, the second comes before it
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    on_training_forward(monkeypatch, twice)
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gdn train: stopped: training interrupted at once by a second Ctrl-C; the last checkpoint "
                   f"{tmp_path / 'run' / 'last.pt'} is as it was, continue with --resume auto"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1  # the end of epoch 1, intact
