"""Shared test helpers."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gdn.models import create_model
from media import COLOURS, FOOTAGE, StreamServer, colour_frames, mpegts


def _model_with_bn_statistics(name: str, **options) -> nn.Module:
    """A tiny model (`create_model` `options`) in eval mode whose BatchNorms have non-trivial
    statistics and affine parameters, so that folding or exporting them must get them right."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **options)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):  # 2D and 3D (ECO)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def bn_model():
    """`bn_model(name)`: see `_model_with_bn_statistics`."""
    return _model_with_bn_statistics


def _peer_checkpoint(model: nn.Module, format: str, **entries) -> dict:
    """`model`'s weights as a peer's code saves them, written from the peers' rules
    (docs/peers.md), not with gdn's filters: `format="tsm"`, the TSM repository's
    `{"epoch", "arch", "best_prec1", "state_dict"}` (DataParallel's `module.`, `base_model.`, the
    shift wrapper's `.net` on each shifted block's conv1, `new_fc`); `format="mmaction"`,
    MMAction2's `{"meta", "state_dict"}` (`backbone.` with ConvModule's `convN.conv` / `convN.bn`,
    `.net` inside conv1's `conv` when shifted, `downsample.conv/bn`, `cls_head.fc_cls`).
    `entries` replace or add top-level entries (`arch=...`, `meta={...}`). An I3D (`i3d_*`) is
    saved as MMAction2's `ResNet3d`: every conv a Conv3d (gdn's per-frame kernels with a time
    axis of 1), mmcv's `NonLocal3d` blocks (`non_local_block.theta.conv`, `phi.0.conv` and
    `g.0.conv` when sub-sampled, `conv_out.conv` / `conv_out.bn`)."""
    shifted = {name for name, m in model.named_modules() if getattr(m, "shift", None) is not None}
    video = model.conv1.weight.dim() == 5  # I3D: MMAction2 keeps every kernel 5D
    pooled = {name for name, m in model.named_modules() if getattr(m, "pool", False) is True}  # non-local
    state = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        block = ".".join(parts[:2])
        if video and value.dim() == 4:
            value = value.unsqueeze(2)
        if "nonlocal_block" in parts:
            sub = {"bn_out": "conv_out.bn", "conv_out": "conv_out.conv"}.get(parts[3])
            if sub is None:
                sub = f"{parts[3]}.0.conv" if parts[3] in ("phi", "g") and f"{block}.nonlocal_block" in pooled \
                    else f"{parts[3]}.conv"
            state[f"backbone.{block}.non_local_block.{sub}.{parts[4]}"] = value.clone()
            continue
        if format == "tsm":
            if parts[0] == "fc":
                new = "new_fc." + parts[1]
            elif block in shifted and parts[2] == "conv1":
                new = f"base_model.{block}.conv1.net.{parts[3]}"
            else:
                new = "base_model." + key
            state["module." + new] = value.clone()
            continue
        if parts[0] == "fc":
            new = "cls_head.fc_cls." + parts[1]
        elif parts[0] in ("conv1", "bn1"):
            new = f"backbone.conv1.{'conv' if parts[0] == 'conv1' else 'bn'}.{parts[1]}"
        elif parts[2] == "downsample":
            new = f"backbone.{block}.downsample.{'conv' if parts[3] == '0' else 'bn'}.{parts[4]}"
        else:  # layerX.Y.convN.param / layerX.Y.bnN.param
            n = parts[2][-1]
            wrap = "conv.net" if parts[2] == "conv1" and block in shifted else "conv"
            new = f"backbone.{block}.conv{n}.{wrap if parts[2].startswith('conv') else 'bn'}.{parts[3]}"
        state[new] = value.clone()
    if format == "tsm":
        return {"epoch": 45, "arch": "resnet50", "best_prec1": 45.6, "state_dict": state, **entries}
    return {"meta": {"epoch": 50, "iter": 1000}, "state_dict": state, **entries}


@pytest.fixture(scope="session")
def peer_checkpoint():
    """`peer_checkpoint(model, "tsm" | "mmaction", **entries)`: see `_peer_checkpoint`."""
    return _peer_checkpoint


@pytest.fixture(scope="session")
def colour_checkpoint(tmp_path_factory):
    """A `gdn train`-style checkpoint of tsn_tiny (4 frames, 32 px, classes red/green/blue)
    trained here, in about a second, to name the colour of a clip."""
    from gdn.config import Config
    from gdn.data.transforms import normalize
    from gdn.engine.checkpoint import save_checkpoint

    classes = list(COLOURS)
    torch.manual_seed(0)
    model = create_model("tsn_tiny", num_classes=len(classes), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    labels = torch.arange(len(classes)).repeat(4)  # 12 clips
    clips = torch.stack([torch.from_numpy(colour_frames(classes[k], 4, 32, 32, seed=i)).permute(3, 0, 1, 2)
                         for i, k in enumerate(labels.tolist())])  # (12, 3, 4, 32, 32) uint8
    x = normalize(clips)
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == labels).all(), "the colour fixture did not learn its colours"
    cfg = Config()
    cfg.model.name, cfg.model.dropout = "tsn_tiny", 0.0
    cfg.data.frames, cfg.data.size = 4, 32
    path = tmp_path_factory.mktemp("colour") / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "classes": classes,
                           "epoch": 1, "step": 0, "global_step": 1, "best_top1": None, "metrics": {}})
    return path


@pytest.fixture(scope="session")
def colour_stream() -> bytes:
    """MPEG-TS bytes of 24 red, 24 green, then 24 blue frames (24x32, 12 fps)."""
    return mpegts(np.concatenate([colour_frames(c, 24, seed=i) for i, c in enumerate(COLOURS)]))


@pytest.fixture
def serve(colour_stream):
    """`serve(*plan)`: a `media.StreamServer` of `colour_stream` on the loopback interface,
    closed after the test."""
    servers = []

    def start(*plan: str) -> StreamServer:
        servers.append(StreamServer(colour_stream, list(plan)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture(scope="session")
def footage_folder(tmp_path_factory) -> Path:
    """A folder dataset of real footage (`gdn.data.footage`, sources in tests/fixtures/footage):
    6 classes x 3 clips of 8 frames at 32x40, `ROOT/<class>/`, every third clip a JPEG folder."""
    from gdn.data.footage import write_camera_folder

    root = tmp_path_factory.mktemp("footage")
    write_camera_folder(sorted(FOOTAGE.glob("*.mp4")), root, per_class=3, frames=8, height=32, width=40,
                        frame_folder_every=3, short_side=64)
    return root


def _footage_config(root: Path, out: Path, **train):
    from gdn.config import Config

    return Config.from_dict({
        "model": {"name": "gdn_tiny"},
        "data": {"dataset": "folder", "root": str(root), "frames": 4, "size": 32, "workers": 0},
        "train": {"epochs": 1, "batch_size": 4, **train}, "out": str(out), "device": "cpu",
    })


@pytest.fixture(scope="session")
def footage_config():
    """`footage_config(root, out, **train)`: gdn_tiny on `footage_folder`, 4 frames at 32 px,
    one epoch of batch 4, on the CPU without loader workers; `train` overrides train keys."""
    return _footage_config


@pytest.fixture(scope="session")
def footage_checkpoint(footage_folder, tmp_path_factory) -> Path:
    """`last.pt` of one epoch of gdn_tiny on `footage_folder` (the scratch recipe)."""
    from gdn.engine.train import train

    return Path(train(_footage_config(footage_folder, tmp_path_factory.mktemp("footage_run")))["last"])
