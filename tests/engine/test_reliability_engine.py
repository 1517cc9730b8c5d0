"""Reliability of training, checkpoints and distributed evaluation under faults
(docs/reliability.md, cases 6, 8-16).

Runs are tiny: tsn_tiny on 6 JPEG-folder videos of 16x16 pixels, 2 frames, batch 2, on the CPU.
Faults are injected in-process (a forward hook that returns NaN or sends SIGTERM, a torch.save
that dies half way) or by killing a process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gdn.engine.train as train_module
from gdn.cli import main
from gdn.config import Config, ConfigError
from gdn.data.datasets import TooManyBadSamples
from gdn.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gdn.engine.train import NonFiniteLossError, TrainingInterrupted, train
from gdn.models.weights import WeightsMismatchError, load_weights
from gdn.models import create_model, list_models

torch.set_num_threads(1)

CLASSES = ["Holding something", "Pushing something from left to right",
           "Pushing something from right to left"]
FRAMES_DIR = "20bn-something-something-v1"
SRC = str(Path(__file__).resolve().parents[2] / "src")


# ----------------------------------------------------------------------------- a tiny run
def make_ssv1(root: Path, n_videos: int = 6, n_frames: int = 4) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n_videos):
        folder = root / FRAMES_DIR / str(100 + i)
        folder.mkdir(parents=True)
        for t in range(n_frames):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{t + 1:05d}.jpg")
        lines.append(f"{100 + i};{CLASSES[i % 3]}")
    (root / "something-something-v1-labels.csv").write_text("\n".join(CLASSES) + "\n")
    for split in ("train", "validation"):
        (root / f"something-something-v1-{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def tiny_config(root: Path, out: Path, epochs: int = 2, workers: int = 0, seed: int = 0) -> Config:
    cfg = Config()
    cfg.apply_overrides([
        "model.name=tsn_tiny", "model.dropout=0.5", "data.dataset=ssv1", f"data.root='{root}'",
        "data.frames=2", "data.size=16", "data.short_side=18", f"data.workers={workers}",
        f"train.epochs={epochs}", "train.batch_size=2", "train.base_batch_size=2", "train.lr=0.05",
        "train.lr_steps=[]", "train.amp=none", f"train.seed={seed}", f"out='{out}'", "device=cpu",
    ])
    return cfg


def params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Injector:
    """Wraps `create_model` in the training module: calls `action(n, model)` before the n-th
    training forward (1-based); `action` may return replacement logits."""

    def __init__(self, monkeypatch, action):
        self.calls, self.action, self.model = 0, action, None
        real = train_module.create_model

        def create(*args, **kwargs):
            self.model = real(*args, **kwargs)
            self.model.register_forward_hook(self._hook)
            return self.model

        monkeypatch.setattr(train_module, "create_model", create)

    def _hook(self, module, inputs, output):
        if not module.training:
            return None
        self.calls += 1
        return self.action(self.calls, module, output)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_ssv1(tmp_path_factory.mktemp("ssv1"))


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> dict:
    """An uninterrupted 2-epoch run (3 steps per epoch): its final parameters."""
    out = tmp_path_factory.mktemp("reference")
    train(tiny_config(data_root, out))
    return params(out / "last.pt")


# ----------------------------------------------------------------------------- case 6
def test_case6_too_many_bad_samples_stops_training_with_a_summary(tmp_path, capsys, caplog):
    root = make_ssv1(tmp_path / "data", n_videos=8)
    bad = [root / FRAMES_DIR / "101", root / FRAMES_DIR / "104", root / FRAMES_DIR / "106"]
    for folder in bad:
        for f in folder.iterdir():
            f.unlink()
    good = [f"{100 + i};{CLASSES[i % 3]}" for i in (0, 2, 3, 5, 7)]
    (root / "something-something-v1-validation.csv").write_text("\n".join(good) + "\n")
    cfg = tiny_config(root, tmp_path / "run", epochs=2)
    cfg.apply_overrides(["data.max_bad_fraction=0.1"])
    with pytest.raises(TooManyBadSamples) as e:
        train(cfg)
    # each bad folder is drawn once per epoch and skipped once (its successor is readable)
    assert str(e.value).startswith("epoch 1: 3 unreadable videos were skipped for 8 samples (37.50% > "
                                   "max_bad_fraction 10.00%)")
    assert "gdn check-data" in str(e.value)
    for folder in bad:  # the warnings name every bad file
        assert f"{folder}: contains no JPEG frames" in caplog.text
    assert not (tmp_path / "run" / "last.pt").exists()  # the epoch is not recorded as done
    # the command line: one error line, exit code 1
    cfg.save_yaml(tmp_path / "cfg.yaml")
    assert main(["train", "--config", str(tmp_path / "cfg.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gdn train: error: epoch 1: 3 unreadable videos")
    # within the allowed fraction the same data trains
    cfg.apply_overrides(["data.max_bad_fraction=0.5", "train.epochs=1"])
    assert train(cfg)["final"]["num_skipped"] == 3


# ----------------------------------------------------------------------------- case 8
def test_case8_config_errors_name_the_key_and_the_choices(tmp_path, capsys):
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


# ----------------------------------------------------------------------------- case 9
def test_case9_nan_loss_stops_before_the_step_and_keeps_the_checkpoint(tmp_path, data_root, monkeypatch):
    seen = {}

    def nan_at_epoch2_step2(n, model, logits):
        if n == 5:  # 3 steps per epoch: epoch 2, step 2
            seen["params"] = {k: v.clone() for k, v in model.state_dict().items()}
            return logits * float("nan")
        return None

    injector = Injector(monkeypatch, nan_at_epoch2_step2)
    saved = {}
    real_save = train_module.save_checkpoint

    def recording_save(path, state, **kw):
        real_save(path, state, **kw)
        saved[Path(path).name] = Path(path).read_bytes()

    monkeypatch.setattr(train_module, "save_checkpoint", recording_save)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, step 2 of 3"):
        train(tiny_config(data_root, out))
    assert injector.calls == 5
    # no optimizer step after the NaN forward: the weights are those it saw
    assert_same_params(seen["params"], injector.model.state_dict())
    assert all(torch.isfinite(v).all() for v in injector.model.state_dict().values() if v.is_floating_point())
    # the last checkpoint is the end of epoch 1, untouched, and loads
    assert (out / "last.pt").read_bytes() == saved["last.pt"]
    ckpt = load_checkpoint(out / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]


# ----------------------------------------------------------------------------- case 10
def test_case10_sigterm_checkpoints_at_step_boundary_and_resume_equals_uninterrupted(
        tmp_path, data_root, reference, monkeypatch, capsys):
    def sigterm_in_epoch2_step1(n, model, logits):
        if n == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return None

    injector = Injector(monkeypatch, sigterm_in_epoch2_step1)
    cfg = tiny_config(data_root, tmp_path / "run")
    cfg.save_yaml(tmp_path / "cfg.yaml")
    code = main(["train", "--config", str(tmp_path / "cfg.yaml")])
    assert code == 128 + signal.SIGTERM  # non-zero: 143, as a shell reports SIGTERM
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    assert injector.calls == 4  # stopped right after the step in which the signal arrived
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (1, 1, 4)
    assert load_checkpoint(tmp_path / "run" / "last.prev.pt")["epoch"] == 1  # end of epoch 1 kept
    monkeypatch.undo()

    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--resume", "auto"]) == 0
    final = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (final["epoch"], final["global_step"]) == (2, 6)
    assert_same_params(final["model"], reference)


# ----------------------------------------------------------------------------- case 11
def test_case11_crash_during_a_training_checkpoint_write(tmp_path, data_root, reference, monkeypatch):
    """torch.save dies half way through the epoch-2 checkpoint: last.pt stays epoch 1, nothing
    partial is left, and --resume auto redoes epoch 2 to the uninterrupted result."""
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
        train(tiny_config(data_root, out))
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir() if "pt" in p.name) == ["best.pt", "last.pt"]
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    train(tiny_config(data_root, out), resume="auto")
    assert_same_params(params(out / "last.pt"), reference)


def test_case11_writer_killed_mid_write_leaves_previous_and_next_write_cleans_up(tmp_path):
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


# ----------------------------------------------------------------------------- case 12
def test_case12_corrupt_last_checkpoint_named_and_resume_falls_back(tmp_path, data_root, reference):
    out = tmp_path / "run"
    train(tiny_config(data_root, out, epochs=1))
    train(tiny_config(data_root, out, epochs=2), resume="auto")
    assert load_checkpoint(out / "last.prev.pt")["epoch"] == 1
    last = out / "last.pt"
    data = last.read_bytes()
    for damage in (b"", np.random.default_rng(0).bytes(len(data)), data[:-100], data[: len(data) // 3]):
        last.write_bytes(damage)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(last)
        assert str(e.value).startswith(f"{last}: checkpoint is "), str(e.value)
    # --resume auto (truncated last.pt): epoch 2 is redone from last.prev.pt, to the same result
    result = train(tiny_config(data_root, out, epochs=2), resume="auto")
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert load_checkpoint(last)["epoch"] == 2
    assert_same_params(params(last), reference)


# ----------------------------------------------------------------------------- case 13
class Payload:
    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_case13_malicious_pickle_refused_by_every_command_own_checkpoints_load_safely(
        tmp_path, data_root, capsys):
    out = tmp_path / "run"
    train(tiny_config(data_root, out, epochs=1))
    for name in ("last.pt", "best.pt"):  # the project's own files pass the safe loader as they are
        ckpt = torch.load(out / name, map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 1 and ckpt["classes"] == CLASSES
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    ckpt["metrics"] = Payload(marker)
    torch.save(ckpt, evil)
    with pytest.raises(CheckpointError, match=rf"{evil}: refused to load"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match=rf"{evil}: refused to load"):
        load_weights(create_model("tsn_tiny", num_classes=3), evil)
    for argv in (["test", str(evil)], ["predict", str(evil), str(data_root / FRAMES_DIR / "100")],
                 ["train", "--out", str(tmp_path / "r2"), "--resume", str(evil)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refused to load" in err[0], argv
    assert not marker.exists()


# ----------------------------------------------------------------------------- case 14
def test_case14_weights_for_another_architecture_list_every_mismatch(tmp_path):
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


# ----------------------------------------------------------------------------- case 15
DEATH_SCRIPT = """
import os, sys, time
sys.path.insert(0, {src!r})
import numpy as np, torch
from torch.utils.data import DataLoader, Dataset
torch.set_num_threads(1)
from gdn.engine import distributed as D
from gdn.engine.evaluate import evaluate

class Clips(Dataset):
    def __len__(self):
        return 5
    def __getitem__(self, i):
        return {{"clip": torch.full((3, 2, 4, 4), float(i)), "label": i % 3, "index": i}}

device = D.init_distributed("cpu", timeout_s=30)
rank = D.get_rank()
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(96, 3))
if rank == 1:
    os._exit(7)  # the worker dies (OOM killer, segfault) before sending its shard
loader = DataLoader(Clips(), batch_size=2, sampler=range(rank, 5, 2))
try:
    evaluate(model, loader, device, distributed=True)
except Exception as e:
    print("RANK0-ERROR", type(e).__name__, str(e).splitlines()[0][:200], flush=True)
    os._exit(3)
print("RANK0-FINISHED", flush=True)
"""


def test_case15_dead_worker_stops_the_run_with_an_error_not_a_hang(tmp_path):
    """Rank 1 dies; rank 0's gather in `evaluate` fails within the process-group timeout."""
    script = tmp_path / "run.py"
    script.write_text(DEATH_SCRIPT.format(src=SRC))
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        out0, _ = procs[0].communicate(timeout=150)  # the 30 s process-group timeout bounds it
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert procs[1].returncode == 7
    assert procs[0].returncode == 3, out0
    assert "RANK0-ERROR" in out0 and "RANK0-FINISHED" not in out0


# ----------------------------------------------------------------------------- case 16 (training side)
def test_case16_same_seed_same_parameters_whatever_the_worker_count(tmp_path, data_root, reference):
    train(tiny_config(data_root, tmp_path / "again"))
    assert_same_params(params(tmp_path / "again" / "last.pt"), reference)
    train(tiny_config(data_root, tmp_path / "workers", workers=2))
    assert_same_params(params(tmp_path / "workers" / "last.pt"), reference)
    train(tiny_config(data_root, tmp_path / "seed1", seed=1))
    other = params(tmp_path / "seed1" / "last.pt")
    assert not torch.equal(other["fc.weight"], reference["fc.weight"])
