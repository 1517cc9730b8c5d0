"""Shared test helpers."""

import numpy as np
import pytest
import torch
from torch import nn

from gdn.models import create_model
from media import COLOURS, StreamServer, colour_frames, mpegts


def _model_with_bn_statistics(name: str) -> nn.Module:
    """A tiny model in eval mode whose BatchNorms have non-trivial statistics and affine
    parameters, so that folding or exporting them must get them right."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def bn_model():
    """`bn_model(name)`: see `_model_with_bn_statistics`."""
    return _model_with_bn_statistics


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
