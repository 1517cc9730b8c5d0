import numpy as np
import pytest

from gdn.data.sampling import DenseSampler, SegmentSampler, build_sampler, uniform_indices


def test_val_takes_segment_centres():
    # 40 frames, 8 segments of 5: centres at 2.5 + 5 i -> floor
    assert SegmentSampler(8, train=False)(40).tolist() == [[2, 7, 12, 17, 22, 27, 32, 37]]
    # 30 frames, 8 segments of 3.75: floor(1.875 + 3.75 i)
    assert SegmentSampler(8, train=False)(30).tolist() == [[1, 5, 9, 13, 16, 20, 24, 28]]
    assert SegmentSampler(4, train=False)(4).tolist() == [[0, 1, 2, 3]]


def test_val_clips_evenly_spaced_inside_segments():
    # 2 clips: positions 1/4 and 3/4 of each 10-frame segment
    idx = SegmentSampler(4, train=False, clips=2)(40)
    assert idx.tolist() == [[2, 12, 22, 32], [7, 17, 27, 37]]
    idx = SegmentSampler(2, train=False, clips=5)(20)
    assert idx.tolist() == [[1, 11], [3, 13], [5, 15], [7, 17], [9, 19]]


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_short_videos_repeat_frames_deterministically(n):
    for train in (True, False):
        idx = SegmentSampler(8, train=train, clips=2)(n, np.random.default_rng(0))
        assert idx.shape == (2, 8)
        assert idx.tolist() == [uniform_indices(n, 8).tolist()] * 2
    assert uniform_indices(1, 8).tolist() == [0] * 8
    assert uniform_indices(5, 8).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]


def test_train_one_frame_per_segment_deterministic_per_seed():
    s = SegmentSampler(8, train=True)
    n = 50
    seen = set()
    for epoch in range(20):
        idx = s(n, np.random.default_rng([0, epoch, 3]))[0]
        again = s(n, np.random.default_rng([0, epoch, 3]))[0]
        assert idx.tolist() == again.tolist()
        lo = np.floor(np.arange(8) * n / 8)
        hi = np.ceil(np.arange(1, 9) * n / 8)  # frame 37 straddles segments [31.25, 37.5), [37.5, 43.75)
        assert ((idx >= lo) & (idx < hi)).all(), idx
        assert (np.diff(idx) >= 0).all()
        seen.add(tuple(idx))
    assert len(seen) > 15  # epochs differ


def test_train_covers_whole_segment():
    s = SegmentSampler(2, train=True)
    firsts = {int(s(20, np.random.default_rng(k))[0, 0]) for k in range(300)}
    assert firsts == set(range(10))


def test_dense():
    assert DenseSampler(4, train=False, stride=2)(20).tolist() == [[6, 8, 10, 12]]  # start 13 // 2
    assert DenseSampler(4, train=False, stride=2, clips=2)(20).tolist() == [[3, 5, 7, 9], [9, 11, 13, 15]]
    starts = {int(DenseSampler(4, train=True, stride=2)(20, np.random.default_rng(k))[0, 0])
              for k in range(300)}
    assert starts == set(range(14))  # 0 .. n - span
    assert DenseSampler(4, train=True, stride=3)(5, np.random.default_rng(0)).tolist() == [[0, 1, 2, 3]]


def test_errors():
    with pytest.raises(ValueError, match="0 frames"):
        SegmentSampler(8, train=False)(0)
    with pytest.raises(ValueError, match="unknown sampling"):
        build_sampler("uniformish", 8, train=True)
