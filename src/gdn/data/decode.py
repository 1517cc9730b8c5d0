"""Decoding videos and JPEG frame folders into uint8 RGB frames: one reader, `read_frames`.

Something-Something V2 ships VP9 WebM files, V1 ships folders of JPEG frames
(`<id>/00001.jpg ...`); `read_frames(path, indices)` reads either into a list of
uint8 `(H, W, 3)` RGB arrays, one per index.

Frame indices are 0-based positions in presentation order: index `i` is the
`i`-th frame the decoder outputs, or the `i`-th file of the sorted frame
folder (so `00001.jpg` is index 0). `count_frames` counts in the same terms,
so `range(count_frames(p))` are exactly the indices `read_frames` accepts.

Long videos and live sources are read once, in order, by `FrameStream`, which hands over the
decoder's pictures for a caller to convert (`RgbConverter`) only where it needs them
(`gdn.data.windows`, `gdn predict --window` / `--source`).

Videos are opened inside each call (the readers run in DataLoader workers,
where a container must not be shared across processes) and always closed.
Decoding stops at the largest requested index and only requested frames are
converted to RGB: the YUV->RGB conversion costs about as much as decoding.
VP8/VP9 WebM files are demuxed by `gdn.data.webm` and decoded by a bare decoder,
without `av.open`, whose stream analysis decodes the first frame however little it is
asked to probe: the parser saves 13-18% of a 240p training item's CPU time against
`av.open` with probing cut down (docs/benchmarks.md, "WebM demuxing"). Anything the
parser declines goes through PyAV's demuxer.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from gdn.data.webm import WebmVideo, parse_webm
from gdn.errors import GdnError

try:  # a core dependency; Pillow decodes everything if it is missing
    import simplejpeg
except ImportError:  # pragma: no cover
    simplejpeg = None

log = logging.getLogger(__name__)

__all__ = [
    "VIDEO_SUFFIXES",
    "DecodeError",
    "FrameCountCache",
    "FrameStream",
    "RgbConverter",
    "StreamError",
    "count_frames",
    "count_frames_cached",
    "frame_number_gaps",
    "list_frame_files",
    "read_frames",
]

# What a video file is called, where a folder is searched for videos (`gdn predict` on a folder,
# folder datasets): the usual containers FFmpeg, and so PyAV, reads.
VIDEO_SUFFIXES = (".webm", ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv",
                  ".3gp", ".ts", ".mts", ".m2ts", ".gif")

# Codecs whose containers (WebM/Matroska/MP4) carry exactly one packet per shown
# frame: VP8/VP9 pack hidden alt-ref frames into the same "superframe" packet
# as the next shown frame, AV1 packs a temporal unit per packet. For these,
# demuxing (no decoding) gives the exact frame count; tests/data/test_decode.py checks
# it against a full decode, alt-ref frames included.
_ONE_PACKET_PER_FRAME = {"vp8", "vp9", "av1", "libdav1d", "libvpx", "libvpx-vp9"}

# File suffixes worth trying `parse_webm` on (it declines anything else it is handed).
_WEBM_SUFFIXES = {".webm", ".mkv"}
# The parser reads the whole file into memory: fine for clips (SSv2's are ~100 KB), not for
# hour-long recordings, which PyAV reads packet by packet.
_WEBM_MAX_BYTES = 64 << 20

# `00001.jpg` (SSv1), `img_00001.jpg` (TSM/TSN extraction), `frame_1.jpeg`, ...
_FRAME_FILE = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)\.jpe?g$", re.IGNORECASE)


class DecodeError(GdnError):
    """A video or frame file that cannot be read; the message names the file and what to do."""


def read_frames(path: str | Path, indices: Sequence[int]) -> list[np.ndarray]:
    """Frames `indices` of `path`, a video file or a JPEG frame folder: one uint8 `(H, W, 3)`
    RGB array per index, in the order of `indices`.

    `indices` are 0-based (see the module docstring), in any order, repeats allowed. The
    arrays are the decoded frames themselves, not copies (a repeated index gives the same
    array): a caller that keeps only part of each frame, such as a training crop, copies only
    those pixels (`gdn.data.transforms.crop`); one that wants a `(T, H, W, 3)` array stacks
    them (`np.stack`).

    A video is decoded up to its largest index and only the requested frames are converted
    to RGB (one size per clip, that of the first requested frame). A frame folder is listed
    (as `list_frame_files`) and only the requested files are read, each once.

    Raises DecodeError, naming the file and what to do, when `path` is missing, cannot be
    decoded, or has no frame at the largest index (a stale frame count: regenerate it);
    ValueError for a negative index.
    """
    wanted = [int(i) for i in indices]
    if any(i < 0 for i in wanted):
        raise ValueError(f"{path}: frame indices must be >= 0, got {min(wanted)}")
    # os.path, not Path methods, on the frame-folder path: it runs per clip, and a Path costs
    # as much to build as a stat
    if os.path.isdir(path):
        return _read_folder(path, wanted)
    return _read_video(Path(path), wanted)


# ----------------------------------------------------------------------------- videos


def _not_found(path: str | Path, folder: bool) -> DecodeError:
    # No advice here: a dataset adds where the path came from (`VideoDataset`), `gdn predict`
    # shows it as typed.
    return DecodeError(f"{path}: {'frame folder' if folder else 'file'} not found")


def _check_file(path: Path) -> None:
    if not path.exists():
        # A missing path says nothing of what it was meant to be: frame folders are named by
        # their id (SSv1's `20bn-something-something-v1/102`), videos carry a suffix (`201.webm`).
        raise _not_found(path, folder=not path.suffix)
    if not path.is_file():
        raise DecodeError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: file is empty (0 bytes); re-download or re-extract it")


def _open(path: Path) -> av.container.InputContainer:
    _check_file(path)
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(
            f"{path}: cannot be opened as a video ({e}); the file is corrupt or not a video, "
            "re-download or re-encode it"
        ) from e


def _one_thread(codec_context: av.CodecContext) -> None:
    """One thread per decoder: readers run in parallel DataLoader workers, and frame
    threading adds latency without helping one short clip."""
    codec_context.thread_type = "SLICE"
    codec_context.thread_count = 1


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise DecodeError(f"{path}: has no video stream; is it the right file?")
    stream = container.streams.video[0]
    _one_thread(stream.codec_context)
    return stream


def _parse_webm_file(path: Path) -> WebmVideo | None:
    """`path`'s video track as parsed by `gdn.data.webm`, or None where PyAV must demux it:
    not a .webm/.mkv file, unreadable, or declined by the parser (its fallback)."""
    if path.suffix.lower() not in _WEBM_SUFFIXES:
        return None
    _check_file(path)
    if path.stat().st_size > _WEBM_MAX_BYTES:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None  # `_open` reports it
    return parse_webm(data)


def _decode_packets(video: WebmVideo) -> Iterator[av.VideoFrame]:
    """The frames of `video`'s packets from a bare decoder, set up as `_video_stream` sets
    up PyAV's. Gives the same frames as `container.decode` (tests/data/test_webm.py compares
    them) without `av.open`'s probing."""
    codec_context = av.CodecContext.create(video.codec, "r")
    _one_thread(codec_context)
    for payload in video.packets:
        yield from codec_context.decode(av.Packet(payload))
    yield from codec_context.decode(None)  # flush: frames still held by the decoder


def count_frames(path: str | Path, *, strict: bool = False) -> int:
    """Exact number of frames the decoder outputs for `path` (a video file or a frame folder).

    VP8/VP9/AV1 (WebM stores no count: PyAV's `stream.frames` is 0) are counted by
    demuxing, one packet per frame, which is exact (checked against decoding for VP8/VP9 in
    tests/data/test_decode.py) and needs no decoding. VP8/VP9 WebM is demuxed by `gdn.data.webm`
    (same count, tests/data/test_webm.py), other files and what it declines by PyAV.
    Other codecs use the stored count when the container has one (and demuxes as many
    packets), else decode. A frame folder counts its frame files (see `list_frame_files`).

    A video that ends before its header says (a truncated download or copy: fewer packets than
    the stored count, or the last packet well before the declared duration) counts the frames
    that can be read; it is logged as a warning once per file and process, or, with `strict`
    (`gdn check-data`), raised as a DecodeError.

    Raises DecodeError for missing, empty, corrupt or frameless files.
    """
    n, short = _count(path)
    if short:
        _ends_early(path, short, strict)
    return n


def _count(path: str | Path) -> tuple[int, str | None]:
    """`(frames, how the file ends early or None)` for `count_frames`."""
    path = Path(path)
    if path.is_dir():
        return len(_frame_names(path)), None
    video = _parse_webm_file(path)  # it declines truncated files: PyAV then sees how
    n, short = (len(video.packets), None) if video is not None else _count_frames_pyav(path)
    if n == 0:
        raise DecodeError(f"{path}: contains no video frames; re-download or re-encode it")
    return n, short


_ENDS_EARLY_WARNED: set[str] = set()


def _ends_early(path: str | Path, short: str, strict: bool) -> None:
    """Report a video that ends before its header says: DecodeError if `strict`, else one warning
    per file and process (counts are taken per clip where no cache keeps them)."""
    if strict:
        raise DecodeError(f"{path}: {short}; re-download or re-encode it")
    if str(path) not in _ENDS_EARLY_WARNED:
        _ENDS_EARLY_WARNED.add(str(path))
        log.warning("%s: %s; only those frames are used (re-download or re-encode it to use the "
                    "whole video)", path, short)


def _count_frames_pyav(path: Path) -> tuple[int, str | None]:
    """`_count` through PyAV's demuxer: packets, or decoded frames where packets do not count
    frames; incomplete (corrupt-flagged) packets at a cut are not frames."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        stored = stream.frames
        one_per_frame = stream.codec_context.name in _ONE_PACKET_PER_FRAME
        by_decoding = not one_per_frame and stored <= 0
        packets = decoded = 0
        end = None  # where the last packet ends, in stream time base units
        try:
            for packet in container.demux(stream):
                if packet.is_corrupt:
                    continue
                if by_decoding:
                    decoded += len(packet.decode())  # the last, empty packet flushes the decoder
                if packet.size > 0 and not packet.is_discard:
                    packets += 1
                    if packet.pts is not None:
                        end = max(end or 0, packet.pts + (packet.duration or 0))
        except av.FFmpegError as e:
            raise DecodeError(
                f"{path}: cannot be read to the end ({e}); the file is truncated or corrupt, "
                "re-download or re-encode it"
            ) from e
        if by_decoding:
            n = decoded
        else:
            n = packets if one_per_frame or packets < stored else stored
        if stored > 0:
            short = (f"the file ends early: {packets} of the {stored} frames its header declares could "
                     "be read") if packets < stored else None
        else:
            short = _short_duration(container, stream, end, n)
        return n, short


def _short_duration(container: av.container.InputContainer, stream: av.VideoStream, end: int | None,
                    n: int) -> str | None:
    """How a video without a stored frame count ends early, or None: its last packet ends more
    than 5% of the duration its header declares (and two frames) before that duration."""
    if end is None or stream.time_base is None:
        return None
    start = stream.start_time or 0
    if stream.duration:
        declared = float(stream.duration * stream.time_base)
    elif container.duration:
        declared = container.duration / av.time_base - float(start * stream.time_base)
    else:
        return None
    read = float((end - start) * stream.time_base)
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    slack = max(0.05 * declared, 2 / rate if rate else 0.0)
    if read >= declared - slack:
        return None
    about = f" (about {round(declared * rate)} frames)" if rate else ""
    return (f"the file ends early: {n} frames ({read:.1f} s) could be read of the {declared:.1f} s its header "
            f"declares{about}")


def _read_video(path: Path, wanted: list[int]) -> list[np.ndarray]:
    """`read_frames` of a video file."""
    video = _parse_webm_file(path)
    if video is not None:
        return _collect_frames(_decode_packets(video), wanted, path) if wanted else []
    with _open(path) as container:
        stream = _video_stream(container, path)
        return _collect_frames(container.decode(stream), wanted, path) if wanted else []


def _collect_frames(frames: Iterable[av.VideoFrame], wanted: list[int], path: Path
                    ) -> list[np.ndarray]:
    """Frames `wanted` (not empty) of the decoded `frames` of `path`, as `read_frames`
    returns them; stops decoding after the largest index."""
    needed, last = set(wanted), max(wanted)
    converted: dict[int, np.ndarray] = {}  # frame index -> its RGB pixels
    decoded = 0
    to_rgb = RgbConverter()  # one per clip: one size per clip
    try:
        for index, frame in enumerate(frames):
            decoded = index + 1
            if index in needed:
                converted[index] = to_rgb(frame)
            if index >= last:
                break
    except av.FFmpegError as e:
        raise DecodeError(
            f"{path}: decoding failed after {decoded} frames ({e}); the file is corrupt, "
            "re-download or re-encode it"
        ) from e
    if last >= decoded:
        raise DecodeError(
            f"{path}: asked for frame index {last} but the video has only {decoded} decodable "
            "frames; if the frame count came from a cache, delete the cache file and rerun"
        )
    return [converted[i] for i in wanted]


class RgbConverter:
    """Decoded frames -> uint8 `(H, W, 3)` RGB arrays, all of one size: that of the first
    frame converted (VP9 may change resolution mid-stream, a clip or a window must not).

    One converter serves many frames: a fresh swscale context per frame (what
    `frame.to_ndarray(format=...)` makes) costs ~25% of the read time of a 16-frame clip.
    One swscale thread: its default (one per CPU) costs ~1.6x the CPU time for the same
    pixels in a DataLoader worker, and the workers already use every core. Not thread-safe:
    one converter per thread.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()
        self.size: tuple[int, int] | None = None  # (width, height)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.size is None:
            self.size = frame.width, frame.height
        return _rgb_pixels(self._reformatter.reformat(
            frame, format="rgb24", width=self.size[0], height=self.size[1], threads=1))


def _rgb_pixels(frame: av.VideoFrame) -> np.ndarray:
    """An rgb24 frame's pixels as a `(H, W, 3)` array over the frame's own buffer, which the
    array keeps alive. `frame.to_ndarray()` would copy them (row by row, as swscale pads its
    rows), and `read_frames`'s callers copy what they keep anyway."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : 3 * frame.width].reshape(frame.height, frame.width, 3)


# ----------------------------------------------------------------------------- streams


class StreamError(DecodeError):
    """A live source that cannot be opened, stalls or drops its connection (exit code 1: the
    input was valid, the run failed)."""

    exit_code = 1

    def __init__(self, message: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.stalled = stalled


class FrameStream:
    """The frames of a long video file or a live source, decoded once, in presentation order.

    Iterating yields the decoder's pictures (`av.VideoFrame`, not converted): a caller converts
    only those it uses (`RgbConverter`), as `read_frames` does; a long video is never held in
    memory. Use it as a context manager (the container is closed on exit).

    Args:
        source: a video file, or with `live=True` anything `av.open` accepts: a URL (rtsp://,
            http://, udp://, tcp://), a device (`/dev/video0` with `format="v4l2"`), a named
            pipe, or "-" for standard input.
        live: no file checks; a read that waits longer than `timeout` seconds raises
            `StreamError(stalled=True)`, a connection error `StreamError`.
        format: the input format, for sources FFmpeg cannot guess (v4l2, mpegts, ...).
        timeout: seconds a live source may take to open and to deliver each packet.

    Attributes: `rate` (frames per second: the stream's average rate, else FFmpeg's guess,
    else None), `stated_frames` (the container's frame count, 0 when it has none) and
    `decoded` (frames yielded so far).
    """

    def __init__(self, source: str | Path, *, live: bool = False, format: str | None = None,
                 timeout: float = 10.0) -> None:
        self.source, self.live, self.decoded = str(source), live, 0
        if live:
            target = "pipe:0" if self.source == "-" else self.source
            try:
                self.container = av.open(target, format=format, timeout=(timeout, timeout))
            except (av.FFmpegError, OSError) as e:
                raise StreamError(f"{source}: cannot be opened ({e})", stalled=isinstance(e, av.ExitError)) from e
        else:
            self.container = _open(Path(source))
        try:
            if not self.container.streams.video:
                raise DecodeError(f"{source}: has no video stream; is it the right source?")
            self.stream = self.container.streams.video[0]
        except DecodeError:
            self.container.close()
            raise
        # Frame threading adds a few frames of latency: fine for files, not for a live source.
        self.stream.codec_context.thread_type = "SLICE" if live else "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.rate = Fraction(rate) if rate else None
        self.stated_frames = self.stream.frames
        self.timeout = timeout

    def __iter__(self) -> Iterator[av.VideoFrame]:
        try:
            for frame in self.container.decode(self.stream):
                self.decoded += 1
                yield frame
        except av.ExitError as e:  # PyAV's read timeout (live sources)
            raise StreamError(f"{self.source}: no data for {self.timeout:g} s after {self.decoded} frames; "
                              "the source stalled", stalled=True) from e
        except av.FFmpegError as e:
            if self.live:
                raise StreamError(f"{self.source}: connection lost after {self.decoded} frames ({e})") from e
            raise DecodeError(f"{self.source}: decoding failed after {self.decoded} frames ({e}); the file "
                              "is corrupt, re-download or re-encode it") from e
        if not self.live and self.decoded < self.stated_frames:
            log.warning("%s: the file ends early: %d of the %d frames its header states could be "
                        "decoded; the file is truncated, re-download or re-encode it",
                        self.source, self.decoded, self.stated_frames)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- frame folders


def list_frame_files(folder: str | Path) -> list[Path]:
    """The JPEG frames of a frame folder, sorted by frame number.

    Accepts `00001.jpg` (SSv1: 5 digits, 1-based), other digit counts, and
    prefixed names such as `img_00001.jpg` (TSM/TSN extraction). Where a folder
    holds several prefixes (TSN's denseflow writes `img_`, `flow_x_`, `flow_y_`
    side by side) the `img_` frames are the RGB ones. Other files are ignored.
    """
    folder = Path(folder)
    return [folder / name for name in _frame_names(folder)]


def _frame_names(folder: str | Path) -> list[str]:
    """`list_frame_files` as file names: `read_frames` lists a folder per clip and joins only
    the sampled names (a Path per file costs more than listing the folder)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _FRAME_FILE.match(entry.name)
                if match:
                    groups.setdefault(match["prefix"], []).append((int(match["number"]), entry.name))
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(folder, folder=True) from None
    if not groups:
        raise DecodeError(f"{folder}: contains no JPEG frames (expected 00001.jpg, 00002.jpg, ...)")
    if len(groups) > 1:
        if "img_" not in groups:
            raise DecodeError(
                f"{folder}: frame files with several name prefixes {sorted(groups)}; "
                "keep one set of RGB frames per folder"
            )
        groups = {"img_": groups["img_"]}
    (numbered,) = groups.values()
    numbered.sort()
    for (a, name_a), (b, name_b) in zip(numbered, numbered[1:]):
        if a == b:
            raise DecodeError(
                f"{folder}: {name_a} and {name_b} have the same frame number; remove one"
            )
    if numbered[-1][0] - numbered[0][0] + 1 != len(numbered) and str(folder) not in _GAPS_WARNED:
        _GAPS_WARNED.add(str(folder))  # once per folder and process: the listing runs per clip
        log.warning("%s: %s; the %d frames present are used in sorted order. A gap usually means an "
                    "interrupted extraction: re-extract the frames", folder,
                    _describe_gaps(numbered), len(numbered))
    return [name for _, name in numbered]


_GAPS_WARNED: set[str] = set()


def _describe_gaps(numbered: list[tuple[int, str]]) -> str | None:
    """'frame numbers missing: 00004.jpg to 00005.jpg (2 missing)' for holes between the first and
    last frame number of a sorted `(number, file name)` list, or None when the numbers are
    consecutive."""
    holes = [(a, b, na) for (a, na), (b, _) in zip(numbered, numbered[1:]) if b - a > 1]
    if not holes:
        return None
    total = sum(b - a - 1 for a, b, _ in holes)

    def name(number: int, like: str) -> str:  # the missing file's name, in the folder's own style
        m = _FRAME_FILE.match(like)
        digits = m["number"]
        width = len(digits) if digits.startswith("0") else 0
        return f"{m['prefix']}{number:0{width}d}{like[m.end('number'):]}"

    spans = [name(a + 1, na) if b - a == 2 else f"{name(a + 1, na)} to {name(b - 1, na)}"
             for a, b, na in holes[:3]]
    more = ", ..." if len(holes) > 3 else ""
    return f"frame numbers missing: {', '.join(spans)}{more} ({total} missing)"


def frame_number_gaps(folder: str | Path) -> str | None:
    """The holes in a frame folder's numbering, described for a message, or None (see
    `list_frame_files`; `gdn check-data` reports folders with holes as bad)."""
    names = _frame_names(Path(folder))
    return _describe_gaps([(int(_FRAME_FILE.match(n)["number"]), n) for n in names])


def _read_image(path: str | Path) -> np.ndarray:
    """One image file as uint8 (H, W, 3) RGB.

    JPEGs go through simplejpeg (libjpeg-turbo straight into a numpy array, the same decoder
    and settings as Pillow's, so the same pixels; ~2.6x faster on 100x176 SSv1 frames). It
    raises on anything it does not fully decode, warnings included; such files go through
    Pillow, which identifies images by content (a PNG saved under a .jpg name is a valid,
    only misnamed image) and converts grayscale, CMYK and palette images to RGB, or raises.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise DecodeError(f"{path}: frame file not found; re-extract the frames") from e
    except OSError as e:
        raise DecodeError(f"{path}: cannot be read ({e}); check the file's permissions") from e
    if not data:
        raise DecodeError(f"{path}: frame file is empty (0 bytes); re-extract the frames")
    if simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False,
                                          fastupsample=False, strict=True)
        except ValueError:
            pass  # not a (clean) JPEG: Pillow decides
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode fully now: truncated data raises here, not later
            # an RGB image is used as is: convert("RGB") would only copy it
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DecodeError(
            f"{path}: not a readable JPEG ({e}); the file is truncated or corrupt, "
            "re-extract the frames"
        ) from e


def _read_folder(folder: str | Path, wanted: list[int], names: list[str] | None = None) -> list[np.ndarray]:
    """`read_frames` of a JPEG frame folder (`names`: its `_frame_names`, when the caller has them)."""
    names = _frame_names(folder) if names is None else names  # listed per clip: cheap, and never stale
    if wanted and max(wanted) >= len(names):
        raise DecodeError(
            f"{folder}: asked for frame index {max(wanted)} but the folder has {len(names)} "
            "frames; if the frame count came from an annotation list or a cache, regenerate it"
        )
    frames = {i: _read_image(os.path.join(folder, names[i])) for i in dict.fromkeys(wanted)}
    shapes = {frame.shape for frame in frames.values()}
    if len(shapes) > 1:
        raise DecodeError(
            f"{folder}: frames have different sizes {sorted(shapes)}; re-extract the frames"
        )
    return [frames[i] for i in wanted]


# ----------------------------------------------------------------------------- frame count cache


def _cached_count(entries: dict, path: str | Path, strict: bool = False) -> tuple[int, bool]:
    """(frame count, whether `entries` was updated); entries map abspath -> [size, mtime_ns, n],
    plus how the file ends early for a video that does (see `count_frames`)."""
    try:
        stat = os.stat(path)
    except OSError:
        return count_frames(path, strict=strict), False  # missing file: count_frames raises the DecodeError
    key, signature = os.path.abspath(path), [stat.st_size, stat.st_mtime_ns]
    entry = entries.get(key)
    updated = entry is None or list(entry[:2]) != signature
    if updated:
        n, short = _count(path)
        entry = entries[key] = [*signature, n] + ([short] if short else [])
    if len(entry) > 3:  # remembered with the count, so that a cache never hides it
        _ends_early(path, entry[3], strict)
    return entry[2], updated


def count_frames_cached(path: str | Path, cache: dict | FrameCountCache, *, strict: bool = False) -> int:
    """`count_frames(path, strict=strict)`, remembered in `cache` (a plain dict or a FrameCountCache).

    An entry is keyed by absolute path and holds the file's size and mtime: a
    replaced or re-encoded file is counted again, and so is a frame folder that gained or
    lost a file (that changes the folder's mtime).
    """
    if isinstance(cache, FrameCountCache):
        return cache.get(path, strict=strict)
    return _cached_count(cache, path, strict)[0]


class FrameCountCache:
    """Frame counts of video files (and frame folders), kept in a small JSON file so WebM
    counting happens once.

    Use `get(path)` for counts and `save()` (or a `with` block) to write
    new ones back. The file is written atomically (temporary file, then
    `os.replace`), so a crash or a concurrent writer never leaves it half-written;
    with several writers the last one wins, which costs at most a recount.
    """

    VERSION = 2  # 2: entries remember how a video ends early

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._entries: dict[str, list[int]] = {}
        self._dirty = False
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == self.VERSION:
                    self._entries = data["entries"]
            except (OSError, ValueError, KeyError, AttributeError) as e:
                log.warning("%s: unreadable frame count cache (%s); counting again", self.path, e)

    def get(self, path: str | Path, *, strict: bool = False) -> int:
        n, updated = _cached_count(self._entries, path, strict)
        self._dirty |= updated
        return n

    def __len__(self) -> int:
        return len(self._entries)

    def save(self) -> None:
        """Write the cache if it changed since it was loaded."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": self.VERSION, "entries": self._entries}))
        os.replace(tmp, self.path)
        self._dirty = False

    def __enter__(self) -> FrameCountCache:
        return self

    def __exit__(self, *exc) -> None:
        self.save()
