"""Overlay videos and timeline PNGs (gdn.engine.render): the audio track is kept, a resize is
logged, the timeline bar shows each window's class in its colour."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from gdn.data.decode import count_frames
from gdn.data.windows import Window
from gdn.engine.predict import Prediction
from gdn.engine.render import class_colour, save_timeline, write_overlay
from media import colour_frames

CLASSES = ["red", "green", "blue"]


def video_with_sound(path, frames: int = 24, height: int = 144, width: int = 176, rate: int = 12) -> None:
    """MPEG-4 video (frames of changing grey) with a 440 Hz AAC tone as long as the video."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=rate)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        sent = 0
        for i in range(frames):
            c.mux(v.encode(av.VideoFrame.from_ndarray(np.full((height, width, 3), 10 * i, np.uint8), format="rgb24")))
            while sent < (i + 1) * 48000 // rate:
                tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sent, sent + 1024) / 48000)
                frame = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, sent
                c.mux(a.encode(frame))
                sent += 1024
        c.mux(v.encode())
        c.mux(a.encode())


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def prediction(k: int, p: float = 0.9, window: Window | None = None) -> Prediction:
    scores = np.full(3, (1 - p) / 2, np.float32)
    scores[k] = p
    top = [(int(i), CLASSES[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")]
    return Prediction("clip.mp4", top, scores, window)


def test_overlay_keeps_the_audio_and_logs_the_resize(tmp_path, caplog):
    """The issue's case: a 176x144 video with sound. The AAC packets are copied byte for byte
    (remuxed), every frame is written, and the upscale to 294x240 is logged."""
    src, dst = tmp_path / "talk.mp4", tmp_path / "overlay.mp4"
    video_with_sound(src)
    with caplog.at_level(logging.INFO, logger="gdn.engine.render"):
        assert write_overlay(src, dst, prediction(0)) == 24
    assert any("resized from 176x144 to 294x240" in r.getMessage() for r in caplog.records)
    assert count_frames(dst) == 24
    with av.open(str(dst)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (294, 240)
        assert c.streams.audio[0].codec_context.name == "aac"
    packets = audio_packets(src)
    assert len(packets) > 40 and audio_packets(dst) == packets


def test_overlay_reencodes_audio_its_container_cannot_take(tmp_path, caplog):
    """WebM takes no AAC: the sound is re-encoded (Opus or Vorbis) and lasts as long."""
    src, dst = tmp_path / "talk.mp4", tmp_path / "overlay.webm"
    video_with_sound(src, frames=12, height=48, width=64)
    with caplog.at_level(logging.INFO, logger="gdn.engine.render"):
        write_overlay(src, dst, prediction(1), min_short_side=48)
    assert not any("resized" in r.getMessage() for r in caplog.records)  # nothing to scale: not logged
    assert any("audio re-encoded from aac" in r.getMessage() for r in caplog.records)
    with av.open(str(dst)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name in ("opus", "vorbis", "libopus", "libvorbis")
        seconds = sum(f.samples for f in c.decode(audio)) / audio.rate
    assert seconds == pytest.approx(1.0, abs=0.1)


def test_window_overlay_draws_the_timeline_bar_in_class_colours(tmp_path):
    """Three windows (red, green, blue classes) over 36 frames: the bar at the bottom of every
    frame shows the three classes' colours left to right, and the label is the current window's."""
    src, dst = tmp_path / "long.mp4", tmp_path / "overlay.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for rgb in np.full((36, 240, 320, 3), 128, np.uint8):
            c.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(s.encode())
    windows = [prediction(k, 1.0, Window(k, 12 * k, 12 * k + 12, Fraction(12))) for k in range(3)]
    assert write_overlay(src, dst, windows) == 36
    with av.open(str(dst)) as c:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    bar = frames[5][-5]  # a row inside the 10-pixel bar
    for k, x in enumerate((53, 160, 266)):  # the middle of each window's third of the width
        assert np.abs(bar[x] - class_colour(k)).max() < 24, (k, bar[x], class_colour(k))
    # the cursor (white) moves with the frame; the label band (top left) changes with the window
    for i in (0, 17, 35):  # a 2-pixel white line ending at (i + 0.5) / 36 of the width
        x = int((i + 0.5) * 320 / 36)
        assert np.abs(frames[i][-5, x - 1 : x + 1] - 255).max() < 40
        assert np.abs(frames[i][-5, x + 4] - 255).max() > 100
    assert not np.array_equal(frames[5][:40, :100], frames[30][:40, :100])


def test_timeline_png(tmp_path):
    windows = [prediction(k % 3, 0.5 + 0.1 * k, Window(k, 6 * k, 6 * k + 12, Fraction(12))) for k in range(5)]
    path = tmp_path / "timeline.png"
    save_timeline(windows, path)
    with Image.open(path) as image:
        assert image.size == (1100, 500)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    for k in range(3):  # each class appears in its colour
        assert (np.abs(pixels.astype(int) - class_colour(k)).max(axis=1) < 3).sum() > 500


def test_class_colours_differ_for_twenty_classes():
    assert len({class_colour(k) for k in range(20)}) == 20 and class_colour(20) == class_colour(0)


@pytest.mark.parametrize("n,w,s", [(100, 16, 12), (37, 8, 3), (5, 8, 4), (1000, 48, 7)])
def test_each_frame_shows_the_window_with_the_nearest_centre(n, w, s):
    from gdn.data.sampling import SegmentSampler
    from gdn.data.windows import WindowSampler
    from gdn.engine.render import _nearest_window

    windows = WindowSampler(w, s, SegmentSampler(4, train=False)).windows(n)
    centres = np.array([(x.start + x.end) / 2 for x in windows])
    brute = np.abs(np.arange(n)[:, None] + 0.5 - centres[None]).argmin(axis=1)  # the earlier on a tie
    got = _nearest_window([prediction(0, window=x) for x in windows], n)
    np.testing.assert_array_equal(got, brute)
