"""Speed and memory of named models side by side, in one process (`gdn bench`).

For every model (built with `gdn.create_model` only) and mode (eager, and compiled with
`compile=True`) it measures:

- training clips/s: one step of forward, cross-entropy backward and SGD update on a batch;
- inference clips/s: a forward pass on a batch in eval mode (BatchNorm folded with
  `fold_bn=True`, see `gdn.models.fold`);
- on CPU, the latency of one clip in eval mode (ms);
- peak memory of the training step (and inference): on CUDA `torch.cuda.max_memory_allocated`
  above what was allocated before; on CPU the rise of the resident set's high-water mark
  (`VmHWM` in /proc/self/status, reset through /proc/self/clear_refs before each step) above the
  resident set before it. The CPU figure counts pages the process touched anew, so memory the
  allocator kept from an earlier step and reused is not counted: read it as a lower bound.

Timing: warm-up passes first; then `repeats` rounds, each running every model once in turn
(so background load falls on all models alike); the median of the rounds is reported (and the
minimum latency, the least disturbed figure on a shared machine). CUDA times come from CUDA
events, with bf16 autocast and channels-last activations. Every figure is also reported as a
ratio to the baseline model (`tsn_*` by default) measured in the same run and mode.
"""

from __future__ import annotations

import copy
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gdn.models import create_model, list_models
from gdn.models.fast import compile_for_inference, to_channels_last
from gdn.models.fold import fold_bn as fold_batchnorm

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    """What to measure. `batch` is the training and inference batch (clips)."""

    models: list[str] = field(default_factory=lambda: ["gdn_r50", "tsn_r50", "tsm_r50", "r3d_r50"])
    device: str = "cpu"
    frames: int = 8
    size: int = 224
    batch: int = 8
    repeats: int = 5
    warmup: int = 1
    compile: bool = False
    fold_bn: bool = False
    channels_last: bool | None = None  # None: on for CUDA, off for CPU (see docs/benchmarks.md)
    train: bool = True
    num_classes: int = 174
    baseline: str | None = None  # default: the first tsn_* model, else the first model

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in list_models()]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but PyTorch sees no CUDA device; use --device cpu")
        if self.baseline is None:
            self.baseline = next((m for m in self.models if m.startswith("tsn_")), self.models[0])
        if self.baseline not in self.models:
            raise ValueError(f"baseline '{self.baseline}' is not among the models {', '.join(self.models)}")
        if self.channels_last is None:
            self.channels_last = self.device.startswith("cuda")


@dataclass
class BenchResult:
    """One row: a model in one mode. Throughputs in clips/s, times in ms, memory in MiB."""

    model: str
    mode: str  # "eager" or "compiled"
    device: str
    frames: int
    size: int
    batch: int
    params_m: float
    train_clips_s: float | None
    infer_clips_s: float
    latency_ms: float | None  # one clip, CPU only
    latency_ms_min: float | None
    peak_mem_mib: float | None
    mem_method: str
    train_ratio: float | None = None  # to the baseline in the same run and mode
    infer_ratio: float | None = None
    latency_ratio: float | None = None  # latency / baseline latency (lower is faster)
    baseline: str = ""
    repeats: int = 0
    threads: int = 0
    fold_bn: bool = False
    channels_last: bool = False


class _Timer:
    """Wall time on CPU, CUDA events on GPU; `measure(fn)` returns seconds."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def measure(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return begin.elapsed_time(end) / 1000


class _PeakMemory:
    """Peak memory of a callable above the memory in use before it (MiB)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.method = "cuda max_memory_allocated"
        elif os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK):
            self.method = "peak RSS rise (VmHWM after clear_refs)"
        else:
            self.method = "unavailable"

    def measure(self, fn: Callable[[], object]) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - before) / 2**20
        if self.method == "unavailable":
            fn()
            return None
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _proc_status_kib("VmRSS")
        fn()
        return (_proc_status_kib("VmHWM") - before) / 1024


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} line")


@dataclass
class _Entry:
    """A model prepared for one mode: the callables the rounds time."""

    name: str
    mode: str
    params: int
    infer: Callable[[], object]
    latency: Callable[[], object] | None
    train: Callable[[], object] | None
    times: dict[str, list[float]] = field(default_factory=lambda: {"infer": [], "latency": [], "train": []})
    peak_mem_mib: float | None = None


def _prepare(name: str, mode: str, cfg: BenchConfig, device: torch.device) -> _Entry:
    torch.manual_seed(0)
    model = create_model(name, num_classes=cfg.num_classes).to(device)
    if cfg.channels_last:
        to_channels_last(model)
    params = sum(p.numel() for p in model.parameters())
    cuda = device.type == "cuda"
    clips = torch.randn(cfg.batch, 3, cfg.frames, cfg.size, cfg.size, device=device)
    one_clip = clips[:1].clone()
    labels = torch.randint(0, cfg.num_classes, (cfg.batch,), device=device)

    eval_model = fold_batchnorm(model) if cfg.fold_bn else _eval_copy(model)
    train_model = model.train()
    if mode == "compiled":
        eval_model = compile_for_inference(eval_model)
        train_model = torch.compile(train_model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def infer(x: torch.Tensor = clips) -> None:
        with torch.inference_mode(), autocast:
            eval_model(x)

    def train_step() -> None:
        with autocast:
            loss = F.cross_entropy(train_model(clips), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _Entry(
        name, mode, params, infer,
        latency=None if cuda else (lambda: infer(one_clip)),
        train=train_step if cfg.train else None,
    )


def _eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()


def run_bench(cfg: BenchConfig) -> list[BenchResult]:
    """Measure every model of `cfg` in every mode; rows in the order models x modes."""
    # Dynamo keeps its compiled graphs per code object, and every model here runs the same
    # `VideoResNet.forward`: three models, each compiled for training, inference and one-clip
    # latency, pass dynamo's default limit of 8 graphs, after which it silently runs the rest
    # eagerly (a "compiled" row that was not). Room for all of them, and an error if not.
    graphs = 4 * len(cfg.models)
    with torch._dynamo.config.patch(recompile_limit=max(torch._dynamo.config.recompile_limit, graphs),
                                    fail_on_recompile_limit_hit=True):
        return _run_bench(cfg)


def _run_bench(cfg: BenchConfig) -> list[BenchResult]:
    device = torch.device(cfg.device)
    modes = ["eager", "compiled"] if cfg.compile else ["eager"]
    timer, memory = _Timer(device), _PeakMemory(device)
    entries = [_prepare(name, mode, cfg, device) for name in cfg.models for mode in modes]
    log.info("bench: %d model(s) x %s on %s, %d thread(s); warming up", len(cfg.models), "+".join(modes),
             device, torch.get_num_threads())
    for e in entries:
        for _ in range(max(cfg.warmup, 1)):  # compiles here in compiled mode
            e.infer()
            if e.latency:
                e.latency()
            if e.train:
                e.train()
        peaks = [memory.measure(fn) for fn in (e.train, e.infer) if fn is not None]
        e.peak_mem_mib = None if None in peaks else max(peaks)
    show = sys.stderr.isatty()
    for _ in tqdm(range(cfg.repeats), desc="bench rounds", disable=not show):
        for e in entries:  # interleaved: each round runs every model once
            e.times["infer"].append(timer.measure(e.infer))
            if e.latency:
                e.times["latency"].append(timer.measure(e.latency))
            if e.train:
                e.times["train"].append(timer.measure(e.train))
    return _results(entries, cfg, memory.method)


def _results(entries: list[_Entry], cfg: BenchConfig, mem_method: str) -> list[BenchResult]:
    rows = []
    for e in entries:
        med = {k: statistics.median(v) if v else None for k, v in e.times.items()}
        rows.append(BenchResult(
            model=e.name, mode=e.mode, device=cfg.device, frames=cfg.frames, size=cfg.size, batch=cfg.batch,
            params_m=round(e.params / 1e6, 3),
            train_clips_s=cfg.batch / med["train"] if med["train"] else None,
            infer_clips_s=cfg.batch / med["infer"],
            latency_ms=med["latency"] * 1e3 if med["latency"] else None,
            latency_ms_min=min(e.times["latency"]) * 1e3 if e.times["latency"] else None,
            peak_mem_mib=e.peak_mem_mib, mem_method=mem_method, baseline=cfg.baseline or "",
            repeats=cfg.repeats, threads=torch.get_num_threads(), fold_bn=cfg.fold_bn,
            channels_last=bool(cfg.channels_last),
        ))
    for mode in {r.mode for r in rows}:
        base = next(r for r in rows if r.model == cfg.baseline and r.mode == mode)
        for r in (r for r in rows if r.mode == mode):
            r.infer_ratio = r.infer_clips_s / base.infer_clips_s
            r.train_ratio = r.train_clips_s / base.train_clips_s if r.train_clips_s else None
            r.latency_ratio = r.latency_ms / base.latency_ms if r.latency_ms else None
    return rows


def format_table(rows: list[BenchResult]) -> str:
    """The rows as a fixed-width text table (ratios to the baseline in parentheses)."""

    def num(value: float | None, ratio: float | None, fmt: str) -> str:
        if value is None:
            return "-"
        return f"{value:{fmt}} ({ratio:.2f})" if ratio is not None else f"{value:{fmt}}"

    head = f"{'model':<16}{'mode':<10}{'params M':>9}{'train clips/s':>20}{'infer clips/s':>20}" \
           f"{'latency ms':>20}{'peak MiB':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.model:<16}{r.mode:<10}{r.params_m:>9.2f}{num(r.train_clips_s, r.train_ratio, '.2f'):>20}"
            f"{num(r.infer_clips_s, r.infer_ratio, '.2f'):>20}{num(r.latency_ms, r.latency_ratio, '.1f'):>20}"
            f"{'-' if r.peak_mem_mib is None else f'{r.peak_mem_mib:.0f}':>10}"
        )
    if rows:
        r = rows[0]
        lines.append(
            f"\n{r.device}, {r.threads} thread(s), {r.frames}x{r.size}, batch {r.batch}, median of {r.repeats} "
            f"interleaved rounds; ratios to {r.baseline} in the same mode (latency: lower is faster); "
            f"BN folded: {r.fold_bn}; channels-last: {r.channels_last}; memory: {r.mem_method}"
        )
    return "\n".join(lines)


def results_as_dicts(rows: list[BenchResult]) -> list[dict]:
    return [asdict(r) for r in rows]
