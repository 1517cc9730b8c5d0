"""I3D ResNet-50 of the non-local paper (Wang, Girshick, Gupta, He, CVPR 2018), with and without
its non-local blocks: the "I3D" and "NL I3D" rows of the GDN paper's Table 2.

Unlike R3D (`r3d_r50`: every 3x3 inflated to 3x3x3), this I3D keeps every 3x3 a 1x3x3 (per
frame) and inflates the first 1x1 conv of every other residual block to 3x1x1; its stem is a
5x7x7 conv. It also shrinks time: the stem conv, the stem's max-pool (pool1) and a max-pool after
res2 (pool2) each have a temporal stride, and the classifier sees one clip, not frames (3D average
pooling, dropout, fc: MMAction2's I3DHead). Two settings of those strides are real:

- the non-local paper's Kinetics model, as MMAction2 builds it (`ResNet3d` with
  `conv1_stride_t=2, pool1_stride_t=2`, pool2): `temporal_strides=(2, 2, 2)`, the default; a
  32-frame clip leaves 4 frames from res3 on (33.1 GMACs at 224);
- Wang and Gupta's Something-Something backbone (ECCV 2018), whose res5 gives a 16x14x14
  feature map for a 32-frame clip: no temporal stride but pool2's, res5 without its spatial
  stride: `temporal_strides=(1, 1, 2), res5_stride=1` (152.5 GMACs: Table 2's "153").
  The non-local repository's 8-frame models use the same temporal strides (`i3d_tiny`).

Layout: as in `VideoResNet`, frames are a batch `(N*T, C, H, W)` inside the network, so the
blocks, stages, conv makers and non-local blocks of `resnet.py` / `layers.py` are reused; the
frame count passed along shrinks at the strided stem conv and the pools. Parameter names are
torchvision's (`conv1`, `layer1.0.conv1`, `fc`), so a 2D ResNet-50 maps onto it by inflation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from gdn.models.layers import (
    ClipShapeError,
    FrameConv2d,
    NonLocal,
    VideoConv3d,
    VideoMaxPool,
    to_frames,
)
from gdn.models.resnet import BLOCKS, POINTWISE, Stage, init_weights, make_stage

# Which blocks of each stage inflate their first 1x1 conv to 3x1x1 (the non-local paper's I3D,
# MMAction2's `inflate`), and which are followed by a non-local block (two in res3, three in res4).
I3D_INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
NONLOCAL_BLOCKS = ((), (1, 3), (1, 3, 5), ())
TEMPORAL_1X1 = partial(VideoConv3d, kernel_t=3, kernel=1)


class I3DResNet(nn.Module):
    """I3D ResNet (bottleneck blocks) with a per-clip head: `(B, 3, T, H, W)` -> `(B, num_classes)`.

    Args:
        layers: bottleneck blocks per stage, (3, 4, 6, 3) for ResNet-50.
        inflate: per stage, one flag per block: 1 inflates the block's first 1x1 conv to 3x1x1.
        widths: planes of each stage; stem_width: channels of the 5x7x7 stem.
        temporal_strides: of the stem conv, pool1 and pool2; T must be a multiple of their
            product (`ClipShapeError` otherwise).
        res5_stride: spatial stride of the last stage; 1 keeps its input size, with its 1x3x3
            convs dilated by 2 (as torchvision's `replace_stride_with_dilation`).
        nonlocal_blocks: per stage, the blocks followed by a `NonLocal` block.
        nonlocal_pool: max-pool phi and g of the non-local blocks 2x2 in space.
        num_classes, dropout, zero_init_residual: as `VideoResNet`.
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        inflate: Sequence[Sequence[int]] = I3D_INFLATE,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        temporal_strides: Sequence[int] = (2, 2, 2),
        res5_stride: int = 2,
        nonlocal_blocks: Sequence[Sequence[int]] = ((), (), (), ()),
        nonlocal_pool: bool = True,
        num_classes: int = 174,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if not (len(layers) == len(inflate) == len(widths) == len(nonlocal_blocks) == 4):
            raise ValueError("I3DResNet needs 4 stages: one entry of layers, inflate, widths, nonlocal_blocks each")
        if [len(f) for f in inflate] != list(layers):
            raise ValueError(f"inflate needs one flag per block: {[len(f) for f in inflate]} vs layers {list(layers)}")
        if len(temporal_strides) != 3 or res5_stride not in (1, 2):
            raise ValueError("temporal_strides: three strides (stem conv, pool1, pool2); res5_stride: 1 or 2")
        self.temporal_strides = tuple(int(s) for s in temporal_strides)
        t_conv, t_pool1, t_pool2 = self.temporal_strides
        self.conv1 = VideoConv3d(3, stem_width, stride=2, kernel_t=5, kernel=7, stride_t=t_conv)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        # MMAction2's pools: pool1 keeps every t_pool1-th frame (temporal kernel 1), pool2 takes
        # the max of t_pool2 frames.
        self.maxpool = VideoMaxPool((1, 3, 3), (t_pool1, 2, 2), (0, 1, 1))
        self.pool2 = VideoMaxPool((t_pool2, 1, 1), (t_pool2, 1, 1))
        inplanes = stem_width
        for i, (n_blocks, planes) in enumerate(zip(layers, widths)):
            last = i == len(layers) - 1
            stride = 1 if i == 0 else (res5_stride if last else 2)
            maker = partial(FrameConv2d, dilation=2) if last and res5_stride == 1 else FrameConv2d
            conv1_makers = [TEMPORAL_1X1 if f else POINTWISE for f in inflate[i]]
            stage = make_stage("bottleneck", inplanes, planes, n_blocks, stride, maker, nonlocal_blocks[i],
                               partial(NonLocal, pool=nonlocal_pool), conv1_makers)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes * BLOCKS["bottleneck"].expansion
        self.num_features = inplanes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self, zero_init_residual)

    @property
    def frame_multiple(self) -> int:
        """The frame counts this model takes are the multiples of this number."""
        return math.prod(self.temporal_strides)

    def stages(self) -> list[Stage]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, T', D) frame features pooled in space, T' = T / frame_multiple."""
        b, t = x.shape[0], x.shape[2]
        m = self.frame_multiple
        if t % m:
            raise ClipShapeError(
                f"a clip of {t} frames does not fit this I3D: its temporal strides {self.temporal_strides} "
                f"(stem conv, pool1, pool2) need a multiple of {m} frames ({m}, {2 * m}, {4 * m}, ...); set "
                "data.frames to one or change model.options.temporal_strides"
            )
        t_conv, t_pool1, t_pool2 = self.temporal_strides
        x = to_frames(x)  # (B*T, C, H, W)
        x = self.relu(self.bn1(self.conv1(x, t)))  # (B*T/t_conv, C', H/2, W/2)
        t //= t_conv
        x = self.maxpool(x, t)
        t //= t_pool1
        x = self.layer1(x, t)
        x = self.pool2(x, t)
        t //= t_pool2
        for stage in (self.layer2, self.layer3, self.layer4):
            x = stage(x, t)
        return x.mean(dim=(2, 3)).view(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clips -> (B, num_classes) logits of the clip: the features averaged
        over T'·H'·W' (3D average pooling), dropout, fc."""
        return self.fc(self.dropout(self.forward_features(x).mean(dim=1)))
