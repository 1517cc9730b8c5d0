"""Windowed prediction over long videos (Predictor.predict_windows) with a model whose answer
the test controls: the colour classifier of conftest.py."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from gdn.engine.predict import Predictor
from media import colour_frames, write_video

torch.set_num_threads(1)


def three_colour_video(path, seconds: int = 4, rate: int = 12, height: int = 24, width: int = 32):
    """Red, then green, then blue, `seconds` each, MPEG-4."""
    frames = np.concatenate([colour_frames(c, seconds * rate, height, width, seed=i)
                             for i, c in enumerate(("red", "green", "blue"))])
    write_video(path, frames, "mpeg4", "yuv420p", rate=rate)
    return path


def test_three_clips_give_their_three_labels_in_order(colour_checkpoint, tmp_path):
    video = three_colour_video(tmp_path / "long.mp4")  # 144 frames, 12 s
    predictor = Predictor(colour_checkpoint, device="cpu")
    got = list(predictor.predict_windows(video, "2s", "1s", topk=3, batch=3))
    assert [(p.window.start, p.window.end) for p in got] == [(12 * k, 12 * k + 24) for k in range(11)]
    assert [p.window.start_time for p in got] == [float(k) for k in range(11)]
    labels = [p.topk[0][1] for p in got]
    # windows inside one colour: that colour; the two windows across a cut may go either way
    inside = {k: c for c, ks in (("red", (0, 1, 2)), ("green", (4, 5, 6)), ("blue", (8, 9, 10))) for k in ks}
    assert {k: labels[k] for k in inside} == inside
    assert labels[3] in ("red", "green") and labels[7] in ("green", "blue")
    assert all(len(p.topk) == 3 and p.scores.shape == (3,) for p in got)


def test_one_window_over_the_whole_video_gets_the_video_scores(colour_checkpoint, tmp_path):
    """The window path samples and transforms as the dataset does: a window [0, N) is the video."""
    video = three_colour_video(tmp_path / "long.mp4", seconds=1)  # 36 frames
    predictor = Predictor(colour_checkpoint, device="cpu", clips=2)
    (window,) = predictor.predict_windows(video, "36f")
    whole = predictor.predict_item(predictor.dataset([video]), 0)
    assert (window.window.start, window.window.end) == (0, 36)
    np.testing.assert_allclose(window.scores, whole.scores, rtol=1e-6, atol=1e-7)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_memory_does_not_grow_with_the_video_length(colour_checkpoint, tmp_path):
    """Case 20 (docs/reliability.md): peak resident memory while predicting a 2400-frame video (320x240: 550 MB of RGB frames)
    is within 20 MB of that for a 240-frame one: frames are decoded as a stream, never kept."""
    predictor = Predictor(colour_checkpoint, device="cpu")

    def growth(frames: int) -> tuple[int, int]:
        path = tmp_path / f"long{frames}.mp4"
        with av.open(str(path), "w") as c:  # one picture, encoded `frames` times: quick to write
            s = c.add_stream("mpeg4", rate=12)
            s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
            still = av.VideoFrame.from_ndarray(colour_frames("green", 1, 240, 320)[0], format="rgb24")
            still = still.reformat(format="yuv420p")
            for i in range(frames):
                still.pts = i
                c.mux(s.encode(still))
            c.mux(s.encode())
        before = peak = _rss()
        count = 0
        for _ in predictor.predict_windows(path, "24f"):
            peak = max(peak, _rss())
            count += 1
        return peak - before, count

    growth(240)  # warm-up: first-call allocations of the decoder, the model and the allocator
    short, n_short = growth(240)
    long, n_long = growth(2400)
    assert (n_short, n_long) == (10, 100)
    assert long - short < 20 << 20, f"{short >> 20} MB for 240 frames, {long >> 20} MB for 2400"
