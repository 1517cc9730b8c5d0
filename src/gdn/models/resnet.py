"""Video ResNets with a TSN head: the GDN of the paper (section 2.3) and its baselines.

`VideoResNet` takes clips `(B, C, T, H, W)` and returns logits `(B, num_classes)`. It is a
ResNet whose every 3x3 conv is built by a conv maker chosen per stage (`layers.py`: any
callable `(in_planes, out_planes, stride) -> nn.Module`, or its name), followed by global
pooling per frame, dropout, a linear classifier and the average of the frame scores (TSN
consensus). Parameter names are torchvision's (`conv1`, `bn1`, `layer3.2.conv2`, `fc`), so
ImageNet weights map almost one to one (see `weights.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gdn.models.layers import Maker, conv_maker


def _residual_shift(maker: Maker, index: int) -> nn.Module | None:
    """The module the maker asks block `index` of a stage to run on its residual branch before
    conv1 (TSM), if any."""
    build = getattr(maker, "residual_shift", None)
    return build(index) if build is not None else None


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); both come from the conv maker. `index`, the block's
    position in its stage, tells the maker's `residual_shift` which blocks shift."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, maker: Maker,
                 index: int = 0):
        super().__init__()
        self.shift = _residual_shift(maker, index)
        self.conv1 = maker(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = maker(planes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = x if self.shift is None else self.shift(x, num_frames)
        out = self.relu(self.bn1(self.conv1(out, num_frames)))
        out = self.bn2(self.conv2(out, num_frames))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1, 3x3 (from the conv maker), 1x1 (ResNet-50/101); stride on the 3x3 as torchvision.

    TSM shifts the residual branch before conv1 (Fig. 2 of the TSM paper); the identity
    path keeps the unshifted input.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, maker: Maker,
                 index: int = 0):
        super().__init__()
        self.shift = _residual_shift(maker, index)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = maker(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = x if self.shift is None else self.shift(x, num_frames)
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out, num_frames)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class Stage(nn.ModuleList):
    """The blocks of one stage (`layerN`), called with the frame count."""

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, num_frames)
        return x


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


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
    ):
        super().__init__()
        if isinstance(conv_makers, str) or callable(conv_makers):
            conv_makers = [conv_makers] * len(layers)
        if len(conv_makers) != len(layers) or len(widths) != len(layers):
            raise ValueError(
                f"need one conv maker and one width per stage: {len(layers)} stages, "
                f"{len(conv_makers)} makers, {len(widths)} widths"
            )
        makers = [conv_maker(m) for m in conv_makers]
        block_cls = BLOCKS[block]

        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_width
        for i, (n_blocks, planes, maker) in enumerate(zip(layers, widths, makers)):
            stride = 1 if i == 0 else 2
            stage = Stage()
            for j in range(n_blocks):
                downsample = None
                if j == 0 and (stride != 1 or inplanes != planes * block_cls.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * block_cls.expansion, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(planes * block_cls.expansion),
                    )
                stage.append(block_cls(inplanes, planes, stride if j == 0 else 1, downsample, maker, j))
                inplanes = planes * block_cls.expansion
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

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
