"""Grad-CAM per frame and the temporal test (gdn.engine.explain) on models trained or built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gdn.engine.explain import grad_cam, temporal_test
from gdn.errors import UsageError
from gdn.models import create_model
from media import gradient_frames

torch.set_num_threads(1)
S, T, SIDE = 64, 4, 10  # frame size, frames per clip, object side (pixels)


def motion_clips(labels, seed: int):
    """Clips of two white squares on grey noise: one static; the other static too (label 0) or
    moving 32 px left or right (label 1), so only motion decides the class. Returns normalised
    clips (N, 3, T, S, S) and, per clip, the moving square's row and its column in each frame."""
    rng = np.random.default_rng(seed)
    clips, where = [], []
    for label in labels:
        frames = np.full((T, S, S, 3), 128.0) + rng.normal(0, 4, (1, S, S, 3))
        while True:
            y, sy = rng.integers(0, S - SIDE, 2)
            if abs(int(sy) - int(y)) > SIDE + 2:
                break
        x0, sx = rng.integers(0, S // 2 - SIDE), rng.integers(0, S - SIDE)
        xs = np.linspace(x0, x0 + S // 2, T).astype(int)
        xs = xs[::-1] if rng.random() < 0.5 else xs
        if label == 0:
            xs = np.full(T, xs[rng.integers(T)])
        frames[:, sy : sy + SIDE, sx : sx + SIDE] = 255
        for t, x in enumerate(xs):
            frames[t, y : y + SIDE, x : x + SIDE] = 255
        clips.append(frames)
        where.append((int(y), xs.tolist()))
    x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    return x, where


@pytest.fixture(scope="module")
def motion_model():
    """gdn_tiny trained here (40 steps of 8 clips) to tell a moving square from a static one."""
    torch.manual_seed(0)
    model = create_model("gdn_tiny", num_classes=2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for step in range(40):
        labels = rng.integers(0, 2, 8)
        x, _ = motion_clips(labels, seed=step)
        loss = F.cross_entropy(model(x), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    labels = np.arange(32) % 2
    x, _ = motion_clips(labels, seed=1000)
    with torch.no_grad():
        assert (model(x).argmax(1).numpy() == labels).mean() >= 0.9, "the motion fixture did not learn"
    return model


def test_grad_cam_puts_its_mass_on_the_moving_square(motion_model):
    """On clips where one square moves and one does not, the maps of the class "moving" put most
    of their mass on the moving square's path (19-25% of the frame)."""
    x, where = motion_clips(np.ones(8, int), seed=2000)
    masses = []
    for clip, (y, xs) in zip(x, where):
        cam = grad_cam(motion_model, clip[None], target=1, layer="layer1")
        assert cam.shape == (T, S // 4, S // 4) and (cam >= 0).all()
        maps = F.interpolate(cam[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0]
        top, bottom = max(0, y - SIDE // 2), min(S, y + SIDE + SIDE // 2)
        left, right = max(0, min(xs) - SIDE // 2), min(S, max(xs) + SIDE + SIDE // 2)
        masses.append(float(maps[:, top:bottom, left:right].sum() / maps.sum()))
    assert min(masses) > 0.5, masses  # most of it; measured here: 0.67-0.90


def test_grad_cam_gives_each_frame_its_own_map():
    """The frames are a batch inside the backbone: in TSN (per-frame convolutions, frame scores
    averaged) frame t's map is, up to the 1/T of the average, the map of frame t alone."""
    clip = _clip(4)
    torch.manual_seed(0)
    tsn = create_model("tsn_tiny", num_classes=3, dropout=0.0).eval()
    maps = grad_cam(tsn, clip, target=1, layer="layer3")
    assert maps.shape == (4, 2, 2)
    for t in range(4):
        alone = grad_cam(tsn, clip[:, :, t : t + 1], target=1, layer="layer3")[0]
        torch.testing.assert_close(maps[t] * 4, alone, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(maps[0], maps[3])


def _clip(frames: int = 8) -> torch.Tensor:
    x = torch.from_numpy(gradient_frames(frames, height=32, width=32)).permute(3, 0, 1, 2)[None]
    return x.float() / 127.5 - 1  # (1, 3, T, 32, 32)


def test_grad_cam_of_i3d_covers_every_frame_and_eco_is_refused():
    """I3D's last stages hold T / 2 frames here (pool2): each map stands for the 2 frames it covers."""
    torch.manual_seed(0)
    i3d = create_model("i3d_tiny", num_classes=3).eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    maps = grad_cam(i3d, clip, target=1, layer="layer4")
    assert maps.shape[0] == 4 and torch.equal(maps[0], maps[1]) and torch.equal(maps[2], maps[3])
    with pytest.raises(UsageError, match="ECO stacks them in time"):
        grad_cam(create_model("eco_lite_tiny", num_classes=3).eval(), clip, target=1)


def test_reversing_the_frames_leaves_tsn_unchanged_and_changes_gdn():
    """TSN averages per-frame scores: any frame order gives its scores up to floating point.
    GDN's temporal groups see the order."""
    clip = _clip()
    torch.manual_seed(0)
    tsn = create_model("tsn_tiny", num_classes=5, dropout=0.0).eval()
    torch.manual_seed(0)
    gdn = create_model("gdn_tiny", num_classes=5, dropout=0.0).eval()
    t = temporal_test(tsn, clip, target=2, shuffles=4)
    assert t["reversed"] == pytest.approx(t["original"], abs=1e-6)
    assert t["shuffled"] == pytest.approx([t["original"]] * 4, abs=1e-6)
    g = temporal_test(gdn, clip, target=2, shuffles=4)
    assert abs(g["reversed"] - g["original"]) > 1e-3
    assert min(abs(s - g["original"]) for s in g["shuffled"]) > 1e-4
    assert len(g["orders"]) == 4 and all(sorted(o) == list(range(8)) and o != list(range(8)) for o in g["orders"])


def test_occlusion_scores_are_the_model_on_the_occluded_clips():
    clip = _clip(4)
    torch.manual_seed(0)
    model = create_model("gdn_tiny", num_classes=3, dropout=0.0).eval()
    got = temporal_test(model, clip, target=1, shuffles=0)
    want = []
    with torch.no_grad():
        for t in range(4):
            occluded = clip.clone()
            occluded[:, :, t] = 0
            want.append(float(torch.softmax(model(occluded), 1)[0, 1]))
        reversed_ = float(torch.softmax(model(clip.flip(2)), 1)[0, 1])
    np.testing.assert_allclose(got["occluded"], want, rtol=1e-5)
    assert got["reversed"] == pytest.approx(reversed_, rel=1e-5) and got["shuffled"] == []
