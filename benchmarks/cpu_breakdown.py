"""Where one clip's CPU time goes in frozen compiled models, by kind of work.

    python benchmarks/cpu_breakdown.py [--models tsn_r50,gdn_r50] [--frames 8] [--size 112]
                                       [--threads 2] [--rounds 6]

Each model is compiled as `gdn test --compile` compiles it (`compile_for_inference`: inductor
with frozen weights, so BatchNorm is folded and oneDNN weights are prepacked), then profiled on
one clip in eval mode, in rounds that run every model once in turn; medians over the rounds.
Categories (self time of the profiled ops, ms):

- "3x3 convs": the convolutions that are the block's 3x3 conv in TSN/TSM and the GDM's group
  convs in GDN (kernels 3x3, 3x3x3, 3x1x1), that is, what GDN changes;
- "shared convs": every other convolution (1x1, stem, downsampling; the in-place ones add the
  residual), identical in all the ResNet-50 family;
- "generated kernels": inductor's own code (pooling, ReLU / BatchNorm not folded into a conv,
  GDN's concatenations), "copies": `aten::copy_` (GDN's channel-slice inputs), "other".

The last lines compare the first two models: the ratio of their totals, and the ratio the
second would have if everything it does besides its 3x3 convs cost what the first model's does
(the "floor" of a GDM whose slices and concatenation were free). docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import collections
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from gdn.models import create_model
from gdn.models.fast import compile_for_inference

CATEGORIES = ("3x3 convs", "shared convs", "generated kernels", "copies", "other")
_CONV_OPS = ("mkldnn::_convolution_pointwise", "mkldnn::_convolution_pointwise_")
_BLOCK_KERNELS = ((3, 3), (3, 3, 3), (3, 1, 1))


def categorize(event) -> str | None:
    """The category of one profiler row (grouped by input shape), None for wrappers."""
    if event.key in _CONV_OPS:
        # out-of-place: (input, weight, ...); in place (residual sum): (other, input, weight, ...)
        weight = event.input_shapes[1] if event.key == _CONV_OPS[0] else event.input_shapes[2]
        in_place = event.key == _CONV_OPS[1]
        return "3x3 convs" if tuple(weight[2:]) in _BLOCK_KERNELS and not in_place else "shared convs"
    if event.key == "aten::copy_":
        return "copies"
    if "CompiledFxGraph" in event.key:
        return "generated kernels"
    if event.key.startswith(("Torch-Compiled Region", "## ")):
        return None
    return "other"


def profile_once(model: torch.nn.Module, clip: torch.Tensor) -> dict[str, float]:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(clip)
    times = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.key_averages(group_by_input_shape=True):
        category = categorize(event)
        if category is not None:
            times[category] += event.self_cpu_time_total / 1e3
    times["total"] = next(e.cpu_time_total for e in prof.key_averages()
                          if e.key.startswith("Torch-Compiled Region")) / 1e3
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tsn_r50,gdn_r50")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    clip = torch.randn(1, 3, args.frames, args.size, args.size)
    with torch.no_grad():
        models = {}
        for name in names:
            torch.manual_seed(0)
            models[name] = compile_for_inference(create_model(name).eval())
            for _ in range(3):  # compile, then warm up
                models[name](clip)
        runs = {name: collections.defaultdict(list) for name in names}
        for _ in range(args.rounds):
            for name, model in models.items():
                for category, ms in profile_once(model, clip).items():
                    runs[name][category].append(ms)
    med = {name: {c: statistics.median(v) for c, v in runs[name].items()} for name in names}
    print(f"{args.frames}x{args.size}, one clip, {args.threads} thread(s), frozen compiled, "
          f"median of {args.rounds} rounds (ms)")
    print(f"{'category':20s}" + "".join(f"{n:>10s}" for n in names))
    for category in (*CATEGORIES, "total"):
        print(f"{category:20s}" + "".join(f"{med[n][category]:10.1f}" for n in names))
    if len(names) >= 2:
        base, other = med[names[0]], med[names[1]]
        floor = base["total"] - base["3x3 convs"] + other["3x3 convs"]
        print(f"\n{names[1]} / {names[0]}: total {other['total'] / base['total']:.3f}, "
              f"3x3 convs {other['3x3 convs'] / base['3x3 convs']:.3f}; "
              f"with all else as in {names[0]}: {floor / base['total']:.3f}")


if __name__ == "__main__":
    main()
