"""The temporal building blocks of the video ResNets and the conv makers that choose them.

Layout: inside the backbone every feature map is a batch of frames, `(N*T, C, H, W)`, so
2D convolutions, BatchNorm and ReLU run on the best-tuned 2D kernels (as in TSN/TSM). The
modules made here receive the frame count `num_frames` as a second argument and reshape to
`(N, C, T, H, W)` only where they mix information over time.

A conv maker builds the 3x3 convolution of a residual block: any callable
`(in_planes, out_planes, stride) -> nn.Module`, such as a module class (`GDM`, `VideoConv3d`)
or a `functools.partial` of one with its hyperparameters. The module it returns carries its
own protocol, so the backbone, the ImageNet mapping and BatchNorm folding never need to know
its type:

- `forward(x, num_frames)`: frames `(N*T, C_in, H, W)` -> `(N*T, C_out, H/stride, W/stride)`;
- `init_from_2d(weight) -> list[str]`: take a 2D ImageNet kernel `(C_out, C_in, 3, 3)`
  (slice, inflate or copy it) and return the names of its own state entries left random by
  design (paper section 3.2);
- `fold_bn(scale, shift)`: absorb the per-output-channel affine map `y = scale * x + shift`
  of the BatchNorm that follows it, and fold any BatchNorm inside it (`gdn.models.fold`).

A maker may also carry `residual_shift(index) -> nn.Module | None`, building the module
`m(x, num_frames)` that block `index` (0-based, in its stage) applies to its residual branch
before conv1, or None for a block without one (TSM's shift, see `TSM`).
Makers are named in `CONV_MAKERS` so that configs and entrypoints can say `"gdm"`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from gdn.errors import GdnError
from gdn.models.fast import gdm_forward, temporal_shift
from gdn.models.fold import bn_affine, fold_into_conv


class ClipShapeError(GdnError, ValueError):
    """A clip whose frame count or size the model cannot take (I3D's temporal strides, ECO
    Full's inception blocks); the message says which ones it can."""


def to_video(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(N*T, C, H, W) -> (N, C, T, H, W), a view."""
    nt, c, h, w = x.shape
    return x.view(nt // num_frames, num_frames, c, h, w).transpose(1, 2)


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W); copies only if x is not frame-major in memory."""
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n * t, c, h, w)


def inflate_2d(weight: torch.Tensor, time: int) -> torch.Tensor:
    """I3D inflation: repeat a (O, I, kh, kw) kernel over time and divide by the length."""
    return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def split_channels(channels: int, r_st: float, r_s: float) -> tuple[int, int, int]:
    """Channel counts of the (spatio-temporal, spatial, temporal) groups of a GDM.

    Rounded so they always sum to `channels`; a group may be empty (r_st = 1 is R3D,
    r_s = 1 is R2D, r_st + r_s = 1 is the GST split).
    """
    if not (0.0 <= r_st <= 1.0 and 0.0 <= r_s <= 1.0 and r_st + r_s <= 1.0 + 1e-9):
        raise ValueError(f"GDM ratios need 0 <= r_st, r_s and r_st + r_s <= 1, got r_st={r_st}, r_s={r_s}")
    st = math.floor(channels * r_st + 0.5)  # round half up (Python's round() goes to even)
    s = min(math.floor(channels * r_s + 0.5), channels - st)
    return st, s, channels - st - s


class FrameConv2d(nn.Conv2d):
    """A per-frame convolution, no bias (TSN, TSM; the 1x1 and 1x3x3 convs of I3D): time is
    ignored. `kernel` 3 by default (the 3x3 of a block), 1 for the pointwise convs; `dilation`
    keeps the spatial size of a stage whose stride was removed (I3D's res5 in `i3d.py`)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, kernel: int = 3, dilation: int = 1):
        super().__init__(in_planes, out_planes, kernel, stride=stride, padding=dilation * (kernel // 2),
                         dilation=dilation, bias=False)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        return self._conv_forward(x, self.weight, self.bias)

    def init_from_2d(self, weight: torch.Tensor) -> list[str]:
        self.weight.data.copy_(weight)
        return []

    def fold_bn(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        fold_into_conv(self, scale, shift)


class VideoConv3d(nn.Conv3d):
    """A spatio-temporal convolution, kernel (kt, k, k), "same" padding, no bias (R3D; I3D's
    3x1x1 and 5x7x7 convs). With `stride_t` > 1 the output has T / stride_t frames (T a
    multiple of stride_t): the caller passes the new frame count on."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, kernel_t: int = 3, kernel: int = 3,
                 stride_t: int = 1):
        super().__init__(
            in_planes, out_planes, (kernel_t, kernel, kernel), stride=(stride_t, stride, stride),
            padding=(kernel_t // 2, kernel // 2, kernel // 2), bias=False,
        )

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        return to_frames(super().forward(to_video(x, num_frames)))

    def init_from_2d(self, weight: torch.Tensor) -> list[str]:
        self.weight.data.copy_(inflate_2d(weight, self.kernel_size[0]))
        return []

    def fold_bn(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        fold_into_conv(self, scale, shift)


class GDM(nn.Module):
    """Grouped Decomposed Module (paper section 2.2, Fig. 2a).

    The channels are split into three groups, in this order: a spatio-temporal group
    through a 3x3x3 conv (ratio r_st), a spatial group through a 1x3x3 conv (r_s) and a
    temporal group through a 3x1x1 conv (the rest). The outputs are concatenated in the same
    order. The spatial stride applies to every group; no bias (BatchNorm follows). With the
    default ratios the module holds 33/8 * C_in * C_out weights (Table 1).

    Parameters: `st.weight` (C_st', C_st, 3, 3, 3), `s.weight` (C_s', C_s, 3, 3),
    `t.weight` (C_t', C_t, 3, 1, 1); an empty group has no module (None).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, r_st: float = 0.25, r_s: float = 0.5):
        super().__init__()
        self.in_splits = split_channels(in_planes, r_st, r_s)
        self.out_splits = split_channels(out_planes, r_st, r_s)
        for cin, cout, group in zip(self.in_splits, self.out_splits, ("st", "s", "t")):
            if (cin == 0) != (cout == 0):
                raise ValueError(
                    f"GDM {in_planes}->{out_planes} with r_st={r_st}, r_s={r_s}: group '{group}' "
                    f"would map {cin} to {cout} channels; choose ratios that split both sides"
                )
        (i_st, i_s, i_t), (o_st, o_s, o_t) = self.in_splits, self.out_splits
        self.st = VideoConv3d(i_st, o_st, stride) if o_st else None
        self.s = nn.Conv2d(i_s, o_s, 3, stride=stride, padding=1, bias=False) if o_s else None
        self.t = VideoConv3d(i_t, o_t, stride, kernel_t=3, kernel=1) if o_t else None

    impl = "fused"  # "reference" runs forward_reference; the forms are in gdn.models.fast

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return gdm_forward(self, x, num_frames, self.impl)

    def forward_reference(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The definition: split, three convs, concatenate (the fast form is tested against it)."""
        x_st, x_s, x_t = torch.split(x, self.in_splits, dim=1)
        outs = []
        if self.st is not None:
            outs.append(self.st(x_st, num_frames))
        if self.s is not None:
            outs.append(self.s(x_s))
        if self.t is not None:
            outs.append(self.t(x_t, num_frames))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def init_from_2d(self, weight: torch.Tensor) -> list[str]:
        """Section 3.2: the spatial group takes its slice of the 2D kernel, the spatio-temporal
        group the same kind of slice inflated over time; the temporal group stays random."""
        (i_st, i_s, _), (o_st, o_s, _) = self.in_splits, self.out_splits
        if self.st is not None:
            self.st.init_from_2d(weight[:o_st, :i_st])
        if self.s is not None:
            self.s.weight.data.copy_(weight[o_st:o_st + o_s, i_st:i_st + i_s])
        return ["t.weight"] if self.t is not None else []

    def fold_bn(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Each group absorbs the slice of the affine map for its output channels."""
        start = 0
        for group in (self.st, self.s, self.t):  # output channels in this order
            if group is not None:
                end = start + group.out_channels
                fold_into_conv(group, scale[start:end], shift[start:end])
                start = end


class Conv2Plus1d(nn.Module):
    """P3D / R(2+1)D: a 1x3x3 spatial conv, BatchNorm and ReLU, then a 3x1x1 temporal conv.

    `mid_planes` defaults to `out_planes` (P3D-A, 12 * C_in * C_out weights as in Table 1);
    `mid_planes="matched"` uses the R(2+1)D width that matches a 3x3x3 conv's weight count.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, mid_planes: int | str | None = None):
        super().__init__()
        if mid_planes is None:
            mid_planes = out_planes
        elif mid_planes == "matched":
            mid_planes = math.floor(27 * in_planes * out_planes / (9 * in_planes + 3 * out_planes))
        self.spatial = nn.Conv2d(in_planes, int(mid_planes), 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(int(mid_planes))
        self.relu = nn.ReLU(inplace=True)
        self.temporal = VideoConv3d(int(mid_planes), out_planes, 1, kernel_t=3, kernel=1)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.temporal(self.relu(self.bn(self.spatial(x))), num_frames)

    def init_from_2d(self, weight: torch.Tensor) -> list[str]:
        self.spatial.weight.data.copy_(weight)  # mid_planes == out_planes; raises otherwise
        return ["temporal.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                "bn.num_batches_tracked"]

    def fold_bn(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """The middle BatchNorm folds into the spatial conv, the one after into the temporal."""
        if isinstance(self.bn, nn.BatchNorm2d):
            fold_into_conv(self.spatial, *bn_affine(self.bn))
            self.bn = nn.Identity()
        fold_into_conv(self.temporal, scale, shift)


class VideoMaxPool(nn.Module):
    """A 3D max-pool, `kernel` / `stride` / `padding` as (t, h, w), on frames `(N*T, C, H, W)`:
    `(N*T, C, H, W)` -> `(N*T', C, H', W')`. I3D's pools change the frame count (`i3d.py`)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int],
                 padding: tuple[int, int, int] = (0, 0, 0)):
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.kernel == (1, 1, 1) and self.stride == (1, 1, 1):
            return x
        return to_frames(F.max_pool3d(to_video(x, num_frames), self.kernel, self.stride, self.padding))


class NonLocal(nn.Module):
    """A non-local block, embedded Gaussian (Wang, Girshick, Gupta, He, CVPR 2018, section 3 and
    Fig. 2): every position of the clip attends to every position,

        y_i = sum_j softmax_j(theta(x_i) . phi(x_j)) g(x_j),    z = x + BN(W_z y),

    with theta, phi, g 1x1x1 convs to `inner` (half the) channels, the softmax over all T*H*W
    positions, W_z a 1x1x1 conv back to the channels. BN starts at zero (weight and bias), so the
    block starts as the identity and can be added to a pretrained network (section 4.1).
    `pool`: phi and g max-pooled 2x2 in space after their convs (the paper's subsampling, in
    MMAction2's order), a quarter of the pairs. `scale`: divide the affinities by sqrt(inner).

    Called as `m(x, num_frames)` on frames `(N*T, C, H, W)`, like a conv maker's module; usable
    after any residual block (`VideoResNet(nonlocal_blocks=...)`, `I3DResNet`).
    """

    def __init__(self, channels: int, inner: int | None = None, pool: bool = True, scale: bool = False):
        super().__init__()
        inner = inner or channels // 2
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.conv_out = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn_out = nn.BatchNorm2d(channels)
        self.pool, self.scale = pool, scale
        self.reset_parameters()

    starts_as_identity = True  # no 2D source: `weights.torchvision_filter` leaves it at its init

    def reset_parameters(self) -> None:
        """The paper's init: Gaussian (std 0.01) convs, zero biases, BN at zero (the identity)."""
        for conv in (self.theta, self.phi, self.g, self.conv_out):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn_out.weight)
        nn.init.zeros_(self.bn_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        nt, _, h, w = x.shape
        n, t = nt // num_frames, num_frames
        theta, phi, g = self.theta(x), self.phi(x), self.g(x)  # (N*T, C', H, W)
        if self.pool:
            phi, g = F.max_pool2d(phi, 2), F.max_pool2d(g, 2)  # (N*T, C', H/2, W/2)
        inner = theta.shape[1]
        # positions in (t, h, w) order: queries (N, THW, C'), keys (N, C', TH'W'), values (N, TH'W', C')
        q = theta.view(n, t, inner, h * w).permute(0, 1, 3, 2).reshape(n, t * h * w, inner)
        k = phi.view(n, t, inner, -1).permute(0, 2, 1, 3).reshape(n, inner, -1)
        v = g.view(n, t, inner, -1).permute(0, 1, 3, 2).reshape(n, -1, inner)
        affinity = q @ k  # (N, THW, TH'W')
        if self.scale:
            affinity = affinity / inner ** 0.5
        y = affinity.softmax(dim=-1) @ v  # (N, THW, C')
        y = y.view(n, t, h, w, inner).permute(0, 1, 4, 2, 3).reshape(nt, inner, h, w)
        return x + self.bn_out(self.conv_out(y))


class TemporalShift(nn.Module):
    """TSM (Lin et al. 2019): 1/fold_div of the channels moves one frame back in time, another
    1/fold_div one frame forward, zeros fill the ends; no parameters.

    Written with slices, padding and one concatenation (no slice assignment), so exported
    graphs keep the data dependency instead of tracing a constant.
    """

    def __init__(self, fold_div: int = 8):
        super().__init__()
        self.fold_div = fold_div

    impl = "fused"  # "reference" runs forward_reference; see gdn.models.fast.temporal_shift

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.impl == "reference":
            return self.forward_reference(x, num_frames)
        return temporal_shift(x, num_frames, self.fold_div)

    def forward_reference(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        nt, c, h, w = x.shape
        fold = c // self.fold_div
        v = x.view(nt // num_frames, num_frames, c, h, w)  # (N, T, C, H, W)
        # F.pad pads the last dimensions first: (w, w, h, h, c, c, t_before, t_after).
        back = F.pad(v[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # out[t] = x[t + 1]
        fwd = F.pad(v[:, :-1, fold:2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # out[t] = x[t - 1]
        return torch.cat([back, fwd, v[:, :, 2 * fold:]], dim=2).view(nt, c, h, w)


class TSM:
    """The conv maker of TSM (Lin et al. 2019): per-frame 3x3 convs (`FrameConv2d`), and a
    `TemporalShift` on the residual branch before conv1 (TSM's "blockres") of every `every`-th
    block of each stage, counting from the first.

    The shift is not part of the 3x3 conv, so the maker carries it as a hook the block asks
    for: `residual_shift(index)` builds the shift module of block `index`, or None (makers
    without the attribute get none). `every=2` is how the TSM repository and MMAction2 build
    ResNet-101 (`n_round = 2` in `make_temporal_shift` when layer3 has 23 or more blocks):
    blocks 0, 2, 4, ... of every stage.
    """

    def __init__(self, fold_div: int = 8, every: int = 1):
        if every < 1:
            raise ValueError(f"TSM(every={every}): shift every 1st, 2nd, ... block; every must be >= 1")
        self.fold_div = fold_div
        self.every = every

    def __call__(self, in_planes: int, out_planes: int, stride: int = 1) -> FrameConv2d:
        return FrameConv2d(in_planes, out_planes, stride)

    def residual_shift(self, index: int) -> TemporalShift | None:
        return TemporalShift(self.fold_div) if index % self.every == 0 else None

    def __repr__(self) -> str:
        return f"TSM(fold_div={self.fold_div}, every={self.every})"


Maker = Callable[[int, int, int], nn.Module]
"""A conv maker: `(in_planes, out_planes, stride) -> module`, see the module docstring."""

CONV_MAKERS: dict[str, Maker] = {
    "2d": FrameConv2d,
    "gdm": GDM,
    "gst": partial(GDM, r_st=0.25, r_s=0.75),  # a GDM without temporal group (section 2.3)
    "3d": VideoConv3d,
    "2plus1d": Conv2Plus1d,
    "shift": TSM(),
}
"""The conv makers by name, for configs and entrypoints (`conv_makers="gdm"`)."""


def conv_maker(maker: str | Maker) -> Maker:
    """The conv maker named `maker` (a key of `CONV_MAKERS`), or `maker` itself if callable."""
    if isinstance(maker, str):
        if maker not in CONV_MAKERS:
            raise ValueError(f"unknown conv maker '{maker}'; choose one of {', '.join(CONV_MAKERS)} or pass a callable")
        return CONV_MAKERS[maker]
    if not callable(maker):
        raise TypeError(f"a conv maker is a name or a callable (in_planes, out_planes, stride) -> nn.Module, "
                        f"got {type(maker).__name__}")
    return maker
