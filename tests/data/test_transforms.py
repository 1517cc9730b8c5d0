import numpy as np
import pytest
import torch

from gdn.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform,
                                 center_crop_box, clip_size, crop, flip_label_map, hflip,
                                 mirror_class_name,
                                 frames_last, model_input, multiscale_crop_box,
                                 multiscale_crop_boxes, normalize, random_crop_box, resize,
                                 resize_short_side, short_side_size, stack_frames_last,
                                 three_crop_boxes)


def _clip(c=3, t=4, h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, t, h, w), dtype=torch.uint8, generator=g)


def test_center_and_three_crop_boxes():
    assert center_crop_box(256, 455, 224) == (16, 115, 224, 224)
    assert center_crop_box(455, 256, 224) == (115, 16, 224, 224)
    assert center_crop_box(10, 11, (4, 6)) == (3, 2, 4, 6)
    assert three_crop_boxes(256, 455, 224) == [(16, 0, 224, 224), (16, 115, 224, 224),
                                               (16, 231, 224, 224)]
    assert three_crop_boxes(300, 256, 224) == [(0, 16, 224, 224), (38, 16, 224, 224),
                                               (76, 16, 224, 224)]
    with pytest.raises(ValueError, match="does not fit"):
        center_crop_box(100, 200, 112)


def test_multiscale_candidates_are_tsn():
    pairs, offsets = multiscale_crop_boxes(256, 341, 224)
    # sides int(256 * (1, .875, .75, .66)) = 256, 224, 192, 168; aspect jitter of one step
    assert pairs == [(256, 256), (256, 224), (224, 256), (224, 224), (224, 192), (192, 224),
                     (192, 192), (192, 168), (168, 192), (168, 168)]
    # (224, 224) in 256x341: steps (32 // 4, 117 // 4) = (8, 29)
    assert offsets(224, 224) == [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58), (16, 0),
                                 (16, 116), (32, 58), (0, 58), (8, 29), (8, 87), (24, 29),
                                 (24, 87)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = multiscale_crop_box(256, 341, 224, rng)
        assert (h, w) in pairs and (top, left) in offsets(h, w)
        top, left, h, w = random_crop_box(256, 341, 224, rng)
        assert 0 <= top <= 32 and 0 <= left <= 117 and (h, w) == (224, 224)


def test_resize_short_side_and_dtype():
    clip = _clip(h=24, w=40)
    out = resize_short_side(clip, 12)
    assert out.shape == (3, 4, 12, 20) and out.dtype == torch.uint8
    assert short_side_size(240, 427, 256) == (256, 455)
    assert short_side_size(427, 240, 256) == (455, 256)
    # a constant frame stays constant (antialias weights sum to one)
    flat = torch.full((3, 2, 30, 50), 77, dtype=torch.uint8)
    assert (resize(flat, (17, 23)) == 77).all()


def test_normalize_values():
    clip = torch.zeros(3, 1, 1, 2, dtype=torch.uint8)
    clip[:, :, :, 1] = 255
    out = normalize(clip)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[c, 0, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-6)
        assert out[c, 0, 0, 1].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)
    views = torch.stack([clip, clip])  # (V, C, T, H, W) normalises per channel too
    assert torch.equal(normalize(views)[1], out)


def test_normalize_any_layout_same_bits_and_model_input():
    """The pipelines hand over uint8 frames-last clips; normalising them (on the device, in
    model_input) gives exactly the bits of normalising the channel-first clip."""
    clip = _clip(t=3, h=7, w=9)
    fl = frames_last(clip)
    assert torch.equal(fl, clip) and fl.movedim(0, -1).is_contiguous() and not clip.movedim(0, -1).is_contiguous()
    want = normalize(clip)
    assert torch.equal(normalize(fl), want) and normalize(fl).is_contiguous()
    batch = stack_frames_last([fl, frames_last(_clip(t=3, h=7, w=9, seed=1))])
    assert batch.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(batch, torch.stack([clip, _clip(t=3, h=7, w=9, seed=1)]))
    got = model_input(batch, "cpu")
    assert got.dtype == torch.float32 and torch.equal(got[0], want)
    assert model_input(got, "cpu") is got  # float clips are taken as normalised
    three = stack_frames_last([fl[None], fl[None]], torch.cat)
    assert three.shape == (2, 3, 3, 7, 9) and torch.equal(three[1], clip)


def test_train_transform_same_crop_for_every_frame_exact():
    """Scale 1 and size == short side: the output is an exact crop (no interpolation), so we can
    find it: one of the 13 TSN offsets, the same for all frames, sometimes flipped."""
    clip = _clip(h=32, w=48)
    tf = TrainTransform(size=32, short_side=32, flip="naive", scales=(1.0,))
    lefts = [0, 4, 8, 12, 16]  # (48 - 32) // 4 steps
    seen_flip = set()
    for seed in range(40):
        out, label = tf(clip, 5, np.random.default_rng(seed))
        assert out.shape == (3, 4, 32, 32) and label == 5 and out.dtype == torch.uint8
        assert out.movedim(0, -1).is_contiguous()  # frames-last storage
        matches = [(left, f) for left in lefts for f in (False, True)
                   if torch.equal(out, hflip(crop(clip, (0, left, 32, 32))) if f
                                  else crop(clip, (0, left, 32, 32)))]
        assert len(matches) == 1
        seen_flip.add(matches[0][1])
        out2, _ = tf(clip, 5, np.random.default_rng(seed))
        assert torch.equal(out, out2)  # a function of the generator only
    assert seen_flip == {False, True}


def test_train_transform_identical_frames_stay_identical():
    frame = _clip(t=1, h=60, w=90)
    clip = frame.expand(3, 5, 60, 90).contiguous()
    tf = TrainTransform(size=24, flip="naive")  # short side 27, scales and distortion
    for seed in range(5):
        out, _ = tf(clip, 0, np.random.default_rng(seed))
        assert out.shape == (3, 5, 24, 24)
        for t in range(1, 5):
            assert torch.equal(out[:, t], out[:, 0])


def test_flip_modes_and_labels():
    classes = ["Pushing something from left to right", "Pushing something from right to left",
               "Holding something"]
    fmap = flip_label_map(classes)
    assert fmap == [1, 0, 2]
    clip = _clip()
    label_tf = TrainTransform(size=32, short_side=32, flip="label", flip_map=fmap)
    none_tf = TrainTransform(size=32, short_side=32, flip="none")
    labels = {label_tf(clip, 0, np.random.default_rng(s))[1] for s in range(30)}
    assert labels == {0, 1}
    assert {label_tf(clip, 2, np.random.default_rng(s))[1] for s in range(30)} == {2}
    assert {label_tf(clip, -1, np.random.default_rng(s))[1] for s in range(30)} == {-1}
    assert {none_tf(clip, 0, np.random.default_rng(s))[1] for s in range(30)} == {0}
    with pytest.raises(ValueError, match="flip_map"):
        TrainTransform(flip="label")


def test_mirror_class_name():
    assert mirror_class_name("Turning the camera left while filming something") == \
        "Turning the camera right while filming something"
    assert mirror_class_name("Pulling something from Right to LEFT") == \
        "Pulling something from Left to RIGHT"
    assert mirror_class_name("Putting leftovers on the right-hand side") == \
        "Putting leftovers on the left-hand side"
    assert mirror_class_name("Holding something") == "Holding something"


def test_eval_transform_views():
    # 30x45 frame, short side 32 -> 32x48; centre crop 32 is the full height
    clip = _clip(h=32, w=48)
    one = EvalTransform(size=32, short_side=32)(clip)
    assert one.shape == (1, 3, 4, 32, 32)
    assert torch.equal(one[0], crop(clip, (0, 8, 32, 32))) and one.dtype == torch.uint8
    three = EvalTransform(size=32, short_side=32, crops=3)(clip)
    assert three.shape == (3, 3, 4, 32, 32)
    for view, left in zip(three, (0, 8, 16)):
        assert torch.equal(view, crop(clip, (0, left, 32, 32)))
    assert three.movedim(1, -1).is_contiguous()  # frames-last storage
    # 224 from a 240x427 frame: short side 256 then the centre 224
    big = EvalTransform()(torch.zeros(3, 2, 240, 427, dtype=torch.uint8))
    assert big.shape == (1, 3, 2, 224, 224)


def _frame_list(clip):
    """The frames of a uint8 (C, T, H, W) clip as (H, W, C) arrays the way the decoder hands
    them over: views with padded rows (swscale aligns its rows), not stacked."""
    c, t, h, w = clip.shape
    padded = np.zeros((t, h, w + 5, c), np.uint8)
    padded[:, :, :w] = clip.permute(1, 2, 3, 0).numpy()
    return [padded[i, :, :w] for i in range(t)]


def test_frame_list_clips_give_the_tensor_clips_results():
    """Every transform takes a clip as its list of decoded frames too (only the crop is then
    copied): the outputs are equal to those of the stacked (C, T, H, W) clip."""
    clip = _clip(t=5, h=30, w=52)
    frames = _frame_list(clip)
    assert clip_size(frames) == clip_size(clip) == (30, 52)
    box = (3, 7, 20, 31)
    cropped = crop(frames, box)
    assert torch.equal(cropped, crop(clip, box)) and frames_last(cropped).data_ptr() == cropped.data_ptr()
    with pytest.raises(ValueError, match="outside"):
        crop(frames, (20, 0, 20, 20))
    fmap = [1, 0]
    for flip in ("label", "naive", "none"):
        tf = TrainTransform(size=24, flip=flip, flip_map=fmap)
        for seed in range(12):  # scales, offsets and both flip outcomes
            want = tf(clip, 0, np.random.default_rng(seed))
            got = tf(frames, 0, np.random.default_rng(seed))
            assert got[1] == want[1] and torch.equal(got[0], want[0])
            assert got[0].movedim(0, -1).is_contiguous()  # frames-last, as the loader stacks it
    for crops in (1, 3):
        tf = EvalTransform(size=24, crops=crops)
        assert torch.equal(tf(frames), tf(clip))
