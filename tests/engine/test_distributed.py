"""Distributed training on the CPU: 2 gloo processes launched by torchrun, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gdn.config import Config
from gdn.data.synthetic import generate
from gdn.engine.checkpoint import load_checkpoint

torch.set_num_threads(1)

# Runs on every rank: trains from a config file, then saves this rank's final parameters
# (BatchNorm statistics are per process under DDP; rank 0's go into the checkpoint).
# DIE_AT=n makes rank 1 exit abruptly (as if killed) during its n-th training forward.
SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)
    import gdn.engine.train as T
    from gdn.config import Config

    die_at = int(os.environ.get("DIE_AT", "0"))
    if die_at and os.environ["RANK"] == "1":
        real = T.create_model
        def create(*args, **kwargs):
            model = real(*args, **kwargs)
            calls = [0]
            def hook(module, inputs, output):
                calls[0] += module.training
                if calls[0] == die_at:
                    os._exit(3)
            model.register_forward_hook(hook)
            return model
        T.create_model = create

    cfg = Config.from_yaml(sys.argv[1])
    result = T.train(cfg)
    params = {k: v.detach() for k, v in result["model"].named_parameters()}
    torch.save(params, os.path.join(cfg.out, f"rank{os.environ['RANK']}.pt"))
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    generate(root / "data", format="ssv2", classes=2, train_per_class=3, val_per_class=1, test_per_class=1,
             height=32, width=32, min_frames=8, max_frames=10, workers=1, overwrite=True)
    (root / "worker.py").write_text(SCRIPT)
    return root


def write_config(root, out, **train) -> str:
    cfg = Config.from_dict({
        "model": {"name": "gdn_tiny"},
        "data": {"dataset": "ssv2", "root": str(root / "data"), "frames": 4, "size": 32, "workers": 0},
        # 12 videos, 2 per batch and process: 3 steps per epoch on each rank
        # a constant lr through the one epoch (step schedule, no warm-up): its scaled value is checked
        "train": {"epochs": 1, "batch_size": 2, "base_batch_size": 4, "lr": 0.05, "schedule": "step",
                  "warmup_epochs": 0, "sync_bn": True, **train},
        "out": str(out), "device": "cpu",
    })
    path = root / f"{out.name}.yaml"
    cfg.save_yaml(path)
    return str(path)


def torchrun(root, config, env_extra=None, timeout=150):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GDN_DIST_TIMEOUT": "60", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(root / "worker.py"), config],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_two_processes_end_with_identical_parameters(setup):
    out = setup / "run"
    proc = torchrun(setup, write_config(setup, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    ckpt = load_checkpoint(out / "last.pt")  # written by rank 0 only, no "module." prefix
    for k in rank0:
        assert torch.equal(ckpt["model"][k], rank0[k]), k
    # the lr was scaled to the effective batch: 2 per process x 2 processes = base batch 4
    assert ckpt["metrics"]["lr"] == pytest.approx(0.05)  # 0.025 if the world size were ignored
    assert ckpt["global_step"] == 3


def test_a_dying_worker_ends_the_run_with_an_error(setup):
    out = setup / "dead"
    # bounded: subprocess.run raises TimeoutExpired (a failure) if the survivors hang
    proc = torchrun(setup, write_config(setup, out, epochs=2), env_extra={"DIE_AT": "2"}, timeout=150)
    assert proc.returncode != 0
    assert "exitcode  : 3" in proc.stderr or "exitcode: 3" in proc.stderr.replace(" ", "")
    assert not (out / "rank0.pt").exists() and not (out / "rank1.pt").exists()


SRC = str(Path(__file__).resolve().parents[2] / "src")
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
    """Case 15 (docs/reliability.md): rank 1 dies; rank 0's gather in `evaluate` fails within
    the process-group timeout instead of hanging."""
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
