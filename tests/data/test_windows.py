"""Windows over long videos (gdn.data.windows): coverage, the last partial window, spans, and
the stream reader against `read_frames`."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from gdn.data.decode import DecodeError, read_frames
from gdn.data.sampling import SegmentSampler
from gdn.data.windows import Span, Window, WindowSampler, read_windows
from media import LOSSLESS, gradient_frames, write_video


@pytest.mark.parametrize("n,w,s", [(1, 8, 4), (7, 8, 4), (8, 8, 4), (9, 8, 4), (12, 8, 4), (13, 8, 4),
                                   (100, 16, 16), (100, 16, 12), (100, 16, 1), (31, 10, 3)])
def test_windows_cover_the_video_exactly(n, w, s):
    windows = WindowSampler(w, s, SegmentSampler(4, train=False)).windows(n)
    covered = np.zeros(n, int)
    for k, win in enumerate(windows):
        assert win.index == k and 0 <= win.start < win.end <= n
        covered[win.start : win.end] += 1
    assert covered.min() >= 1  # every frame is in a window, none lies past the end
    if n <= w:
        assert [(x.start, x.end) for x in windows] == [(0, n)]  # one window, the whole video
        return
    full = (n - w) // s + 1
    assert [(x.start, x.end) for x in windows[:full]] == [(k * s, k * s + w) for k in range(full)]
    if (n - w) % s:  # frames left after the last full window: one more, ending at the last frame
        assert len(windows) == full + 1 and (windows[-1].start, windows[-1].end) == (n - w, n)
    else:
        assert len(windows) == full and windows[-1].end == n


def test_window_clip_is_the_evaluation_clip_of_its_span():
    """A window's clip is TSN's evaluation clip of the window, shifted to the window's start."""
    sampler = SegmentSampler(4, train=False, clips=2)
    ws = WindowSampler(16, 8, sampler)
    win = Window(3, 24, 40)
    np.testing.assert_array_equal(ws.indices(win), 24 + sampler(16))
    assert ws.indices(win).tolist() == [[25, 29, 33, 37], [27, 31, 35, 39]]


def test_spans_in_seconds_and_frames():
    assert Span.parse("4") == Span(4.0, "s") and Span.parse("2.5s") == Span(2.5, "s")
    assert Span.parse("64f").frames(None) == 64
    assert Span.parse("2.5s").frames(Fraction(30000, 1001)) == 75  # 2.5 * 29.97 = 74.9
    for bad in ("0", "-1", "4x", "2.5f", "", "f"):
        with pytest.raises(ValueError, match="not a length"):
            Span.parse(bad)
    with pytest.raises(ValueError, match="frame rate is unknown"):
        Span.parse("2s").frames(None)
    with pytest.raises(ValueError, match="stride <= window"):
        WindowSampler.from_spans("8f", "9f", SegmentSampler(4, train=False), None)
    ws = WindowSampler.from_spans("1.5", None, SegmentSampler(4, train=False), Fraction(24))
    assert (ws.window, ws.stride) == (36, 36)
    assert ws.full(2) == Window(2, 72, 108, Fraction(24)) and ws.full(2).start_time == 3.0


@pytest.mark.parametrize("n", [5, 40, 45])
def test_stream_reader_gives_read_frames_pixels_for_every_window(tmp_path, n):
    """Decoded once as a stream, each window's frames equal `read_frames` of its indices (a
    lossless video, so the pixels are the encoded ones), in the order of `windows(n)`."""
    suffix, codec, pix_fmt, options = LOSSLESS["ffv1-mkv"]
    path = tmp_path / f"long{suffix}"
    write_video(path, gradient_frames(n), codec, pix_fmt, options)
    sampler = SegmentSampler(4, train=False, clips=2)
    got = list(read_windows(path, "16f", "12f", sampler))
    want = WindowSampler(16, 12, sampler).windows(n)
    assert [w for w, _ in got] == [Window(w.index, w.start, w.end, Fraction(12)) for w in want]
    for w, clips in got:
        idx = WindowSampler(16, 12, sampler).indices(w)
        assert len(clips) == 2 and all(len(c) == 4 for c in clips)
        for row, frames in zip(idx, clips):
            np.testing.assert_array_equal(np.stack(frames), np.stack(read_frames(path, row.tolist())))


def test_frame_folder_windows_at_12_fps(tmp_path):
    frames = gradient_frames(30)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i + 1:05d}.jpg", quality=95)
    got = list(read_windows(folder, "1s", "0.5s", SegmentSampler(4, train=False)))
    assert [(w.start, w.end) for w, _ in got] == [(0, 12), (6, 18), (12, 24), (18, 30)]
    assert got[-1][0].end_time == 2.5
    np.testing.assert_array_equal(np.stack(got[1][1][0]), np.stack(read_frames(folder, [7, 10, 13, 16])))


def test_unreadable_video_names_the_file(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 10)
    with pytest.raises(DecodeError, match="notes.mp4"):
        list(read_windows(bad, "8f", None, SegmentSampler(4, train=False)))


def test_a_video_cut_short_warns_and_its_windows_cover_what_decodes(tmp_path, caplog):
    """Case 20 (docs/reliability.md): an MP4 whose header (moov first) states 40 frames, cut at 60% of its bytes."""
    path = tmp_path / "cut.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for f in gradient_frames(40):
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    with caplog.at_level(logging.WARNING, logger="gdn.data.decode"):
        got = [w for w, _ in read_windows(path, "8f", None, SegmentSampler(4, train=False))]
    (warning,) = [r.getMessage() for r in caplog.records if "ends early" in r.getMessage()]
    n = int(warning.split("ends early: ")[1].split()[0])
    assert 8 < n < 40 and warning.startswith(f"{path}: the file ends early: {n} of the 40 frames")
    assert got == WindowSampler(8, 8, SegmentSampler(4, train=False)).windows(n)
