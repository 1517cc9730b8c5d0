"""A minimal WebM/Matroska demuxer: the frames of the first video track, VP8 or VP9.

Why: `av.open` runs `avformat_find_stream_info`, which decodes the keyframe however
little it is asked to probe, and demuxing through libavformat adds more per packet.
Handing this parser's packets to a bare `av.CodecContext` gives the same frames
(tests/data/test_webm.py compares them bit for bit) and saves 13-18% of a 240p training
item's CPU time against `av.open(format="webm")` with probing cut down
(benchmarks/webm_demux.py; docs/benchmarks.md, "WebM demuxing").

Scope: files written by FFmpeg/libvpx (SSv2) and PyAV. Whatever is not fully
understood gives None, never an exception, and the caller falls back to PyAV,
which reports real errors: not EBML, another DocType, no video track, a codec other
than VP8/VP9, ContentEncodings (compressed or encrypted frames), laced video
blocks, elements of unknown size where only known sizes are allowed, and elements
running past the end of the data (a truncated file).

Element IDs are those of the EBML (RFC 8794) and Matroska (RFC 9559) specifications,
written with their length-marker bits as the specifications list them:
https://www.matroska.org/technical/elements.html
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = ["WebmVideo", "parse_webm"]

# EBML header (RFC 8794 section 11.2)
EBML = 0x1A45DFA3
EBML_READ_VERSION = 0x42F7
EBML_MAX_ID_LENGTH = 0x42F2
EBML_MAX_SIZE_LENGTH = 0x42F3
DOC_TYPE = 0x4282
# global elements, allowed anywhere
VOID = 0xEC
CRC32 = 0xBF
# Segment and its children (RFC 9559 section 5.1)
SEGMENT = 0x18538067
SEEK_HEAD = 0x114D9B74
INFO = 0x1549A966
TRACKS = 0x1654AE6B
CLUSTER = 0x1F43B675
CUES = 0x1C53BB6B
ATTACHMENTS = 0x1941A469
CHAPTERS = 0x1043A770
TAGS = 0x1254C367
# Tracks
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CONTENT_ENCODINGS = 0x6D80
VIDEO = 0xE0
PIXEL_WIDTH = 0xB0
PIXEL_HEIGHT = 0xBA
# Cluster
TIMESTAMP = 0xE7
SILENT_TRACKS = 0x5854
POSITION = 0xA7
PREV_SIZE = 0xAB
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1

_GLOBAL = {VOID, CRC32}
_SEGMENT_CHILDREN = {SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES, ATTACHMENTS, CHAPTERS, TAGS} | _GLOBAL
# EncryptedBlock (0xAF) is left out on purpose: such a Cluster is not understood.
_CLUSTER_CHILDREN = {TIMESTAMP, SILENT_TRACKS, POSITION, PREV_SIZE, SIMPLE_BLOCK, BLOCK_GROUP}
_CLUSTER_CHILDREN |= _GLOBAL
_TRACK_TYPE_VIDEO = 1
_CODECS = {"V_VP8": "vp8", "V_VP9": "vp9"}  # Matroska CodecID -> FFmpeg decoder name
_LACING = 0x06  # Block flags bits 1-2: Xiph, fixed-size or EBML lacing


@dataclass
class WebmVideo:
    """The first video track of a WebM file: what a bare decoder needs."""

    codec: str  # FFmpeg decoder name: "vp8" or "vp9"
    width: int  # PixelWidth of the track
    height: int  # PixelHeight of the track
    # One frame per Block of the track in storage (= decode) order, empty ones left out,
    # as FFmpeg's demuxer does; slices of the parsed data, not copies.
    packets: list[memoryview]


class _Unsupported(Exception):
    """Something this parser does not fully understand: PyAV takes over."""


def parse_webm(data: bytes | memoryview) -> WebmVideo | None:
    """The VP8/VP9 frames of the first video track of a WebM/Matroska file, or None.

    None means "not understood here" (see the module docstring), never "broken": the
    caller then demuxes with PyAV, which gives the same frames or a proper error.
    """
    data = bytes(data)  # no copy for bytes; header fields read faster from bytes than views
    try:
        return _parse(data)
    except _Unsupported as e:
        log.debug("WebM parser declined (%s); demuxing with PyAV", e)
        return None


def _vint(data: bytes, pos: int, end: int) -> tuple[int | None, int]:
    """(value, position after it) of the EBML variable-size integer at `pos`; None for an
    all-ones value, which as an element size means "unknown size"."""
    if pos >= end:
        raise _Unsupported("data ends inside an element header")
    first = data[pos]
    if first & 0x80:  # one byte, the common case (track numbers, small sizes)
        return (None if first == 0xFF else first & 0x7F), pos + 1
    length = 9 - first.bit_length()  # the count of leading zero bits, plus one
    if length > 8 or pos + length > end:
        raise _Unsupported("invalid or truncated variable-size integer")
    mask = (1 << (7 * length)) - 1
    value = int.from_bytes(data[pos:pos + length], "big") & mask
    return (None if value == mask else value), pos + length


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int | None]:
    """(ID, payload start, payload size or None if unknown) of the element at `pos`."""
    length = 9 - data[pos].bit_length() if pos < end else 0
    if not 1 <= length <= 4 or pos + length > end:  # EBMLMaxIDLength is 4 in Matroska
        raise _Unsupported("invalid or truncated element ID")
    size, start = _vint(data, pos + length, end)
    return int.from_bytes(data[pos:pos + length], "big"), start, size


def _stop(start: int, size: int | None, end: int, what: int) -> int:
    """Where the payload of known `size` from `start` ends; it must end by `end`."""
    if size is None:
        raise _Unsupported(f"element {what:#x} of unknown size")
    if start + size > end:
        raise _Unsupported(f"element {what:#x} runs past its parent or the data (truncated?)")
    return start + size


def _children(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(ID, payload start, payload end) of the known-size children in `pos:end`."""
    while pos < end:
        eid, start, size = _element(data, pos, end)
        pos = _stop(start, size, end, eid)
        yield eid, start, pos


def _uint(data: bytes, start: int, stop: int) -> int:
    if stop - start > 8:
        raise _Unsupported("unsigned integer of more than 8 bytes")
    return int.from_bytes(data[start:stop], "big")


def _parse(data: bytes) -> WebmVideo:
    end = len(data)
    eid, start, size = _element(data, 0, end)
    if eid != EBML:
        raise _Unsupported("not an EBML file")
    pos = _stop(start, size, end, eid)
    _check_ebml_header(data, start, pos)
    while True:  # Void or CRC-32 may stand between the header and the Segment
        eid, start, size = _element(data, pos, end)
        if eid == SEGMENT:
            break
        if eid not in _GLOBAL:
            raise _Unsupported(f"top-level element {eid:#x} before the Segment")
        pos = _stop(start, size, end, eid)
    # A known-size Segment must fit the data exactly: anything after it (a chained Segment,
    # junk) is not something to guess FFmpeg's reading of.
    seg_end = end if size is None else _stop(start, size, end, eid)
    if seg_end != end:
        raise _Unsupported("data after the Segment")
    track: tuple[int, str, int, int] | None = None  # (number, codec, width, height)
    frames: list[tuple[int, int]] = []  # (start, stop) of each frame in `data`
    pos = start
    while pos < seg_end:
        eid, start, size = _element(data, pos, seg_end)
        if eid not in _SEGMENT_CHILDREN:
            raise _Unsupported(f"unknown Segment child {eid:#x}")
        if eid == CLUSTER:
            if track is None:
                raise _Unsupported("a Cluster before the Tracks")
            pos = _cluster(data, start, size, seg_end, track[0], frames)
            continue
        pos = _stop(start, size, seg_end, eid)
        if eid == TRACKS:
            if track is not None:
                raise _Unsupported("a second Tracks element")
            track = _video_track(data, start, pos)
    if track is None:
        raise _Unsupported("no Tracks element")
    _, codec, width, height = track
    view = memoryview(data)
    return WebmVideo(codec, width, height, packets=[view[a:b] for a, b in frames])


def _check_ebml_header(data: bytes, start: int, stop: int) -> None:
    doc_type = None
    for eid, a, b in _children(data, start, stop):
        if eid == DOC_TYPE:
            doc_type = bytes(data[a:b]).rstrip(b"\0")
        elif eid == EBML_READ_VERSION and _uint(data, a, b) > 1:
            raise _Unsupported("EBMLReadVersion > 1")
        elif eid == EBML_MAX_ID_LENGTH and _uint(data, a, b) > 4:
            raise _Unsupported("EBMLMaxIDLength > 4")
        elif eid == EBML_MAX_SIZE_LENGTH and _uint(data, a, b) > 8:
            raise _Unsupported("EBMLMaxSizeLength > 8")
    if doc_type not in (b"webm", b"matroska"):
        raise _Unsupported(f"DocType {doc_type!r}")


def _video_track(data: bytes, start: int, stop: int) -> tuple[int, str, int, int]:
    """(TrackNumber, decoder name, width, height) of the first video TrackEntry in Tracks,
    the track FFmpeg makes `streams.video[0]`."""
    for eid, a, b in _children(data, start, stop):
        if eid != TRACK_ENTRY:
            continue
        number = kind = width = height = 0
        codec_id = b""
        for cid, c, d in _children(data, a, b):
            if cid == TRACK_NUMBER:
                number = _uint(data, c, d)
            elif cid == TRACK_TYPE:
                kind = _uint(data, c, d)
            elif cid == CODEC_ID:
                codec_id = bytes(data[c:d]).rstrip(b"\0")
            elif cid == CONTENT_ENCODINGS:
                raise _Unsupported("ContentEncodings (compressed or encrypted frames)")
            elif cid == VIDEO:
                for vid, e, f in _children(data, c, d):
                    if vid == PIXEL_WIDTH:
                        width = _uint(data, e, f)
                    elif vid == PIXEL_HEIGHT:
                        height = _uint(data, e, f)
        if kind != _TRACK_TYPE_VIDEO:
            continue
        codec = _CODECS.get(codec_id.decode("ascii", "replace"))
        if codec is None:
            raise _Unsupported(f"video codec {codec_id!r}")
        if number < 1 or width < 1 or height < 1:
            raise _Unsupported("video track without a TrackNumber or pixel size")
        return number, codec, width, height
    raise _Unsupported("no video track")


def _cluster(data: bytes, pos: int, size: int | None, seg_end: int, track: int,
             frames: list[tuple[int, int]]) -> int:
    """Appends the (start, stop) of each frame of track number `track` in the Cluster whose
    payload starts at `pos` to `frames`; returns where the Cluster ends. A Cluster of
    unknown size (live streams) ends where the next Segment child starts."""
    end = seg_end if size is None else _stop(pos, size, seg_end, CLUSTER)
    while pos < end:
        eid, start, child_size = _element(data, pos, end)
        if size is None and eid in _SEGMENT_CHILDREN and eid not in _GLOBAL:
            return pos
        if eid not in _CLUSTER_CHILDREN:
            raise _Unsupported(f"unknown Cluster child {eid:#x}")
        pos = _stop(start, child_size, end, eid)
        if eid == SIMPLE_BLOCK:
            _block(data, start, pos, track, frames)
        elif eid == BLOCK_GROUP:
            blocks = [(a, b) for cid, a, b in _children(data, start, pos) if cid == BLOCK]
            if len(blocks) != 1:
                raise _Unsupported(f"a BlockGroup with {len(blocks)} Blocks")
            _block(data, *blocks[0], track, frames)
    return end


def _block(data: bytes, start: int, stop: int, track: int,
           frames: list[tuple[int, int]]) -> None:
    """Appends the (start, stop) of the frame of a (Simple)Block of track `track`. A Block is
    the track number (a vint), a 16-bit relative timestamp, a flags byte, then the frame.
    Other tracks are skipped; an empty frame is dropped, as FFmpeg's demuxer drops it."""
    number, pos = _vint(data, start, stop)
    if number != track:
        return
    if pos + 3 > stop:
        raise _Unsupported("a Block shorter than its header")
    if data[pos + 2] & _LACING:
        raise _Unsupported("laced video frames")
    if stop > pos + 3:
        frames.append((pos + 3, stop))
