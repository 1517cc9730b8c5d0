"""Pictures of predictions: overlay videos and timeline PNGs.

- `write_overlay` re-encodes a video with its predictions drawn on every frame: the top classes
  of the video, or for windowed predictions the current window's and a timeline bar along the
  bottom (one colour per class, brighter where the model is surer, a cursor at the current
  time). The audio track is copied as it is (remuxed) when the output container takes its
  codec, else re-encoded; the video is read as a stream, never held in memory.
- `save_timeline` draws windowed predictions over time as a PNG.
- `VideoWriter` is the one encoder both use (and `gdn explain`'s overlay video).

Each class keeps one colour everywhere (`class_colour`), in the PNG and on the video.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gdn.data.decode import DecodeError, FrameStream, RgbConverter, count_frames, read_frames
from gdn.data.windows import FOLDER_RATE
from gdn.engine.predict import Prediction
from gdn.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["VideoWriter", "class_colour", "draw_lines", "save_timeline", "write_overlay"]

# In order of preference: the first one this FFmpeg build has and the output container takes.
_VIDEO_CODECS = ("libx264", "mpeg4", "libvpx-vp9", "libvpx")
_AUDIO_CODECS = ("aac", "libopus", "libvorbis")


def class_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of class ``index``: matplotlib's tab20, its strong tones first (the
    colours of tab10), then their light variants; it repeats after 20 classes."""
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["tab20"](((2 * index) % 20 + (index // 10) % 2) / 20 + 0.025)
    return round(255 * r), round(255 * g), round(255 * b)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def draw_lines(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """The frame with `lines` drawn top-left on a translucent dark band (Pillow ImageDraw), in
    a font of 1/18 of the frame's height, smaller (down to 8 px) where a line would not fit."""
    image = Image.fromarray(frame).convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    size = max(10, image.height // 18)
    while True:
        font = _font(size)
        pad, step = size // 3, int(size * 1.25)
        width = max(draw.textlength(line, font=font) for line in lines)
        if width + 2 * pad <= image.width or size <= 8:
            break
        size -= 1
    draw.rectangle((0, 0, width + 2 * pad, pad * 2 + step * len(lines)), fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * step), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(image, overlay).convert("RGB"))


def legible_size(height: int, width: int, min_short_side: int) -> tuple[int, int]:
    """``(height, width)`` scaled up (never down) to a short side of ``min_short_side``, both
    even (yuv420p)."""
    scale = max(1.0, min_short_side / min(height, width))
    return int(round(height * scale / 2)) * 2, int(round(width * scale / 2)) * 2


class VideoWriter:
    """Encodes RGB frames into ``dst``: H.264 (yuv420p) when this FFmpeg build has an encoder for
    it, else the first of MPEG-4 Part 2, VP9, VP8 that the container (chosen by the file suffix)
    takes. ``audio``: an input audio stream whose packets `mux_audio` copies (remuxed) when the
    container takes its codec, or re-encodes (AAC, Opus or Vorbis) when it does not.
    """

    def __init__(self, dst: str | Path, width: int, height: int, rate: Fraction,
                 audio: av.AudioStream | None = None) -> None:
        self.path = Path(dst)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.container = av.open(str(self.path), mode="w")
        except (av.FFmpegError, ValueError) as e:
            raise UsageError(f"{self.path}: cannot write a video there ({e}); use a .mp4 or .mkv name") from e
        takes = self.container.supported_codecs
        codec = next((c for c in _VIDEO_CODECS if c in av.codecs_available and c in takes), None)
        if codec is None:
            self.container.close()
            raise UsageError(f"{self.path}: no video encoder for this container; use a .mp4 or .mkv name")
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.codec, self.frames = codec, 0
        self.audio_in, self.audio_out, self._resampler = audio, None, None
        if audio is not None:
            if audio.codec_context.name in takes:
                self.audio_out = self.container.add_stream_from_template(audio)
            else:
                name = next((c for c in _AUDIO_CODECS if c in av.codecs_available and c in takes), None)
                if name is None:
                    log.warning("%s: the container takes no audio codec this FFmpeg can encode: "
                                "the overlay has no sound", self.path)
                    self.audio_in = None
                else:
                    self.audio_out = self.container.add_stream(name, rate=audio.rate)
                    self.audio_out.layout = audio.layout
                    fmt = self.audio_out.codec_context.codec.audio_formats[0].name
                    self._resampler = av.AudioResampler(format=fmt, layout=audio.layout, rate=audio.rate)
                    log.info("%s: audio re-encoded from %s to %s (the container does not take %s)",
                             self.path, audio.codec_context.name, name, audio.codec_context.name)

    def write(self, rgb: np.ndarray, pts: int | None = None, time_base: Fraction | None = None) -> None:
        """One frame; ``pts`` in ``time_base`` keeps the input's timing (and the sound in sync)."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if pts is not None:
            frame.pts, frame.time_base = pts, time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def mux_audio(self, packet: av.Packet) -> None:
        """One packet of the input audio stream given to the constructor."""
        if self.audio_in is None or packet.dts is None:  # dts None: the demuxer's flush packet
            return
        if self._resampler is None:
            packet.stream = self.audio_out
            self.container.mux(packet)
            return
        for frame in packet.decode():
            for out in self._resampler.resample(frame):
                self.container.mux(self.audio_out.encode(out))

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self.container.mux(self.audio_out.encode(out))
            self.container.mux(self.audio_out.encode())
        self.container.close()


def _frames_of(src: Path) -> tuple[Iterator[tuple[np.ndarray, int | None, Fraction | None]], Fraction, FrameStream | None]:
    """Every frame of a video file or frame folder as (RGB, pts, time_base), the frame rate, and
    the open stream to close (None for a folder). Folders are read 64 frames at a time."""
    if src.is_dir():
        n = count_frames(src)
        chunks = (read_frames(src, range(a, min(a + 64, n))) for a in range(0, n, 64))
        return ((f, None, None) for chunk in chunks for f in chunk), FOLDER_RATE, None
    stream = FrameStream(src)
    to_rgb = RgbConverter()
    return ((to_rgb(f), f.pts, f.time_base) for f in stream), stream.rate or FOLDER_RATE, stream


def _audio_packets(src: Path) -> tuple[av.container.InputContainer | None, av.AudioStream | None]:
    if src.is_dir():
        return None, None
    container = av.open(str(src))
    if not container.streams.audio:
        container.close()
        return None, None
    return container, container.streams.audio[0]


def _nearest_window(windows: Sequence[Prediction], num_frames: int) -> np.ndarray:
    """For every frame, the index of the window whose centre is nearest (the earlier on a tie):
    with overlapping windows, the one that saw the most around that frame."""
    centres = np.array([(p.window.start + p.window.end) / 2 for p in windows])  # increasing
    frames = np.arange(num_frames) + 0.5
    if len(centres) == 1:
        return np.zeros(num_frames, np.int64)
    right = np.searchsorted(centres, frames).clip(1, len(centres) - 1)
    left = right - 1
    return np.where(frames - centres[left] <= centres[right] - frames, left, right)


def _timeline_strip(windows: Sequence[Prediction], num_frames: int, width: int, height: int) -> np.ndarray:
    """``(height, width, 3)``: one column per slice of time, coloured by the class of the nearest
    window, brighter the surer it is."""
    owner = _nearest_window(windows, num_frames)
    at = owner[np.minimum((np.arange(width) + 0.5) * num_frames / width, num_frames - 1).astype(int)]
    colours = np.array([class_colour(p.topk[0][0]) for p in windows], np.float32)
    sure = np.array([p.topk[0][2] for p in windows], np.float32)
    column = colours[at] * (0.35 + 0.65 * sure[at])[:, None]
    return np.broadcast_to(column[None], (height, width, 3)).astype(np.uint8)


def write_overlay(src: str | Path, dst: str | Path, predictions: Prediction | Sequence[Prediction],
                  *, min_short_side: int = 240) -> int:
    """Re-encode every frame of `src` into `dst` with the predictions drawn on it.

    ``predictions``: one `Prediction` of the whole video (its top classes on every frame), or the
    window predictions of `Predictor.predict_windows` (each frame shows the nearest window's top
    classes and times, above a timeline bar of all windows with a cursor). Inputs with a short
    side under ``min_short_side`` are scaled up so the text stays legible, and the resize is
    logged. The first audio track is kept (see `VideoWriter`). Returns the number of frames
    written.
    """
    src, windows = Path(src), None
    if not isinstance(predictions, Prediction):
        windows = list(predictions)
        num_frames = windows[-1].window.end
        owner = _nearest_window(windows, num_frames)
    frames, rate, stream = _frames_of(src)
    audio_container, audio = _audio_packets(src)
    packets = audio_container.demux(audio) if audio_container is not None else iter(())
    pending = next(packets, None)
    writer = strip = None
    try:
        for i, (rgb, pts, time_base) in enumerate(frames):
            if writer is None:
                h, w = rgb.shape[:2]
                out_h, out_w = legible_size(h, w, min_short_side)
                if (out_h, out_w) != (h, w):
                    log.info("%s: frames resized from %dx%d to %dx%d so the text stays legible "
                             "(short side at least %d)", dst, w, h, out_w, out_h, min_short_side)
                writer = VideoWriter(dst, out_w, out_h, rate, audio)
                if windows is not None:
                    strip = _timeline_strip(windows, num_frames, out_w, max(6, out_h // 24))
            if rgb.shape[:2] != (out_h, out_w):
                rgb = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), Image.BILINEAR))
            if windows is None:
                lines = [f"{c}: {100 * p:.1f}%" for _, c, p in predictions.topk]
            else:
                p = windows[owner[min(i, num_frames - 1)]]
                lines = [f"{p.window.start_time:.1f}-{p.window.end_time:.1f} s"]
                lines += [f"{c}: {100 * q:.1f}%" for _, c, q in p.topk[:3]]
                rgb = rgb.copy()
                rgb[-strip.shape[0]:] = strip
                x = min(out_w - 1, int((i + 0.5) * out_w / num_frames))
                rgb[-strip.shape[0]:, max(0, x - 1) : x + 1] = 255  # the cursor
            # the sound up to this frame's time first, so the muxer never holds more than a frame's worth
            t = None if pts is None else pts * time_base
            while pending is not None and (t is None or pending.pts is None or pending.pts * pending.time_base <= t):
                writer.mux_audio(pending)
                pending = next(packets, None)
            writer.write(draw_lines(rgb, lines), pts, time_base)
        if writer is None:
            raise DecodeError(f"{src}: contains no video frames; re-download or re-encode it")
        while pending is not None:
            writer.mux_audio(pending)
            pending = next(packets, None)
        writer.close()
    finally:
        if stream is not None:
            stream.close()
        if audio_container is not None:
            audio_container.close()
    log.info("wrote %s (%d frames, %s%s)", dst, writer.frames, writer.codec,
             ", with its audio" if writer.audio_in is not None else "")
    return writer.frames


def save_timeline(predictions: Sequence[Prediction], path: str | Path, title: str = "") -> None:
    """Window predictions over time as a PNG.

    Top: each window's best class as a bar over the part of the time line nearest its centre,
    as high as its probability, in the class's colour. Bottom: the probability of every class
    that is best somewhere, at each window's centre, in the same colours.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = list(predictions)
    rate = windows[0].window.rate
    num_frames = windows[-1].window.end
    owner = _nearest_window(windows, num_frames)
    best = sorted({p.topk[0][0] for p in windows})
    names = {i: c for p in windows for i, c, _ in p.topk}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1.4]})
    # runs of frames owned by the same window -> one bar each
    edges = np.flatnonzero(np.diff(owner)) + 1
    for a, b in zip(np.r_[0, edges], np.r_[edges, num_frames]):
        p = windows[owner[a]]
        k, _, prob = p.topk[0]
        top.bar(float(a / rate), prob, width=float((b - a) / rate), align="edge",
                color=np.array(class_colour(k)) / 255, edgecolor="white", linewidth=0.5)
    top.set_ylim(0, 1)
    top.set_ylabel("best class,\nprobability")
    centres = np.array([(p.window.start_time + p.window.end_time) / 2 for p in windows])
    for k in best:
        probs = [float(p.scores[k]) for p in windows]
        bottom.plot(centres, probs, "-o", ms=3, color=np.array(class_colour(k)) / 255,
                    label=names.get(k, str(k)))
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("probability")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, float(num_frames / rate))
    bottom.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(3, len(best)), fontsize=8,
                  frameon=False)
    w = windows[0].window
    top.set_title(title or f"{windows[0].path}: {len(windows)} windows of "
                  f"{float((w.end - w.start) / rate):.3g} s", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
