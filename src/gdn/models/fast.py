"""Fast forms of the temporal modules: the same parameters, the same outputs, less time.

`GDM.forward` and `TemporalShift.forward` (layers.py) call `gdm_forward` and
`temporal_shift` here; `forward_reference` on each keeps the straightforward form that
defines the module, and tests/models/test_fast.py holds every form here to it (outputs and
gradients). Measurements and what did not help: docs/benchmarks.md.

GDM. On CPU, PyTorch sends a Conv3d whose batch is a single clip and whose feature map is
small to its unfold + GEMM kernel (`slow_conv3d`), 2-4x slower than oneDNN for the same
FLOPs: that alone cancelled GDN's FLOPs saving at one clip. The "fused" form calls oneDNN
directly for the two 3D groups (`torch.mkldnn_convolution`; plain conv3d on other devices,
other dtypes and while tracing for export or compile) and, without autograd, writes the
three groups into one preallocated output instead of concatenating them. The 2D-kernel form
(3x3x3 group as a Conv2d with three stacked temporal taps plus shifted adds) was measured
too and was slower than this one; it is not kept.

TSM. The reference shift pads two slices and concatenates; `temporal_shift` copies each
channel group once into an empty tensor of the input's memory format. Under torch.compile it
traces `temporal_shift_channels_last` instead: the same padding and concatenation on a
`(N, T, H, W, C)` view, which inductor turns into one vectorised copy kernel that writes the
channels-last buffer the next convolution reads (the other forms traced to masked scalar
gathers through an NCHW intermediate: compiled tsm_r50 went from 1.12-1.27x to 1.04-1.06x
TSN's latency on CPU, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

GDM_IMPLS = ("reference", "fused")


def _use_onednn(x: torch.Tensor) -> bool:
    """Call oneDNN directly: eager CPU fp32 only (exporters and inductor trace plain conv3d)."""
    # is_compiling() first: dynamo cannot trace the mkldnn queries, and a graph break there
    # split every compiled GDM in three graphs (and hit the recompile limit).
    return (
        not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """`conv(x)` for clips `(N, C, T, H, W)`, through oneDNN on CPU whatever the batch size."""
    if not _use_onednn(x):
        return F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    # A channels-last frame batch seen as clips is channels-last-3d: keep that layout.
    fmt = torch.channels_last_3d if x.stride(1) == 1 and x.shape[1] > 1 else torch.contiguous_format
    return torch.mkldnn_convolution(
        x.contiguous(memory_format=fmt), conv.weight, conv.bias,
        conv.padding, conv.stride, conv.dilation, conv.groups,
    )


def gdm_forward(gdm: nn.Module, x: torch.Tensor, num_frames: int, impl: str = "fused") -> torch.Tensor:
    """Run a `GDM` on frames `(N*T, C, H, W)` -> `(N*T, C', H', W')` with the chosen form."""
    if impl == "reference":
        return gdm.forward_reference(x, num_frames)
    if impl != "fused":
        raise ValueError(f"unknown GDM implementation '{impl}'; choose one of {', '.join(GDM_IMPLS)}")
    nt, _, h, w = x.shape
    n, t = nt // num_frames, num_frames
    x_st, x_s, x_t = torch.split(x, gdm.in_splits, dim=1)  # views, no copies
    ys = []  # each (N, T, C_group', H', W'), a view of the group's output
    if gdm.st is not None:
        ys.append(conv3d(x_st.view(n, t, *x_st.shape[1:]).transpose(1, 2), gdm.st).transpose(1, 2))
    if gdm.s is not None:
        y = gdm.s(x_s)
        ys.append(y.view(n, t, *y.shape[1:]))
    if gdm.t is not None:
        ys.append(conv3d(x_t.view(n, t, *x_t.shape[1:]).transpose(1, 2), gdm.t).transpose(1, 2))
    if len(ys) == 1:
        return ys[0].reshape(nt, *ys[0].shape[2:])
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        # Autograd through copies into slices would clone the gradient once per group, and
        # traced graphs (export, inductor) read better as one concatenation.
        return torch.cat(ys, dim=2).flatten(0, 1)
    h, w = ys[0].shape[-2:]
    fmt = torch.channels_last if x.stride(1) == 1 and x.shape[1] > 1 else torch.contiguous_format
    out = torch.empty(nt, sum(gdm.out_splits), h, w, dtype=ys[0].dtype, device=x.device, memory_format=fmt)
    out_clips = out.unflatten(0, (n, t))  # (N, T, C', H', W') view
    start = 0
    for y in ys:
        out_clips[:, :, start:start + y.shape[2]].copy_(y)
        start += y.shape[2]
    return out


def temporal_shift(x: torch.Tensor, num_frames: int, fold_div: int = 8) -> torch.Tensor:
    """TSM shift of frames `(N*T, C, H, W)`: channels [0, fold) take frame t+1, channels
    [fold, 2*fold) frame t-1 (zeros at the clip ends), the rest stay; fold = C // fold_div.

    One copy per channel group into an empty tensor (slice assignment: traced exporters see
    `slice_scatter` on the input, not a constant); under torch.compile (not export)
    `temporal_shift_channels_last`."""
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return temporal_shift_channels_last(x, num_frames, fold_div)
    nt, c, h, w = x.shape
    fold = c // fold_div
    out = torch.empty_like(x)
    v = x.unflatten(0, (nt // num_frames, num_frames))  # (N, T, C, H, W)
    o = out.unflatten(0, (nt // num_frames, num_frames))
    o[:, :-1, :fold] = v[:, 1:, :fold]
    o[:, -1:, :fold] = 0
    o[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    o[:, :1, fold:2 * fold] = 0
    o[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out


def temporal_shift_channels_last(x: torch.Tensor, num_frames: int, fold_div: int = 8) -> torch.Tensor:
    """`temporal_shift` written for compilers: the reference's padding and concatenation on a
    `(N, T, H, W, C)` view. The result is channels-last in memory whatever the input's layout,
    so eagerly it costs a transposing copy for NCHW inputs; traced, the concatenation along
    the innermost dimension compiles to contiguous copies."""
    nt, c, h, w = x.shape
    fold = c // fold_div
    v = x.permute(0, 2, 3, 1).unflatten(0, (nt // num_frames, num_frames))  # (N, T, H, W, C)
    # F.pad pads the last dimensions first: (c, c, w, w, h, h, t_before, t_after).
    back = F.pad(v[:, 1:, :, :, :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # out[t] = x[t + 1]
    fwd = F.pad(v[:, :-1, :, :, fold:2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # out[t] = x[t - 1]
    return torch.cat([back, fwd, v[..., 2 * fold:]], dim=-1).flatten(0, 1).permute(0, 3, 1, 2)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Channels-last weights, in place: `channels_last` for the 4-D kernels of 2D convs and
    `channels_last_3d` for the 5-D kernels of 3D convs (a channels-last frame batch seen as
    clips is channels-last-3d, so both kinds read their input without a transposing copy).
    Returns the model."""
    for p in model.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        elif p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def compile_for_inference(model: nn.Module) -> nn.Module:
    """`torch.compile` for evaluation and prediction: inductor with freezing, which treats the
    weights as constants (BatchNorm folded into the convs, oneDNN weight prepacking on CPU,
    conv + ReLU / residual-add fusion). Freezing applies when the model runs in eval mode
    under `torch.no_grad()` or `torch.inference_mode()`, as `gdn test` and `gdn predict` run
    it; the weights must not change afterwards. Speed on this project's CPU:
    docs/benchmarks.md."""
    return FrozenInference(model)


class FrozenInference(nn.Module):
    """A compiled model whose calls run with inductor's `freezing` on.

    `torch.compile(model, options={"freezing": True})` does not freeze: dynamo decides
    whether parameters become constants from the global `torch._inductor.config.freezing`
    while it traces, before the options reach inductor, so the graph still took the weights
    as inputs and no convolution was prepacked. Patching the flag around each call (rather
    than setting it globally) keeps it away from other compiled models, such as a training
    model that is validated under `no_grad` and whose weights do change.

    Shapes are static (`dynamic=False`): each batch size gets its own graph (an evaluation
    has two, the full and the last batch). With dynamo's default, a third size compiled a
    dynamic-batch graph in which frozen oneDNN 3D convs on a 1x1 feature map failed
    inductor's stride check (PyTorch 2.13)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.compiled = torch.compile(model, dynamic=False)
        self.shapes: set[tuple] = set()  # input shapes compiled so far

    def forward(self, *args, **kwargs):
        # Compilation happens inside the first call of each input shape, silently and for
        # a minute or more on a CPU: say so, and how long it took.
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        new = shapes not in self.shapes
        if new:
            log.info("compiling the model for inputs of shape %s (torch.compile, frozen weights): once per "
                     "shape, a minute or more on a CPU; it pays off over many clips", ", ".join(map(str, shapes)))
            start = time.perf_counter()
        with torch._inductor.config.patch(freezing=True):
            out = self.compiled(*args, **kwargs)
        if new:
            self.shapes.add(shapes)
            log.info("compiled and ran the first call of this shape in %.1f s", time.perf_counter() - start)
        return out
