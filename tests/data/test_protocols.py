"""The peers' evaluation protocols, exactly: frame indices against the TSM repository's
(`ops/dataset.py` at 1f6a834b) and MMAction2's (`SampleFrames`, main at 4d6c9347) formulas
written out here as they write them, and evaluation pixels against resize-then-crop computed
here with Pillow (TSM) and PyTorch (MMAction2, gdn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gdn.data.sampling import (PROTOCOLS, PeerDenseSampler, PeerSegmentSampler, SegmentSampler,
                               build_sampler, check_clips)
from gdn.data.transforms import (EvalTransform, _to_source, mmaction_short_side_size, mmaction_three_crop_boxes,
                                 resize, resized_crop, short_side_size, tsm_short_side_size)

LENGTHS = range(1, 401)


# ----------------------------------------------------------------------------- the peers' formulas


def tsm_test_indices(n: int, t: int, twice: bool = False) -> list[list[int]]:
    """TSM `_get_test_indices` (new_length 1, 0-based: its `+ 1` is the 1-based file number)."""
    tick = (n - 1 + 1) / float(t)
    offsets = [[int(tick / 2.0 + tick * x) for x in range(t)]]
    if twice:
        offsets.append([int(tick * x) for x in range(t)])
    return offsets


def mmaction_test_indices(n: int, t: int, twice: bool = False) -> list[list[int]]:
    """MMAction2 `SampleFrames(clip_len=1, num_clips=t, test_mode=True)._get_test_clips` and its
    `transform` (loop out of bounds, `astype(np.int32)`)."""
    avg_interval = n / float(t)
    base_offsets = np.arange(t) * avg_interval
    clip_offsets = base_offsets + avg_interval / 2.0
    if twice:
        clip_offsets = np.concatenate([clip_offsets, base_offsets])
    frame_inds = np.mod(clip_offsets[:, None] + np.arange(1)[None, :], n)
    return np.concatenate(frame_inds).astype(np.int32).reshape(-1, t).tolist()


def tsm_dense_test_indices(n: int, t: int, clips: int = 10) -> list[list[int]]:
    """TSM `_get_test_indices` with `dense_sample` (10 clips in its test script)."""
    sample_pos = max(1, 1 + n - 64)
    t_stride = 64 // t
    start_list = np.linspace(0, sample_pos - 1, num=clips, dtype=int)
    return [[(idx * t_stride + start_idx) % n for idx in range(t)] for start_idx in start_list.tolist()]


def mmaction_dense_test_indices(n: int, clip_len: int, interval: int, clips: int) -> list[list[int]]:
    """MMAction2 `SampleFrames(clip_len, frame_interval, num_clips, test_mode=True)` (3D branch)."""
    ori_clip_len = (clip_len - 1) * interval + 1
    max_offset = max(n - ori_clip_len, 0)
    if clips > 1:
        clip_offsets = np.round(np.arange(clips) * (max_offset / float(clips - 1)))
    else:
        clip_offsets = np.array([max_offset // 2])
    frame_inds = clip_offsets[:, None] + np.arange(clip_len)[None, :] * interval
    return np.mod(frame_inds, n).astype(np.int32).tolist()


class Extreme:
    """A stand-in generator whose `integers(low, high, size)` returns `low` or `high - 1`:
    the two ends of every draw, so the samplers' whole range is checked exactly."""

    def __init__(self, high: bool):
        self.high = high

    def integers(self, low, high, size=None):
        value = high - 1 if self.high else low
        return np.full(size, value, dtype=np.int64) if size is not None else value


# ----------------------------------------------------------------------------- frame indices


@pytest.mark.parametrize("t", [8, 16])
def test_peer_test_indices_for_every_length(t):
    for peer, formula in (("tsm", tsm_test_indices), ("mmaction", mmaction_test_indices)):
        one = PeerSegmentSampler(t, train=False, peer=peer)
        twice = PeerSegmentSampler(t, train=False, clips=2, peer=peer)
        for n in LENGTHS:
            assert one(n).tolist() == formula(n, t), (peer, n)
            assert twice(n).tolist() == formula(n, t, twice=True), (peer, n)


def test_gdn_differs_from_the_peers_only_where_the_issue_says():
    """gdn's own single clip is the peers' for n > T, not below (floor(i n / T) there); its
    2 clips (0.25 and 0.75 of each segment) are not twice_sample (0.5 and 0.0)."""
    for t, short in ((8, [3, 5, 6, 7]), (16, None)):
        gdn = SegmentSampler(t, train=False)
        differ = [n for n in LENGTHS if gdn(n).tolist() != tsm_test_indices(n, t)]
        assert all(n < t for n in differ)
        if short is not None:
            assert differ == short
        else:
            assert len(differ) == 11
    gdn2 = SegmentSampler(8, train=False, clips=2)  # the same views in any order: n = 1, 2, 4, 8, 16
    assert sum(sorted(gdn2(n).tolist()) != sorted(tsm_test_indices(n, 8, twice=True)) for n in LENGTHS) == 395


@pytest.mark.parametrize("t", [8, 16])
def test_peer_training_segments_for_every_length(t):
    """Integer segments of n // T frames, one random frame in each; the tail is never drawn.
    The ends of every draw (low and high - 1) and seeded draws against the formula."""
    for peer in ("tsm", "mmaction"):
        s = PeerSegmentSampler(t, train=True, peer=peer)
        for n in LENGTHS:
            seg = n // t
            if seg == 0:  # shorter than T: TSM frame 0, MMAction2 np.around(i * n / T) mod n
                want = ([0] * t if peer == "tsm"
                        else np.mod(np.around(np.arange(t) * ((n - 1 + 1.0) / t)), n).astype(int).tolist())
                for rng in (Extreme(False), Extreme(True), np.random.default_rng(n)):
                    assert s(n, rng).tolist() == [want], (peer, n)
                continue
            assert s(n, Extreme(False)).tolist() == [[i * seg for i in range(t)]]
            assert s(n, Extreme(True)).tolist() == [[i * seg + seg - 1 for i in range(t)]]
            idx = s(n, np.random.default_rng([n, t]))[0]
            assert ((idx // seg) == np.arange(t)).all() and idx.max() < t * seg, (peer, n, idx)
    # T=16, n=45: segments of 2 frames, frames 32-44 never drawn (gdn's segments reach 44)
    drawn = {int(v) for k in range(200) for v in PeerSegmentSampler(16, train=True)(45, np.random.default_rng(k))[0]}
    assert drawn == set(range(32))
    gdn = {int(v) for k in range(200) for v in SegmentSampler(16, train=True)(45, np.random.default_rng(k))[0]}
    assert max(gdn) == 44


@pytest.mark.parametrize("t", [8, 16])
def test_peer_dense_clip_starts_for_every_length(t):
    tsm = build_sampler("dense", t, train=False, clips=10, protocol="tsm")  # stride 64 // T
    assert tsm.stride == 64 // t
    mm10 = build_sampler("dense", t, train=False, clips=10, stride=2, protocol="mmaction")
    mm1 = build_sampler("dense", t, train=False, clips=1, stride=2, protocol="mmaction")
    for n in LENGTHS:
        assert tsm(n).tolist() == tsm_dense_test_indices(n, t), n
        assert mm10(n).tolist() == mmaction_dense_test_indices(n, t, 2, 10), n
        assert mm1(n).tolist() == mmaction_dense_test_indices(n, t, 2, 1), n
    # I3D 32x2: one clip is gdn's centred clip from 63 frames on; 10 clips span [0, n - 63]
    i3d = PeerDenseSampler(32, train=False, clips=10, stride=2, peer="mmaction")
    assert i3d(100).tolist() == mmaction_dense_test_indices(100, 32, 2, 10)
    assert i3d(100)[:, 0].tolist() == [0, 4, 8, 12, 16, 21, 25, 29, 33, 37]
    gdn = build_sampler("dense", 32, train=False, clips=1, stride=2)
    one = PeerDenseSampler(32, train=False, clips=1, stride=2, peer="mmaction")
    assert all(gdn(n).tolist() == one(n).tolist() for n in range(63, 401))


def test_peer_dense_training_windows():
    # TSM: start in [0, n - 64) (randint's high end excluded); MMAction2: [0, n - T * stride]
    tsm = PeerDenseSampler(8, train=True, stride=8, peer="tsm")
    mm = PeerDenseSampler(8, train=True, stride=2, peer="mmaction")
    for n in (10, 64, 65, 100, 300):
        lo_t, hi_t = tsm(n, Extreme(False))[0, 0], tsm(n, Extreme(True))[0, 0]
        assert (lo_t, hi_t) == ((0, max(0, n - 65)) if n > 64 else (0, 0)), n
        lo_m, hi_m = mm(n, Extreme(False))[0, 0], mm(n, Extreme(True))[0, 0]
        assert (lo_m, hi_m) == ((0, n - 16) if n >= 16 else (0, 0)), n
    assert tsm(10, Extreme(True)).tolist() == [[0, 8, 6, 4, 2, 0, 8, 6]]  # short videos loop


def test_protocol_view_errors():
    with pytest.raises(ValueError, match="1 segment clip, or 2"):
        check_clips("tsn", "tsm", 3)
    check_clips("dense", "mmaction", 10)
    check_clips("tsn", "gdn", 5)
    for protocol in PROTOCOLS:  # every protocol has its pixels
        assert EvalTransform(protocol=protocol).protocol == protocol
    with pytest.raises(ValueError, match="unknown protocol"):
        build_sampler("tsn", 8, train=False, protocol="mmaction2")
    with pytest.raises(ValueError, match="unknown protocol"):
        EvalTransform(protocol="mmaction2")
    with pytest.raises(ValueError, match="squares of the short side"):
        mmaction_three_crop_boxes(256, 455, 224)
    assert mmaction_three_crop_boxes(455, 256, 256) == [(0, 0, 256, 256), (198, 0, 256, 256), (99, 0, 256, 256)]


# ----------------------------------------------------------------------------- pixels


def _photo(height: int, width: int) -> np.ndarray:
    """A real photograph (matplotlib's sample, 600x512 Grace Hopper) scaled to a frame size."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    return np.asarray(image.resize((width, height), Image.LANCZOS))


SIZES = [(100, 176), (240, 427), (256, 455), (360, 640)]  # SSv1, SSv2, SSv2 extracted at 256, shrunk


def _frames(height: int, width: int, kind: str) -> list[np.ndarray]:
    if kind == "photo":
        photo = _photo(height, width)
        return [photo, np.ascontiguousarray(photo[::-1]), np.ascontiguousarray(photo[:, ::-1])]
    rng = np.random.default_rng(height * width)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(3)]


def _as_views(frames_per_view: list[list[np.ndarray]]) -> torch.Tensor:
    """(views, C, T, h, w) from lists of (h, w, 3) frames."""
    return torch.from_numpy(np.stack([np.stack(v) for v in frames_per_view])).permute(0, 4, 1, 2, 3)


def test_resized_sizes_of_each_protocol():
    assert tsm_short_side_size(100, 176, 256) == (256, 450)          # truncated
    assert short_side_size(100, 176, 256) == mmaction_short_side_size(100, 176, 256) == (256, 451)
    assert tsm_short_side_size(240, 427, 256) == (256, 455)
    assert tsm_short_side_size(256, 455, 256) == (256, 455)          # no resize
    assert tsm_short_side_size(176, 100, 256) == (450, 256)
    assert EvalTransform(protocol="tsm").short_side == 256 and EvalTransform(112, protocol="tsm").short_side == 128


@pytest.mark.parametrize("kind", ["random", "photo"])
@pytest.mark.parametrize("height,width", SIZES)
def test_tsm_pixels_are_pil_resize_then_crop(height, width, kind):
    """TSM: torchvision's Resize(256) on PIL images (long side truncated), CenterCrop(224)
    (offsets rounded half to even) and GroupFullResSample(224 or 256): bit for bit."""
    frames = _frames(height, width, kind)
    oh, ow = (256, int(256 * width / height))                     # torchvision's old F.resize
    scaled = [Image.fromarray(f).resize((ow, oh), Image.BILINEAR) for f in frames]

    def pil_crop(x, y, c):
        return [np.asarray(img.crop((x, y, x + c, y + c))) for img in scaled]

    i, j = int(round((oh - 224) / 2.0)), int(round((ow - 224) / 2.0))  # old CenterCrop
    want = _as_views([pil_crop(j, i, 224)])
    got = EvalTransform(224, protocol="tsm")(frames)
    assert torch.equal(got, want)
    for c, full_res in ((224, False), (256, True)):  # GroupFullResSample(c, 256, flip=False)
        w_step, h_step = (ow - c) // 4, (oh - c) // 4
        offsets = [(0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 2 * h_step)]
        want = _as_views([pil_crop(x, y, c) for x, y in offsets])
        got = EvalTransform(224, crops=3, protocol="tsm", full_res=full_res)(frames)
        assert got.shape == (3, 3, 3, c, c) and torch.equal(got, want)
    clip = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)  # a tensor clip: the same views
    assert torch.equal(EvalTransform(224, protocol="tsm")(clip), EvalTransform(224, protocol="tsm")(frames))
    if width == 455:
        assert j == 116  # where gdn and MMAction2 take 115


def _torch_resize_round(frames: list[np.ndarray], size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Float bilinear interpolation rounded to uint8: (C, T, h, w)."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=size, mode="bilinear", antialias=antialias, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(1, 0, 2, 3)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


@pytest.mark.parametrize("kind", ["random", "photo"])
@pytest.mark.parametrize("height,width", SIZES)
def test_mmaction_pixels_within_one_grey_level(height, width, kind):
    """MMAction2: Resize(scale=(-1, 256)) (mmcv rounds half up; cv2 bilinear, not
    antialiased), CenterCrop(224) at (W - 224) // 2, ThreeCrop(256) at 0, 2s, s."""
    frames = _frames(height, width, kind)
    scale = 256 / min(height, width)
    oh, ow = int(height * scale + 0.5), int(width * scale + 0.5)  # mmcv's rescale_size
    ref = _torch_resize_round(frames, (oh, ow), antialias=False)
    top, left = (oh - 224) // 2, (ow - 224) // 2
    got = EvalTransform(224, protocol="mmaction")(frames)
    assert got.shape == (1, 3, 3, 224, 224)
    assert _max_diff(got[0], ref[..., top:top + 224, left:left + 224]) <= 1
    step = (ow - 256) // 2
    three = EvalTransform(224, crops=3, protocol="mmaction")(frames)  # ThreeCrop: crops of the short side
    assert three.shape == (3, 3, 3, 256, 256)
    for view, x in zip(three, (0, 2 * step, step)):
        assert _max_diff(view, ref[..., :, x:x + 256]) <= 1


def test_mmaction_resize_matches_cv2_within_one_grey_level():
    cv2 = pytest.importorskip("cv2")  # not a dependency: checked where it is installed
    for height, width in SIZES[:2] + [(480, 640)]:
        frame = _photo(height, width)
        oh, ow = mmaction_short_side_size(height, width, 256)
        want = torch.from_numpy(cv2.resize(frame, (ow, oh), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)
        got = resize([frame], (oh, ow), antialias=False)[:, 0]
        assert _max_diff(got, want) <= 1


@pytest.mark.parametrize("kind", ["random", "photo"])
@pytest.mark.parametrize("height,width", SIZES)
def test_gdn_eval_crop_is_resize_then_crop(height, width, kind):
    """gdn's own views are cut from the whole resized frame: within one grey level of float
    antialiased interpolation rounded, then cropped. The box mapping training keeps (crop
    box rounded to whole source pixels, only the box resized) is far from it on SSv1's size."""
    frames = _frames(height, width, kind)
    oh, ow = short_side_size(height, width, 256)
    ref = _torch_resize_round(frames, (oh, ow), antialias=True)
    got = EvalTransform(224)(frames)
    top, left = (oh - 224) // 2, (ow - 224) // 2
    assert _max_diff(got[0], ref[..., top:top + 224, left:left + 224]) <= 1
    three = EvalTransform(224, crops=3)(frames)
    for view, x in zip(three, (0, (ow - 224) // 2, ow - 224)):
        assert _max_diff(view, ref[..., top:top + 224, x:x + 224]) <= 1
    if (height, width, kind) == (100, 176, "photo"):
        box = _to_source((top, left, 224, 224), height / oh, width / ow, height, width)
        assert box == (6, 44, 88, 87)  # for (6.25, 44.10, 87.5, 87.42)
        boxed = resized_crop(frames, box, (224, 224))
        assert (boxed.float() - got[0].float()).abs().mean() > 4  # 4.69 grey levels
