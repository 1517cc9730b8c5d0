"""gdn.data.decode: decoded frames equal what was encoded (lossless codecs), exact frame
counts (WebM has none stored), JPEG folders, clear errors, and the frame count cache."""

from __future__ import annotations

import io
import json
import os

import av
import numpy as np
import pytest
from PIL import Image

import logging

from media import (FRAMES_DIR, LOSSLESS, H, W, gradient_frames, make_grey_ssv1, make_grey_ssv2, pixel, read_stack,
                   which, write_grey_frames, write_grey_video, write_video)

from gdn.cli import main
from gdn.data.datasets import build_dataset

from gdn.data import decode
from gdn.data.decode import (
    DecodeError,
    FrameCountCache,
    count_frames,
    count_frames_cached,
    list_frame_files,
    read_frames,
)

T = 12


def _frames(n: int = T, seed: int = 0) -> np.ndarray:
    return gradient_frames(n, seed)


def _write(path, frames, codec, pix_fmt, options) -> None:
    write_video(path, frames, codec, pix_fmt, options)


@pytest.fixture(scope="module", params=list(LOSSLESS))
def lossless_video(request, tmp_path_factory):
    suffix, codec, pix_fmt, options = LOSSLESS[request.param]
    path = tmp_path_factory.mktemp(request.param) / f"clip{suffix}"
    frames = _frames()
    _write(path, frames, codec, pix_fmt, options)
    return path, frames


def test_video_frames_equal_encoded_for_any_indices(lossless_video):
    path, frames = lossless_video
    for indices in ([0], [T - 1], [5, 0, 11, 5, 3, 3], list(range(T)), [7, 7, 7]):
        out = read_stack(path, indices)
        assert out.dtype == np.uint8 and out.shape == (len(indices), H, W, 3)
        np.testing.assert_array_equal(out, frames[indices])


def test_frames_are_separate_arrays_without_copies(lossless_video):
    """`read_frames`: one array per index over the converted frames (one per distinct index),
    which stay valid after later decoding."""
    path, frames = lossless_video
    indices = [7, 0, 7, 11, 3]
    got = read_frames(path, indices)
    assert [f.shape for f in got] == [(H, W, 3)] * 5 and all(f.dtype == np.uint8 for f in got)
    np.testing.assert_array_equal(np.stack(got), frames[indices])
    assert got[0] is got[2]  # a repeated index is converted once
    distinct = [got[0], got[1], got[3], got[4]]
    assert not any(np.shares_memory(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:])
    read_frames(path, range(T))  # more decoding and conversion after ours
    np.testing.assert_array_equal(np.stack(got), frames[indices])


def test_count_frames_exact(lossless_video):
    path, _ = lossless_video
    assert count_frames(path) == T


def test_webm_has_no_stored_count_but_is_counted_exactly(tmp_path):
    path = tmp_path / "a.webm"
    _write(path, _frames(17), "libvpx-vp9", "gbrp", {"lossless": "1"})
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the premise: nothing stored
    assert count_frames(path) == 17


@pytest.mark.parametrize("codec", ["libvpx-vp9", "libvpx"])
def test_packet_count_equals_decoded_count_with_altref(tmp_path, codec):
    # "good" settings with lag and auto-alt-ref, the settings under which libvpx may emit
    # hidden alt-ref frames (WebM then packs them with a shown frame, so packets = shown
    # frames). Note: this libvpx/FFmpeg build emitted no separate hidden-frame packets here;
    # the test pins the packet count to the decoded count for such encodes.
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (16, 16, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    ys, xs = np.mgrid[0:128, 0:128]
    frames = np.stack([background] * 60)
    for t in range(60):
        frames[t][(xs - 20 - t) ** 2 + (ys - 64) ** 2 < 300] = (250, 20, 20)
    path = tmp_path / "altref.webm"
    options = {"deadline": "good", "cpu-used": "4", "lag-in-frames": "25", "auto-alt-ref": "1",
               "arnr-maxframes": "7", "arnr-strength": "5", "b": "300k"}
    _write(path, frames, codec, "yuv420p", options)
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == 60
    assert count_frames(path) == decoded


def test_index_past_the_end_names_file(tmp_path):
    path = tmp_path / "short.mkv"
    _write(path, _frames(5), "ffv1", "bgr0", {})
    with pytest.raises(DecodeError, match=r"short\.mkv.*only 5 decodable"):
        read_frames(path, [1, 5])
    with pytest.raises(ValueError):
        read_frames(path, [-1])


def test_empty_index_list_gives_empty_list(tmp_path):
    path = tmp_path / "a.mkv"
    _write(path, _frames(3), "ffv1", "bgr0", {})
    assert read_frames(path, []) == []
    with pytest.raises(DecodeError, match="gone.mkv: file not found"):
        read_frames(tmp_path / "gone.mkv", [])  # the file is still checked


@pytest.mark.parametrize("content", ["missing", "empty", "random"])
def test_bad_video_files_raise_decode_error_naming_file(tmp_path, content):
    path = tmp_path / f"bad_{content}.webm"
    if content == "empty":
        path.write_bytes(b"")
    elif content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    for call in (lambda: count_frames(path), lambda: read_frames(path, [0])):
        with pytest.raises(DecodeError, match=f"bad_{content}.webm"):
            call()


def test_truncated_webm_reports_missing_frames(tmp_path):
    path = tmp_path / "cut.webm"
    _write(path, _frames(30), "libvpx-vp9", "gbrp", {"lossless": "1"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        n = count_frames(path)
    except DecodeError as e:
        assert "cut.webm" in str(e)
    else:
        assert 0 < n < 30
    with pytest.raises(DecodeError, match="cut.webm"):
        read_frames(path, [29])


# ----------------------------------------------------------------------------- frame folders


def _touch_jpegs(folder, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 6)).save(folder / name, format="JPEG")


def test_list_frame_files_sorts_numerically_and_accepts_naming_styles(tmp_path):
    _touch_jpegs(tmp_path / "a", ["10.jpg", "2.jpg", "1.jpg", "notes.txt"])
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert [p.name for p in list_frame_files(tmp_path / "a")] == ["1.jpg", "2.jpg", "10.jpg"]

    _touch_jpegs(tmp_path / "ssv1", [f"{i:05d}.jpg" for i in (3, 1, 2)])
    assert [p.name for p in list_frame_files(tmp_path / "ssv1")] == ["00001.jpg", "00002.jpg", "00003.jpg"]

    # TSN/denseflow layout: RGB frames beside flow frames
    _touch_jpegs(tmp_path / "tsn", ["img_00002.jpg", "img_00001.JPG", "flow_x_00001.jpg", "flow_y_00001.jpg"])
    assert [p.name for p in list_frame_files(tmp_path / "tsn")] == ["img_00001.JPG", "img_00002.jpg"]


def test_list_frame_files_errors(tmp_path):
    with pytest.raises(DecodeError, match="missing_dir.*not found"):
        list_frame_files(tmp_path / "missing_dir")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DecodeError, match="empty_dir.*no JPEG frames"):
        list_frame_files(tmp_path / "empty_dir")
    _touch_jpegs(tmp_path / "dup", ["1.jpg", "001.jpg"])
    with pytest.raises(DecodeError, match="same frame number"):
        list_frame_files(tmp_path / "dup")
    _touch_jpegs(tmp_path / "mixed", ["a_1.jpg", "b_1.jpg"])
    with pytest.raises(DecodeError, match="prefixes"):
        list_frame_files(tmp_path / "mixed")


def test_frame_folder_indices_map_to_files_exactly(tmp_path):
    # PNG bytes under .jpg names: decoded by content (documented), and lossless,
    # so the index -> file mapping can be checked exactly.
    frames = _frames(6)
    folder = tmp_path / "clip"
    folder.mkdir()
    for t, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{t + 1:05d}.jpg", format="PNG")
    for indices in ([0], [5, 0, 2, 2], list(range(6))):
        np.testing.assert_array_equal(read_stack(folder, indices), frames[indices])
    got = read_frames(folder, [3, 1, 3])
    assert got[0] is got[2]  # a repeated index is read once
    assert read_frames(folder, []) == []
    with pytest.raises(DecodeError, match="index 6 but the folder has 6"):
        read_frames(folder, [6])


def test_grayscale_and_cmyk_jpegs_come_out_rgb(tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.new("L", (16, 8), 77).save(folder / "00001.jpg", quality=95)
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(folder / "00002.jpg", quality=95)  # red
    Image.new("RGB", (16, 8), (10, 200, 30)).save(folder / "00003.jpg", quality=95)
    out = read_stack(folder, [0, 1, 2])
    assert out.shape == (3, 8, 16, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[0], 77, atol=2)
    np.testing.assert_allclose(out[1].reshape(-1, 3).mean(0), [255, 0, 0], atol=4)
    np.testing.assert_allclose(out[2].reshape(-1, 3).mean(0), [10, 200, 30], atol=4)


@pytest.mark.parametrize("kind", ["rgb444", "rgb420", "progressive", "grey", "cmyk", "png"])
def test_jpeg_frames_equal_pillows_decode(tmp_path, kind, monkeypatch):
    """JPEGs decode through simplejpeg (the same libjpeg-turbo, the same pixels as Pillow);
    what it declines (CMYK, a PNG under a .jpg name) still goes through Pillow."""
    pixels = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    path = tmp_path / "00001.jpg"
    if kind == "png":
        image.save(path, format="PNG")
    else:
        image = {"grey": image.convert("L"), "cmyk": image.convert("CMYK")}.get(kind, image)
        image.save(path, format="JPEG", quality=90, subsampling=0 if kind == "rgb444" else 2,
                   progressive=kind == "progressive")
    with Image.open(path) as im:
        want = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(decode._read_image(path), want)
    if kind not in ("cmyk", "png"):  # the fast path: Pillow is not needed at all
        monkeypatch.setattr(decode.Image, "open", lambda *a, **k: pytest.fail("Pillow used"))
        np.testing.assert_array_equal(decode._read_image(path), want)


@pytest.mark.parametrize("content", ["empty", "truncated", "random"])
def test_bad_jpeg_raises_decode_error_naming_file(tmp_path, content):
    folder = tmp_path / "clip"
    _touch_jpegs(folder, ["00001.jpg"])
    buffer = io.BytesIO()
    Image.fromarray(_frames(1)[0]).save(buffer, format="JPEG")
    data = {"empty": b"", "truncated": buffer.getvalue()[: buffer.tell() // 2],
            "random": np.random.default_rng(0).bytes(3000)}[content]
    (folder / "00002.jpg").write_bytes(data)
    np.testing.assert_array_equal(read_stack(folder, [0]), 0)  # the good frame still reads
    with pytest.raises(DecodeError, match="00002.jpg"):
        read_frames(folder, [0, 1])


def test_frame_file_deleted_after_listing(tmp_path, monkeypatch):
    """A frame removed between `read_frames`' listing and its read is named."""
    folder = tmp_path / "clip"
    _touch_jpegs(folder, ["00001.jpg", "00002.jpg"])
    real = decode._frame_names

    def list_then_delete(path):
        names = real(path)
        os.remove(path / names[1])
        return names

    monkeypatch.setattr(decode, "_frame_names", list_then_delete)
    with pytest.raises(DecodeError, match="00002.jpg.*not found"):
        read_frames(folder, [1])


def test_count_frames_of_a_frame_folder(tmp_path):
    _touch_jpegs(tmp_path / "clip", [f"{i:05d}.jpg" for i in range(1, 8)])
    assert count_frames(tmp_path / "clip") == 7


# ----------------------------------------------------------------------------- frame count cache


@pytest.fixture
def counted(monkeypatch):
    """Counts calls of decode._count (the expensive counting behind count_frames and the cache)."""
    calls = []
    real = decode._count

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(decode, "_count", counting)
    return calls


def test_cache_counts_once_and_persists(tmp_path, counted):
    video = tmp_path / "v.webm"
    _write(video, _frames(9), "libvpx-vp9", "gbrp", {"lossless": "1"})
    cache_file = tmp_path / "cache" / "counts.json"

    cache = FrameCountCache(cache_file)
    assert cache.get(video) == 9
    assert cache.get(video) == 9
    assert count_frames_cached(video, cache) == 9
    assert len(counted) == 1
    cache.save()
    assert json.loads(cache_file.read_text())["version"] == FrameCountCache.VERSION
    assert [p.name for p in cache_file.parent.iterdir()] == ["counts.json"]  # no temp file left

    with FrameCountCache(cache_file) as reloaded:
        assert reloaded.get(video) == 9
    assert len(counted) == 1  # answered from the file

    # a re-encoded file (new size and mtime) is counted again
    _write(video, _frames(4), "libvpx-vp9", "gbrp", {"lossless": "1"})
    assert FrameCountCache(cache_file).get(video) == 4
    assert len(counted) == 2


def test_cached_folder_count_follows_the_folder(tmp_path, counted):
    """The datasets count frame folders through the cache too: a frame added or removed
    changes the folder's mtime, so the folder is counted again."""
    folder = tmp_path / "clip"
    _touch_jpegs(folder, ["00001.jpg", "00002.jpg", "00003.jpg"])
    # The kernel stamps mtimes from a coarse clock (a few ms): changes this quick could share
    # one, so each change gets its own second here, as changes made by hand would have.
    os.utime(folder, (1, 1))
    cache: dict = {}
    assert count_frames_cached(folder, cache) == 3
    assert count_frames_cached(folder, cache) == 3
    assert len(counted) == 1
    _touch_jpegs(folder, ["00004.jpg"])
    os.utime(folder, (2, 2))
    assert count_frames_cached(folder, cache) == 4
    os.remove(folder / "00004.jpg")
    os.remove(folder / "00003.jpg")
    os.utime(folder, (3, 3))
    assert count_frames_cached(folder, cache) == 2
    assert len(counted) == 3


def test_plain_dict_cache_and_corrupt_cache_file(tmp_path, counted):
    video = tmp_path / "v.mkv"
    _write(video, _frames(6), "ffv1", "bgr0", {})
    cache: dict = {}
    assert count_frames_cached(video, cache) == 6
    assert count_frames_cached(video, cache) == 6
    assert len(counted) == 1

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert FrameCountCache(bad).get(video) == 6  # unreadable cache: counted again, with a warning
    with pytest.raises(DecodeError, match="gone.webm"):
        FrameCountCache(bad).get(tmp_path / "gone.webm")


# ----------------------------------------------------------------------------- case 2
def test_case2_folder_without_jpegs(tmp_path):
    """Case 2 (docs/reliability.md): a folder without JPEGs is an error naming it."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no frames here")
    with pytest.raises(DecodeError, match=rf"{folder}: contains no JPEG frames"):
        list_frame_files(folder)
    with pytest.raises(DecodeError, match=rf"{folder}: contains no JPEG frames"):
        count_frames(folder)


def test_case2_gap_in_frame_numbers_warns_and_uses_sorted_files(tmp_path, caplog, capsys):
    """Case 2 (docs/reliability.md): frames are taken in sorted order and counted as files (no index
    points at a hole), and a
    warning names the folder and the missing numbers: a gap means an interrupted extraction.
    `gdn check-data` reports the folder as bad."""
    root = make_grey_ssv1(tmp_path, n_frames=(8, 6))
    folder = root / FRAMES_DIR / "100"
    (folder / "00004.jpg").unlink()
    (folder / "00005.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="gdn.data.decode"):
        files = list_frame_files(folder)
    assert [f.name for f in files] == ["00001.jpg", "00002.jpg", "00003.jpg", "00006.jpg", "00007.jpg", "00008.jpg"]
    assert count_frames(folder) == 6
    assert str(folder) in caplog.text and "00004.jpg" in caplog.text and "2 missing" in caplog.text
    frames = np.stack(read_frames(folder, range(6)))
    assert frames[:, 0, 0, 0].tolist() == [pixel(0, t) for t in (0, 1, 2, 5, 6, 7)]

    code, out = main(["check-data", "--dataset", "ssv1", "--root", str(root), "--split", "train"]), capsys.readouterr().out
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("  [train]")]
    assert len(bad) == 1 and "line 1 (id 100)" in bad[0] and "missing" in bad[0]


def test_case2_zero_byte_truncated_and_png_renamed_jpegs(tmp_path):
    """Case 2 (docs/reliability.md): empty and truncated JPEGs are errors naming the file; a PNG
    under a .jpg name is read by content."""
    folder = write_grey_frames(tmp_path / "v", 4)
    (folder / "00002.jpg").write_bytes(b"")
    with pytest.raises(DecodeError, match=rf"{folder / '00002.jpg'}: frame file is empty"):
        read_frames(folder, [1])
    data = (folder / "00001.jpg").read_bytes()
    (folder / "00003.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=rf"{folder / '00003.jpg'}: not a readable JPEG"):
        read_frames(folder, [0, 2])
    # a PNG under a .jpg name is a valid image: decoded by content, losslessly
    Image.new("RGB", (32, 24), (11, 222, 33)).save(folder / "00004.jpg", format="PNG")
    assert read_frames(folder, [3])[0][5, 5].tolist() == [11, 222, 33]
    # the intact frame is unaffected by its broken neighbours
    assert read_frames(folder, [0])[0][0, 0].tolist() == [pixel(0, 0)] * 3


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA"])
def test_case2_grayscale_cmyk_palette_jpegs_come_out_rgb(tmp_path, mode):
    """Case 2 (docs/reliability.md): grayscale, CMYK, palette and RGBA images come out as (H, W, 3) RGB."""
    folder = tmp_path / mode
    folder.mkdir()
    rgb = Image.new("RGB", (16, 12), (200, 100, 50))
    image = rgb.convert(mode)
    if mode in ("L", "CMYK"):
        image.save(folder / "00001.jpg", quality=100)
    else:  # JPEG cannot hold these: a misnamed PNG, as extraction tools sometimes write
        image.save(folder / "00001.jpg", format="PNG")
    frame = np.stack(read_frames(folder, [0]))
    assert frame.shape == (1, 12, 16, 3) and frame.dtype == np.uint8
    if mode in ("L", "CMYK"):  # lossy JPEG: within 2 levels; L is the ITU-R 601 luma of the colour
        want = [124] * 3 if mode == "L" else [200, 100, 50]
        assert np.abs(frame[0, 6, 8].astype(int) - want).max() <= 2
    else:  # lossless PNG: exactly Pillow's RGB of the palette / RGBA image
        np.testing.assert_array_equal(frame[0], np.asarray(image.convert("RGB")))


# ----------------------------------------------------------------------------- case 3
@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
@pytest.mark.parametrize("damage", ["zero", "random", "text"])
def test_case3_broken_video_files_raise_naming_the_file(tmp_path, suffix, damage):
    """Case 3 (docs/reliability.md): empty, random and text files are errors starting with the path."""
    path = tmp_path / f"bad{suffix}"
    if damage == "zero":
        path.write_bytes(b"")
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    else:
        path.write_text("this is not a video\n" * 50)
    for call in (lambda: count_frames(path), lambda: read_frames(path, [0])):
        with pytest.raises(DecodeError) as e:
            call()
        assert str(e.value).startswith(f"{path}: ")
        assert "re-download" in str(e.value) or "is it the right file" in str(e.value)


@pytest.mark.parametrize("codec,suffix", [("libvpx-vp9", ".webm"), ("mpeg4", ".mp4")])
def test_case3_truncated_video_errors_or_reads_its_intact_prefix_exactly(tmp_path, codec, suffix):
    """Case 3 (docs/reliability.md): a cut file either raises DecodeError naming it, or is read as
    the shorter video its intact
    part is: the count equals what decodes, and those frames equal the full file's frames."""
    full = write_grey_video(tmp_path / f"full{suffix}", 12, codec=codec)
    whole = np.stack(read_frames(full, range(12)))
    data = full.read_bytes()
    outcomes = set()
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9, 0.97):
        cut = tmp_path / f"cut{int(frac * 100)}{suffix}"
        cut.write_bytes(data[: int(len(data) * frac)])
        try:
            n = count_frames(cut)
            frames = np.stack(read_frames(cut, range(n)))
        except DecodeError as e:
            assert str(e).startswith(f"{cut}: ")
            outcomes.add("error")
            continue
        assert 1 <= n <= 12
        np.testing.assert_array_equal(frames, whole[:n])
        outcomes.add("prefix")
        # asking past the intact part is an error naming the file, never a wrong frame
        if n < 12:
            with pytest.raises(DecodeError, match=rf"{cut}: asked for frame index 11"):
                read_frames(cut, [11])
    assert "error" in outcomes  # a cut in the header is always an error


def test_case3_webm_without_stored_count_gets_exact_segment_frames(tmp_path):
    """Case 3 (docs/reliability.md): webM stores no frame count; counting by demuxing makes segment
    indices exact."""
    path = write_grey_video(tmp_path / "v.webm", 10)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # WebM stores no frame count
    assert count_frames(path) == 10
    root = make_grey_ssv2(tmp_path / "ds", n_frames=(10, 13))
    ds = build_dataset("ssv2", root, "val", frames=4, size=16)
    # 10 frames, 4 segments of 2.5: centres 1.25, 3.75, 6.25, 8.75 -> 1, 3, 6, 8
    assert which(ds[0]["clip"], 0) == [1, 3, 6, 8]
    # 13 frames: centres 1.625, 4.875, 8.125, 11.375 -> 1, 4, 8, 11
    assert which(ds[1]["clip"], 1) == [1, 4, 8, 11]


# ----------------------------------------------------------------------------- files cut short


@pytest.mark.parametrize("kind", ["ffv1-mkv", "vp9-webm", "x264rgb-mp4-faststart"])
def test_a_video_cut_in_half_is_read_with_a_warning_or_refused_when_strict(tmp_path, caplog, kind):
    """An interrupted download: the frames before the cut are read exactly, with one warning that
    says how many and that the file ends early; `strict` (check-data) makes it an error. The
    MKV/WebM header declares a duration, the faststart MP4 a frame count."""
    suffix, codec, pix_fmt, options = LOSSLESS[kind.removesuffix("-faststart")]
    frames = _frames(40)
    whole = tmp_path / f"whole{suffix}"
    write_video(whole, frames, codec, pix_fmt, options,
                container_options={"movflags": "faststart"} if kind.endswith("faststart") else None)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="gdn.data.decode"):
        assert count_frames(whole) == 40 and caplog.records == []
        n = count_frames(cut)
        assert 10 < n < 30
        np.testing.assert_array_equal(read_stack(cut, range(n)), frames[:n])
        declared = "of the 40 frames its header declares" if suffix == ".mp4" else "(about 40 frames)"
        (record,) = caplog.records
        assert record.getMessage().startswith(f"{cut}: the file ends early: {n} ")
        assert declared in record.getMessage()
        count_frames(cut)
        assert len(caplog.records) == 1  # once per file and process
    with pytest.raises(DecodeError, match=rf"^{cut}: the file ends early: {n} .*re-download or re-encode it$"):
        count_frames(cut, strict=True)
    cache: dict = {}
    assert count_frames_cached(cut, cache) == n
    with pytest.raises(DecodeError, match="ends early"):  # the cache that counted it remembers
        count_frames_cached(cut, cache, strict=True)
