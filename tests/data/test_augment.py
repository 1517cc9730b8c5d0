"""RandAugment, Mixup and CutMix are video-consistent: one set of parameters for every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdn.data.annotations import Annotations, Entry
from gdn.data.augment import RANDAUGMENT_OPS, RandAugment, mix_batch
from gdn.data.datasets import VideoDataset
from media import LOSSLESS, gradient_frames, write_video


def still_clip(t: int = 5, seed: int = 0) -> torch.Tensor:
    """uint8 (3, t, 20, 24): one random frame repeated t times."""
    frame = torch.from_numpy(np.random.default_rng(seed).integers(20, 236, (3, 1, 20, 24), dtype=np.uint8))
    return frame.expand(3, t, 20, 24).contiguous()


def assert_frames_identical(clip: torch.Tensor) -> None:
    for t in range(1, clip.shape[-3]):
        assert torch.equal(clip[..., 0, :, :], clip[..., t, :, :]), f"frame {t} differs from frame 0"


@pytest.mark.parametrize("name", sorted(RANDAUGMENT_OPS))
def test_each_randaugment_op_keeps_a_still_clip_still(name):
    clip = still_clip()
    changed = False
    for level in (0.5, 1.0):
        for sign in (-1.0, 1.0):
            out = RANDAUGMENT_OPS[name](clip, level, sign)
            assert out.dtype == torch.uint8 and out.shape == clip.shape
            assert_frames_identical(out)
            # the same op on one frame alone gives that frame (Equalize's integer look-up table
            # depends on the pixel count, so it may differ by rounding there)
            if name != "equalize":
                assert torch.equal(RANDAUGMENT_OPS[name](clip[:, :1], level, sign), out[:, :1])
            changed |= not torch.equal(out, clip)
    assert changed == (name != "identity"), "every op but identity changes this clip"


def test_clip_statistics_are_taken_over_the_whole_clip():
    # a dark frame and a bright frame: AutoContrast stretches the clip's range, not each frame's
    clip = torch.stack([torch.full((3, 4, 4), 50, dtype=torch.uint8), torch.full((3, 4, 4), 150, dtype=torch.uint8)], 1)
    out = RANDAUGMENT_OPS["autocontrast"](clip, 1.0, 1.0)
    assert out[:, 0].unique().tolist() == [0] and out[:, 1].unique().tolist() == [255]
    per_frame = RANDAUGMENT_OPS["autocontrast"](clip[:, :1], 1.0, 1.0)
    assert torch.equal(per_frame, clip[:, :1])  # one flat frame alone has no range to stretch


def test_randaugment_draws_from_the_generator_only():
    aug = RandAugment(num_ops=3, magnitude=9)
    clip = still_clip(4)
    a = aug(clip, np.random.default_rng([0, 1, 2]))
    b = aug(clip, np.random.default_rng([0, 1, 2]))
    assert torch.equal(a, b)
    draws = {tuple(aug.draw(np.random.default_rng([0, 1, i]))) for i in range(20)}
    assert len(draws) > 10  # different samples get different operations


def test_training_clip_of_a_still_video_stays_still_with_randaugment(tmp_path):
    # a video whose frames are all the same: crop, flip and RandAugment must keep them the same
    suffix, codec, pix_fmt, options = LOSSLESS["ffv1-mkv"]
    frames = np.repeat(gradient_frames(1), 12, axis=0)
    write_video(tmp_path / f"still{suffix}", frames, codec, pix_fmt, options)
    ann = Annotations("x", "train", tmp_path, ["a", "b"], [Entry("still", tmp_path / f"still{suffix}", 0, 1, False)])
    ds = VideoDataset(ann, frames=6, train=True, size=16, randaugment=4, randaugment_magnitude=9)
    plain = VideoDataset(ann, frames=6, train=True, size=16)
    differs = 0
    for epoch in range(6):
        clip = ds[(0, epoch)]["clip"]
        assert_frames_identical(clip)
        differs += not torch.equal(clip, plain[(0, epoch)]["clip"])
    assert differs >= 5  # RandAugment did act (identity twice in a row has a small chance)


def test_mixup_mixes_whole_clips_with_soft_targets():
    clips = torch.stack([still_clip(4, seed=s).float() for s in range(4)])  # (4, 3, 4, 20, 24)
    labels = torch.tensor([0, 1, 2, 1])
    mixed, target = mix_batch(clips, labels, 3, mixup=0.8, rng=np.random.default_rng(0))
    lam = float(target[0, 0])
    assert 0 < lam < 1
    assert torch.allclose(mixed, lam * clips + (1 - lam) * clips.flip(0))
    assert torch.allclose(target.sum(1), torch.ones(4))
    assert torch.allclose(target[0], torch.tensor([lam, 1 - lam, 0.0]))  # clip 0 (class 0) with clip 3 (class 1)
    for clip in mixed:
        assert_frames_identical(clip)


def test_cutmix_pastes_one_box_at_the_same_place_in_every_frame():
    clips = torch.stack([torch.full((3, 4, 20, 24), float(v)) for v in (1, 2, 3)])
    clips[:, :, 2] += 10  # frames differ in time: the box must still be the same in each
    labels = torch.tensor([0, 1, 2])
    for seed in range(5):
        mixed, target = mix_batch(clips, labels, 3, cutmix=1.0, rng=np.random.default_rng(seed))
        box = mixed[0] != clips[0]  # where clip 0 took clip 2's pixels
        assert box.any()
        for t in range(4):
            assert torch.equal(box[:, t], box[:, 0])
        assert torch.equal(mixed[0][box], clips[2][box])
        area = box[0, 0].float().mean()  # lam is the kept fraction, recomputed from the clipped box
        assert torch.allclose(target[0], torch.tensor([1 - area, 0.0, area]))


def test_with_both_each_batch_uses_one():
    clips = torch.rand(2, 3, 2, 8, 8)
    kinds = set()
    for seed in range(20):
        mixed, _ = mix_batch(clips, torch.tensor([0, 1]), 2, mixup=0.5, cutmix=1.0, rng=np.random.default_rng(seed))
        blended = not torch.isin(mixed, torch.cat([clips.flatten(), clips.flip(0).flatten()])).all()
        kinds.add("mixup" if blended else "cutmix")
    assert kinds == {"mixup", "cutmix"}
