"""Video ResNets with a TSN head: the GDN of the paper (section 2.3) and its baselines.

`VideoResNet` takes clips `(B, C, T, H, W)` and returns logits `(B, num_classes)`. It is a
ResNet whose every 3x3 conv is built by a conv maker chosen per stage (`layers.py`: any
callable `(in_planes, out_planes, stride) -> nn.Module`, or its name), followed by global
pooling per frame, dropout, a linear classifier and the average of the frame scores (TSN
consensus). Parameter names are torchvision's (`conv1`, `bn1`, `layer3.2.conv2`, `fc`), so
ImageNet weights map almost one to one (see `weights.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from gdn.models.layers import FrameConv2d, Maker, NonLocal, conv_maker


def _residual_shift(maker: Maker, index: int) -> nn.Module | None:
    """The module the maker asks block `index` of a stage to run on its residual branch before
    conv1 (TSM), if any."""
    build = getattr(maker, "residual_shift", None)
    return build(index) if build is not None else None


POINTWISE: Maker = partial(FrameConv2d, kernel=1)
"""The 1x1 conv of a bottleneck (`conv1`), per frame; I3D inflates some to 3x1x1 (`i3d.py`)."""


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); both come from the conv maker. `index`, the block's
    position in its stage, tells the maker's `residual_shift` which blocks shift;
    `nonlocal_block`, if given, runs on the block's output (`NonLocal`, the non-local paper's)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, maker: Maker,
                 index: int = 0, nonlocal_block: nn.Module | None = None):
        super().__init__()
        self.shift = _residual_shift(maker, index)
        self.conv1 = maker(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = maker(planes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.nonlocal_block = nonlocal_block

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = x if self.shift is None else self.shift(x, num_frames)
        out = self.relu(self.bn1(self.conv1(out, num_frames)))
        out = self.bn2(self.conv2(out, num_frames))
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(out + identity)
        return out if self.nonlocal_block is None else self.nonlocal_block(out, num_frames)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1, 3x3 (from the conv maker), 1x1 (ResNet-50/101); stride on the 3x3 as torchvision.

    TSM shifts the residual branch before conv1 (Fig. 2 of the TSM paper); the identity
    path keeps the unshifted input. `conv1_maker` builds the first 1x1 (I3D's 3x1x1 in its
    inflated blocks); `nonlocal_block`, if given, runs on the block's output.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, maker: Maker,
                 index: int = 0, nonlocal_block: nn.Module | None = None, conv1_maker: Maker = POINTWISE):
        super().__init__()
        self.shift = _residual_shift(maker, index)
        self.conv1 = conv1_maker(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = maker(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.nonlocal_block = nonlocal_block

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = x if self.shift is None else self.shift(x, num_frames)
        out = self.relu(self.bn1(self.conv1(out, num_frames)))
        out = self.relu(self.bn2(self.conv2(out, num_frames)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(out + identity)
        return out if self.nonlocal_block is None else self.nonlocal_block(out, num_frames)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class Stage(nn.ModuleList):
    """The blocks of one stage (`layerN`), called with the frame count."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, num_frames)
        return x


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_stage(block: str, inplanes: int, planes: int, n_blocks: int, stride: int, maker: Maker,
               nonlocal_at: Sequence[int] = (), nonlocal_maker: Callable[[int], nn.Module] = NonLocal,
               conv1_makers: Sequence[Maker] | None = None) -> Stage:
    """One stage (`layerN`) of `n_blocks` blocks: the first has the stride and, when the shape
    changes, a 1x1 shortcut with BatchNorm (torchvision's `downsample.0/1`). `nonlocal_at`: the
    indices of the blocks followed by a non-local block, `nonlocal_maker(channels)`;
    `conv1_makers`: one maker of the first 1x1 per block (bottlenecks only; I3D's inflation)."""
    block_cls = BLOCKS[block]
    out = planes * block_cls.expansion
    bad = [i for i in nonlocal_at if not 0 <= i < n_blocks]
    if bad:
        raise ValueError(f"non-local block after block {bad[0]} of a stage of {n_blocks} blocks")
    if conv1_makers is not None and (block_cls is not Bottleneck or len(conv1_makers) != n_blocks):
        raise ValueError(f"conv1_makers needs bottleneck blocks and one maker per block ({n_blocks})")
    stage = Stage()
    for j in range(n_blocks):
        downsample = None
        if j == 0 and (stride != 1 or inplanes != out):
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        extra = {} if conv1_makers is None else {"conv1_maker": conv1_makers[j]}
        stage.append(block_cls(inplanes if j == 0 else out, planes, stride if j == 0 else 1, downsample, maker, j,
                               nonlocal_block=nonlocal_maker(out) if j in nonlocal_at else None, **extra))
    return stage


def init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """Kaiming-normal convs, BatchNorm at (1, 0); non-local blocks at their own init (the
    identity); with `zero_init_residual` every residual branch starts at zero (last BN = 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, NonLocal):
            m.reset_parameters()
        elif zero_init_residual and isinstance(m, (BasicBlock, Bottleneck)):
            nn.init.zeros_(m.last_bn().weight)


class VideoResNet(nn.Module):
    """ResNet backbone + TSN head on clips.

    Args:
        block: "basic" or "bottleneck".
        layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
        conv_makers: one conv maker per stage, or a single one for all; each a callable
            `(in_planes, out_planes, stride) -> nn.Module` or a name of `CONV_MAKERS`
            ("2d", "gdm", "gst", "3d", "2plus1d", "shift").
        widths: planes of each stage (64, 128, 256, 512 for the ResNets of the paper).
        stem_width: channels of the 1x7x7 stem.
        num_classes: size of the classifier.
        dropout: dropout before the classifier (0.5 in the TSN/TSM recipe).
        zero_init_residual: start each residual branch at zero (last BN gamma = 0).
        nonlocal_blocks: per stage, the indices of the blocks followed by a non-local block
            (`NonLocal`), e.g. `((), (1, 3), (1, 3, 5), ())` for the five of the non-local
            paper's ResNet-50; none by default.

    The stem is a 1x7x7 conv with stride (1, 2, 2) and a 1x3x3 max-pool; time is never
    down-sampled, and pooling is adaptive, so any frame count (1 included) and any size work.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        conv_makers: Maker | str | Sequence[Maker | str],
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        num_classes: int = 174,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
        nonlocal_blocks: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__()
        if isinstance(conv_makers, str) or callable(conv_makers):
            conv_makers = [conv_makers] * len(layers)
        nonlocal_blocks = nonlocal_blocks or [()] * len(layers)
        if len(conv_makers) != len(layers) or len(widths) != len(layers) or len(nonlocal_blocks) != len(layers):
            raise ValueError(
                f"need one conv maker, one width and one list of non-local blocks per stage: {len(layers)} "
                f"stages, {len(conv_makers)} makers, {len(widths)} widths, {len(nonlocal_blocks)} non-local lists"
            )
        makers = [conv_maker(m) for m in conv_makers]

        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_width
        for i, (n_blocks, planes, maker) in enumerate(zip(layers, widths, makers)):
            stage = make_stage(block, inplanes, planes, n_blocks, 1 if i == 0 else 2, maker, nonlocal_blocks[i])
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes * BLOCKS[block].expansion
        self.num_stages = len(layers)
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self, zero_init_residual)

    def stages(self) -> list[Stage]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, T, D) pooled frame features."""
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x, t)
        return self.avgpool(x).flatten(1).view(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, num_classes) logits, the average of frame logits."""
        frame_logits = self.fc(self.dropout(self.forward_features(x)))  # (B, T, K)
        return frame_logits.mean(dim=1)
