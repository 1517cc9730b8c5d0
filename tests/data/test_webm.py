"""gdn.data.webm and the WebM fast path of gdn.data.decode: the parser's packets decode to
exactly the frames PyAV's own demuxer gives, it declines what it does not understand (PyAV
then reports), and `read_frames` really takes the fast path."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from media import H, W, read_stack
from media import gradient_frames as _frames
from media import write_video as _write_video

from gdn.data import decode
from gdn.data.decode import DecodeError, count_frames, read_frames
from gdn.data.webm import _element, parse_webm

T = 24
INDICES = ([0], [T - 1], [5, 0, 23, 5, 3, 3], list(range(T)), [7, 7, 7], [T // 2])


def _write(path, codec: str, *, audio: bool = False, options: dict | None = None) -> None:
    """A lossy yuv420p clip of `_frames`, with an Opus track before the video when `audio`
    (the video is then track 2, and its blocks are interleaved with audio blocks)."""
    if not audio:
        _write_video(path, _frames(T), codec, "yuv420p", options or {})
        return
    with av.open(str(path), "w") as container:
        sound = container.add_stream("libopus", rate=48000)
        video = container.add_stream(codec, rate=12)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        samples = 0
        for t, rgb in enumerate(_frames(T)):
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            while samples < (t + 1) * 4000:  # 1/12 s of sound per frame
                chunk = av.AudioFrame.from_ndarray(
                    np.sin(np.arange(samples, samples + 960, dtype=np.float32)[None] / 20),
                    format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, samples
                chunk.time_base = fractions.Fraction(1, 48000)
                samples += 960
                container.mux(sound.encode(chunk))
        container.mux(video.encode())
        container.mux(sound.encode())


def _old(path, indices) -> np.ndarray:
    """`read_frames` through PyAV's demuxer (the path before the fast one), stacked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "parse_webm", lambda data: None)
        return read_stack(path, indices)


def _pyav_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.size > 0]


def _decoded_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


VIDEOS = {
    "vp9": ("libvpx-vp9", False, None),
    "vp8": ("libvpx", False, None),
    "vp9-altref-settings": ("libvpx-vp9", False, {"auto-alt-ref": "1", "lag-in-frames": "16"}),
    "vp9-with-audio": ("libvpx-vp9", True, None),
    "vp8-with-audio": ("libvpx", True, None),
}


@pytest.fixture(scope="module", params=list(VIDEOS))
def video(request, tmp_path_factory):
    codec, audio, options = VIDEOS[request.param]
    path = tmp_path_factory.mktemp(request.param) / "clip.webm"
    _write(path, codec, audio=audio, options=options)
    return path


def test_parser_gives_pyav_packets_and_track_info(video):
    parsed = parse_webm(video.read_bytes())
    assert parsed is not None
    assert [bytes(p) for p in parsed.packets] == _pyav_packets(video)
    with av.open(str(video)) as container:
        cc = container.streams.video[0].codec_context
        assert (parsed.codec, parsed.width, parsed.height) == (cc.name, W, H)


def test_fast_path_frames_equal_pyav_path(video):
    for indices in INDICES:
        fast = read_stack(video, indices)
        assert fast.shape == (len(indices), H, W, 3)
        np.testing.assert_array_equal(fast, _old(video, indices))
    assert read_frames(video, []) == []


def test_count_frames_by_parser_equals_demux_and_decode_counts(video):
    n = count_frames(video)
    assert n == len(_pyav_packets(video)) == _decoded_count(video)
    assert decode._count_frames_pyav(video) == (n, None)  # the demux count, not "ends early"
    with pytest.raises(DecodeError, match=rf"clip\.webm.*index {n} .*only {n} decodable"):
        read_frames(video, [0, n])


def test_fast_path_is_taken(video, monkeypatch):
    def no_open(*args, **kwargs):
        raise AssertionError("av.open called: the WebM fast path was not taken")

    monkeypatch.setattr(decode.av, "open", no_open)
    assert read_stack(video, [3, 1]).shape == (2, H, W, 3)
    assert count_frames(video) == T


def test_large_files_are_left_to_pyav(video, monkeypatch):
    """The parser reads a whole file: past the size limit PyAV demuxes it, with the same frames."""
    want = read_stack(video, [3, 1])
    monkeypatch.setattr(decode, "_WEBM_MAX_BYTES", video.stat().st_size - 1)
    monkeypatch.setattr(decode, "parse_webm", lambda data: pytest.fail("parsed a large file"))
    np.testing.assert_array_equal(read_stack(video, [3, 1]), want)
    assert count_frames(video) == T


def _unknown_size(header: bytes) -> bytes:
    """An element header (4-byte ID, then the size) with the size made "unknown" (all ones),
    same length, so that the offsets in SeekHead and Cues stay right."""
    n = len(header) - 4
    return header[:4] + bytes([0xFF >> (n - 1)]) + b"\xff" * (n - 1)


def _live(data: bytes) -> bytes:
    """`data` with the sizes of the Segment and of each Cluster unknown, as a live stream
    (a non-seekable output) may write them."""
    _, pos, size = _element(data, 0, len(data))
    pos += size  # past the EBML header
    _, start, size = _element(data, pos, len(data))
    out = [data[:pos], _unknown_size(data[pos:start])]
    pos, end = start, start + size
    while pos < end:
        eid, start, size = _element(data, pos, end)
        out.append(_unknown_size(data[pos:start]) if eid == 0x1F43B675 else data[pos:start])
        out.append(data[start:start + size])
        pos = start + size
    return b"".join(out)


def test_unknown_size_segment_and_clusters(tmp_path):
    path = tmp_path / "known.webm"
    _write(path, "libvpx-vp9", audio=True)
    data = path.read_bytes()
    live = tmp_path / "live.webm"
    live.write_bytes(_live(data))
    assert live.read_bytes() != data and len(live.read_bytes()) == len(data)
    parsed = parse_webm(live.read_bytes())
    assert parsed is not None
    assert [bytes(p) for p in parsed.packets] == [bytes(p) for p in parse_webm(data).packets]
    assert _pyav_packets(live) == _pyav_packets(path)  # FFmpeg reads the file the same way
    np.testing.assert_array_equal(read_stack(live, [9, 2]), _old(path, [9, 2]))


def test_vp9_superframe_is_split_by_the_bare_decoder(tmp_path):
    # libvpx puts a hidden alt-ref frame and the next shown frame into one "superframe" packet
    # (VP9 spec, Annex B). This build's one-pass encoder emits no alt-ref frames, so pack two
    # shown frames by hand: the decoder (not the demuxer) must split them on both paths.
    path = tmp_path / "plain.webm"
    _write(path, "libvpx-vp9")
    packets = parse_webm(path.read_bytes()).packets
    a, b = bytes(packets[4]), bytes(packets[5])
    marker = 0b11000000 | (4 - 1) << 3 | (2 - 1)  # 4-byte frame sizes, 2 frames
    index = bytes([marker]) + len(a).to_bytes(4, "little") + len(b).to_bytes(4, "little")
    superframe = a + b + index + bytes([marker])

    packed = tmp_path / "superframe.webm"
    with av.open(str(path)) as src, av.open(str(packed), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for k, packet in enumerate(p for p in src.demux(video=0) if p.size > 0):
            if k == 5:
                continue
            if k == 4:
                merged = av.Packet(superframe)
                merged.pts, merged.dts, merged.time_base = packet.pts, packet.dts, packet.time_base
                packet = merged
            packet.stream = stream
            dst.mux(packet)
    parsed = parse_webm(packed.read_bytes())
    assert len(parsed.packets) == T - 1 and bytes(parsed.packets[4]) == superframe
    assert _decoded_count(packed) == T  # two frames out of the superframe packet
    every = list(range(T))
    np.testing.assert_array_equal(read_stack(packed, every), _old(packed, every))
    np.testing.assert_array_equal(read_stack(packed, every), _old(path, every))


def test_corrupt_packet_fails_as_on_the_pyav_path(tmp_path):
    path = tmp_path / "corrupt.webm"
    _write(path, "libvpx-vp9")
    data = bytearray(path.read_bytes())
    frame = bytes(parse_webm(bytes(data)).packets[6])
    at = data.find(frame)
    data[at:at + len(frame)] = np.random.default_rng(1).bytes(len(frame))  # sizes kept
    path.write_bytes(bytes(data))
    assert parse_webm(bytes(data)) is not None  # the container is intact

    def outcome(read):
        try:
            return read(path, list(range(T)))
        except DecodeError as e:
            return str(e)

    old = outcome(_old)
    assert isinstance(old, str) and "corrupt.webm" in old  # the premise: PyAV's path raises
    assert outcome(read_stack) == old  # same DecodeError, no substituted frames


def _other_video_bytes(path, codec: str, pix_fmt: str) -> bytes:
    _write_video(path, _frames(3), codec, pix_fmt, {})
    return path.read_bytes()


def test_parser_declines_what_it_does_not_understand(tmp_path):
    webm = tmp_path / "ok.webm"
    _write(webm, "libvpx-vp9")
    data = webm.read_bytes()
    assert parse_webm(data) is not None
    declined = {
        "mpeg4 in mp4": _other_video_bytes(tmp_path / "a.mp4", "mpeg4", "yuv420p"),
        "ffv1 in mkv": _other_video_bytes(tmp_path / "a.mkv", "ffv1", "bgr0"),
        "random": np.random.default_rng(0).bytes(5000),
        "empty": b"",
        "EBML header only": data[:40],
        "truncated in a cluster": data[: len(data) // 2],
        "last byte cut": data[:-1],
        "DocType changed": data.replace(b"webm", b"xebm", 1),
        "data after the Segment": data + b"\0" * 8,
    }
    for what, content in declined.items():
        assert parse_webm(content) is None, what
    for cut in range(0, len(data), 97):  # never raises, wherever the file ends
        assert parse_webm(data[:cut]) is None
    rng = np.random.default_rng(2)
    for at in rng.integers(0, len(data), 300):  # nor on damaged bytes: None or some packets
        damaged = bytearray(data)
        damaged[at] = rng.integers(0, 256)
        parsed = parse_webm(bytes(damaged))
        assert parsed is None or all(isinstance(p, memoryview) for p in parsed.packets)


def test_truncated_webm_falls_back_and_raises_naming_file(tmp_path, monkeypatch):
    path = tmp_path / "cut.webm"
    _write(path, "libvpx-vp9")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    calls = []
    real = decode._open
    monkeypatch.setattr(decode, "_open", lambda p: calls.append(p) or real(p))
    with pytest.raises(DecodeError, match="cut.webm"):
        read_frames(path, [T - 1])
    assert calls  # PyAV's demuxer, not the parser, read the truncated file
