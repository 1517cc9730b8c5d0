"""ECO (Zolfaghari, Singh, Brox, ECCV 2018): a 2D network on each frame, the frames' feature
maps stacked in time and fed to a 3D network (section 3.1, Fig. 2 of the ECO paper).

- 2D part: BN-Inception (Ioffe & Szegedy 2015) up to the first 3x3 conv of inception-3c's
  double-3x3 branch: 96 channels at 28x28 for a 224 input. Layer and channel counts are those
  of the TSN / ECO repositories' BN-Inception (`bn_inception.yaml`, `ECO.yaml`), written here
  as modules (`Inception`), so their ImageNet and Kinetics weights load through the
  "bninception" filter of `weights.py`.
- 3D part: the res3-res5 stages of a 3D ResNet-18 in ECO's form: pre-activation blocks (BatchNorm
  and ReLU before each conv, after each sum), 3x3x3 convs with biases, stride 2 in time and
  space at res4 and res5 with a 3x3x3 shortcut conv, then 3D average pooling: 512 features.
- ECO Lite (`full=False`): the 3D features, dropout, fc.
- ECO Full (`full=True`): also the rest of BN-Inception (inception-3c to 5b) on each frame,
  pooled in space (dropout 0.5) and averaged over the frames, next to the 3D features (dropout
  0.3): 1024 + 512 features, dropout, fc.

With 400 classes ECO Full has 47.50M parameters and 32.2 / 64.4 GMACs at 8 / 16 frames of 224
(the "ECO" rows of the GDN paper's Table 2), ECO Lite 37.50M and 23.2 / 46.5.

Input: clips `(B, 3, T, H, W)` normalised like every gdn model (ImageNet mean and std, RGB).
The TSN / ECO weights expect Caffe's input (BGR, 0-255, mean subtracted); the filter that loads
them sets the per-channel affine map `input_scale`, `input_shift` (buffers, identity by
default) that turns one into the other before conv1, and puts conv1's input channels in RGB
order, so such weights see exactly the input they were trained on.
"""

from __future__ import annotations

import torch
from torch import nn

from gdn.models.layers import ClipShapeError, to_frames, to_video


def _ch(channels: int, width: float) -> int:
    """`channels` scaled by `width`, at least 1 (0 stays 0: an absent branch)."""
    return max(1, round(channels * width)) if channels else 0


class ConvBN(nn.Module):
    """Conv (with bias, as Caffe's BN-Inception), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """A BN-Inception block: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 ("double"); pool (-> 1x1),
    concatenated in this order. A stride-2 block (3c, 4e) has no 1x1 branch and no pool
    projection; its 3x3 convs and its max-pool have the stride. `head_only` keeps only the first
    two convs of the double branch (what ECO's 3D part reads of inception-3c): `double_head`."""

    def __init__(self, cin: int, c1x1: int, c3x3_reduce: int, c3x3: int, double_reduce: int, double: int,
                 pool: str, pool_proj: int, stride: int = 1, head_only: bool = False):
        super().__init__()
        self.double_3x3_reduce = ConvBN(cin, double_reduce, 1)
        self.double_3x3_1 = ConvBN(double_reduce, double, 3, padding=1)
        if head_only:
            return
        self.conv_1x1 = ConvBN(cin, c1x1, 1) if c1x1 else None
        self.conv_3x3_reduce = ConvBN(cin, c3x3_reduce, 1)
        self.conv_3x3 = ConvBN(c3x3_reduce, c3x3, 3, stride, 1)
        self.double_3x3_2 = ConvBN(double, double, 3, stride, 1)
        # Caffe's pools round up (ceil_mode), so 28 -> 14 and 7 -> 7 as in BN-Inception.
        if pool == "max":
            self.pool = nn.MaxPool2d(3, stride, 1 if stride == 1 else 0, ceil_mode=True)
        else:
            self.pool = nn.AvgPool2d(3, stride, 1, ceil_mode=True)
        self.pool_proj = ConvBN(cin, pool_proj, 1) if pool_proj else None

    def double_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_3x3_1(self.double_3x3_reduce(x))

    def forward(self, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        """`head`: `double_head(x)` if already computed."""
        head = self.double_head(x) if head is None else head
        pooled = self.pool(x)
        branches = [self.conv_1x1(x)] if self.conv_1x1 is not None else []
        branches += [self.conv_3x3(self.conv_3x3_reduce(x)), self.double_3x3_2(head),
                     self.pool_proj(pooled) if self.pool_proj is not None else pooled]
        return torch.cat(branches, dim=1)


# BN-Inception from inception-3c on: (name, cin, 1x1, 3x3 reduce, 3x3, double reduce, double, pool, pool proj, stride)
INCEPTION_REST = (
    ("inception_4a", 576, 224, 64, 96, 96, 128, "avg", 128, 1),
    ("inception_4b", 576, 192, 96, 128, 96, 128, "avg", 128, 1),
    ("inception_4c", 576, 160, 128, 160, 128, 160, "avg", 128, 1),
    ("inception_4d", 608, 96, 128, 192, 160, 192, "avg", 128, 1),
    ("inception_4e", 608, 0, 128, 192, 192, 256, "max", 0, 2),
    ("inception_5a", 1056, 352, 192, 320, 160, 224, "avg", 128, 1),
    ("inception_5b", 1024, 352, 192, 320, 192, 224, "max", 128, 1),
)


class PreActBlock3d(nn.Module):
    """ECO's 3D residual block: BN-ReLU of the input (`preact`), 3x3x3 conv, BN-ReLU, 3x3x3
    conv, plus the input (or, with `stride` 2, a strided 3x3x3 conv of the pre-activated
    input). `(N, C, T, H, W)` -> `(N, C', T/s, H/s, W/s)`; the output is a sum, not activated."""

    preactivation_bns = ("preact",)  # follow a sum: `fold_bn` keeps them as affine maps

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.preact = nn.BatchNorm3d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1)
        self.downsample = nn.Conv3d(cin, cout, 3, stride, 1) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.preact(x))
        out = self.conv2(self.relu(self.bn1(self.conv1(pre))))
        return out + (x if self.downsample is None else self.downsample(pre))


class ECO3D(nn.Module):
    """res3-res5 of ECO's 3D ResNet-18: `(N, C_in, T, 28, 28)` -> `(N, 512)` at 224 input."""

    preactivation_bns = ("bn_final",)

    def __init__(self, cin: int, widths: tuple[int, int, int] = (128, 256, 512)):
        super().__init__()
        w3, w4, w5 = widths
        self.conv3a = nn.Conv3d(cin, w3, 3, 1, 1)
        self.res3b = PreActBlock3d(w3, w3, 1)
        self.res4a = PreActBlock3d(w3, w4, 2)
        self.res4b = PreActBlock3d(w4, w4, 1)
        self.res5a = PreActBlock3d(w4, w5, 2)
        self.res5b = PreActBlock3d(w5, w5, 1)
        self.bn_final = nn.BatchNorm3d(w5)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3a(x)
        for block in (self.res3b, self.res4a, self.res4b, self.res5a, self.res5b):
            x = block(x)
        return self.relu(self.bn_final(x)).mean(dim=(2, 3, 4))


class ECO(nn.Module):
    """ECO Lite (`full=False`) or ECO Full: `(B, 3, T, H, W)` -> `(B, num_classes)`.

    Any frame count works (the 3D part halves time twice, rounding up; its pooling is adaptive;
    ECO's own code takes multiples of 4). `width` scales every channel count (the `*_tiny`
    variants); `dropout` is the one before fc (ECO's `--dropout`), the branch dropouts of ECO
    Full are ECO's 0.5 (2D) and 0.3 (3D).
    """

    def __init__(self, full: bool = False, num_classes: int = 174, dropout: float = 0.5, width: float = 1.0):
        super().__init__()
        c = lambda n: _ch(n, width)  # noqa: E731
        self.full = full
        self.register_buffer("input_scale", torch.ones(3))
        self.register_buffer("input_shift", torch.zeros(3))
        self.conv1 = ConvBN(3, c(64), 7, 2, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2_reduce = ConvBN(c(64), c(64), 1)
        self.conv2 = ConvBN(c(64), c(192), 3, padding=1)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception_3a = Inception(c(192), c(64), c(64), c(64), c(64), c(96), "avg", c(32))
        self.inception_3b = Inception(c(256), c(64), c(64), c(96), c(64), c(96), "avg", c(64))
        self.inception_3c = Inception(c(320), 0, c(128), c(160), c(64), c(96), "max", 0, stride=2, head_only=not full)
        self.net3d = ECO3D(c(96), (c(128), c(256), c(512)))
        features = c(512)
        if full:
            for name, cin, *widths, pool, proj, stride in INCEPTION_REST:
                self.add_module(name, Inception(c(cin), *map(c, widths), pool, c(proj), stride))
            self.dropout_2d = nn.Dropout(0.5)
            self.dropout_3d = nn.Dropout(0.3)
            features += c(1024)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        x = to_frames(x)  # (B*T, 3, H, W)
        x = x * self.input_scale.view(1, 3, 1, 1) + self.input_shift.view(1, 3, 1, 1)
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(self.conv2_reduce(x)))
        x = self.inception_3b(self.inception_3a(x))
        head = self.inception_3c.double_head(x)  # (B*T, 96, H/8, W/8): the 3D part's input
        feat3d = self.net3d(to_video(head, t))  # (B, 512)
        if not self.full:
            return self.fc(self.dropout(feat3d))
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            # The stride-2 blocks (3c, 4e) concatenate a conv (output ceil(n / 2)) and a Caffe
            # max-pool (ceil((n - 1) / 2)): they agree on even maps only, in Caffe too.
            raise ClipShapeError(
                f"ECO Full cannot take {h}x{w} frames: BN-Inception's inception-3c and 4e need even feature "
                "maps, which input sides of 32k to 32k+6 pixels give (224, 256, 64, ...); set data.size to one")
        y = self.inception_3c(x, head)
        for name, *_ in INCEPTION_REST:
            y = getattr(self, name)(y)
        feat2d = self.dropout_2d(y.mean(dim=(2, 3))).view(b, t, -1).mean(dim=1)  # (B, 1024): frames averaged
        return self.fc(self.dropout(torch.cat([feat2d, self.dropout_3d(feat3d)], dim=1)))
