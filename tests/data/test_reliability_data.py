"""Reliability of the data path under bad input (docs/reliability.md, cases 1-5, 7 and 16).

Every test writes its own tiny files: JPEG frame folders whose pixels encode (video, frame), VP9
WebM and MPEG-4 files, and broken variants of them. Errors must name the file (and the annotation
line where there is one); training skips and counts, evaluation stops.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from gdn.commands import check_data
from gdn.data.annotations import AnnotationError
from gdn.data.datasets import build_dataset
from gdn.data.decode import DecodeError, count_frames, list_frame_files, read_frames
from gdn.data.loader import build_loader, set_epoch
from gdn.data.sampling import uniform_indices
from gdn.engine.evaluate import evaluate

torch.set_num_threads(1)

CLASSES = ["Holding something", "Pushing something from left to right",
           "Pushing something from right to left"]
TEMPLATES = ["Holding [something]", "Pushing [something] from left to right",
             "Pushing [something] from right to left"]
FRAMES_DIR = "20bn-something-something-v1"
VIDEOS_DIR = "20bn-something-something-v2"


# ----------------------------------------------------------------------------- tiny datasets
def pixel(video: int, frame: int) -> int:
    """The grey level of frame `frame` (< 12) of video `video` (< 6): 19 levels apart, so JPEG/VP9
    loss (a level or two) cannot make one frame look like another; see `which`."""
    return 16 + 19 * (frame % 12) + 3 * video


def write_frame_folder(folder: Path, n: int, video: int = 0, size=(24, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        Image.new("RGB", size[::-1], (pixel(video, t),) * 3).save(folder / f"{t + 1:05d}.jpg", quality=100)
    return folder


def write_video(path: Path, n: int, video: int = 0, codec: str = "libvpx-vp9", size=(32, 32)) -> Path:
    """A flat-grey video of `n` frames (VP9 WebM: no stored frame count; or MPEG-4)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=12)
        s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p"
        if codec == "libvpx-vp9":
            s.options = {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0", "lag-in-frames": "0"}
        for t in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), pixel(video, t), np.uint8), format="rgb24")
            frame.pts = t
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def make_ssv1(root: Path, n_frames=(9, 6, 12, 8, 10, 7)) -> Path:
    lines = []
    for i, n in enumerate(n_frames):
        write_frame_folder(root / FRAMES_DIR / str(100 + i), n, video=i)
        lines.append(f"{100 + i};{CLASSES[i % 3]}")
    (root / "something-something-v1-labels.csv").write_text("\n".join(CLASSES) + "\n")
    for split in ("train", "validation"):
        (root / f"something-something-v1-{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def make_ssv2(root: Path, n_frames=(9, 6, 12, 8)) -> Path:
    (root / VIDEOS_DIR).mkdir(parents=True)
    items = []
    for i, n in enumerate(n_frames):
        write_video(root / VIDEOS_DIR / f"{200 + i}.webm", n, video=i)
        items.append({"id": str(200 + i), "template": TEMPLATES[i % 3], "label": "x", "placeholders": []})
    (root / "something-something-v2-labels.json").write_text(
        json.dumps({name: str(i) for i, name in enumerate(CLASSES)}))
    for split in ("train", "validation"):
        (root / f"something-something-v2-{split}.json").write_text(json.dumps(items))
    return root


def grey(clip: torch.Tensor) -> list[int]:
    """Per-frame grey level (channel 0, top-left pixel) of a uint8 (C, T, H, W) clip."""
    assert clip.dtype == torch.uint8
    return clip[0, :, 0, 0].long().tolist()


def which(clip: torch.Tensor, video: int) -> list[int]:
    """The frame numbers a clip of video `video` shows, read back from its grey levels."""
    return [round((v - 16 - 3 * video) / 19) for v in grey(clip)]


def check_data_run(capsys, *argv: str) -> tuple[int, str]:
    p = argparse.ArgumentParser()
    check_data.add_arguments(p)
    code = check_data.run(p.parse_args(list(argv)))
    return code, capsys.readouterr().out


# ----------------------------------------------------------------------------- case 1
def test_case1_missing_frame_folder_checkdata_lists_train_skips_eval_stops(tmp_path, capsys, caplog):
    root = make_ssv1(tmp_path)
    missing = root / FRAMES_DIR / "102"
    for f in missing.iterdir():
        f.unlink()
    missing.rmdir()

    # check-data lists it with the annotation file, line and id, and exits 1
    code, out = check_data_run(capsys, "--dataset", "ssv1", "--root", str(root), "--split", "train")
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("  [train]")]
    assert len(bad) == 1
    assert "something-something-v1-train.csv, line 3 (id 102)" in bad[0] and str(missing) in bad[0]
    assert "frame folder not found" in bad[0]

    # training skips it (deterministically: the next index) and counts the skip
    train = build_dataset("ssv1", root, "train", frames=4, size=16, train=True)
    with caplog.at_level(logging.WARNING, logger="gdn.data.datasets"):
        item = train[(2, 0)]
    assert (item["index"], item["num_skipped"], item["label"]) == (3, 1, 0)
    assert "102" in caplog.text and str(missing) in caplog.text
    assert train[(2, 0)]["index"] == 3 and torch.equal(train[(2, 0)]["clip"], item["clip"])
    loader = build_loader(train, 2, train=True, workers=0, seed=0, drop_last=False)
    set_epoch(loader, 0)
    skipped = sum(int(b["num_skipped"].sum()) for b in loader)
    assert skipped == 1  # the missing video comes up once per epoch and is counted once

    # evaluation stops with the path (through the loader and `evaluate`, as `gdn test` runs it)
    val = build_dataset("ssv1", root, "val", frames=4, size=16)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    with pytest.raises(DecodeError, match=rf"{missing}: frame folder not found.*video 102, index 2"):
        evaluate(model, build_loader(val, 2, train=False, workers=0), "cpu")


def test_case1_missing_webm_checkdata_and_eval(tmp_path, capsys):
    root = make_ssv2(tmp_path)
    gone = root / VIDEOS_DIR / "201.webm"
    gone.unlink()
    code, out = check_data_run(capsys, "--dataset", "ssv2", "--root", str(root), "--split", "validation")
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("  [validation]")]
    assert len(bad) == 1 and "something-something-v2-validation.json, entry 1 (id 201)" in bad[0]
    assert f"{gone}: file not found" in bad[0]
    val = build_dataset("ssv2", root, "val", frames=4, size=16)
    with pytest.raises(DecodeError, match=rf"{gone}: file not found"):
        val[1]
    item = build_dataset("ssv2", root, "train", frames=4, size=16, train=True)[(1, 0)]
    assert (item["index"], item["num_skipped"]) == (2, 1)


# ----------------------------------------------------------------------------- case 2
def test_case2_folder_without_jpegs(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no frames here")
    with pytest.raises(DecodeError, match=rf"{folder}: contains no JPEG frames"):
        list_frame_files(folder)
    with pytest.raises(DecodeError, match=rf"{folder}: contains no JPEG frames"):
        count_frames(folder)


def test_case2_gap_in_frame_numbers_warns_and_uses_sorted_files(tmp_path, caplog, capsys):
    """Frames are taken in sorted order and counted as files (no index points at a hole), and a
    warning names the folder and the missing numbers: a gap means an interrupted extraction.
    `gdn check-data` reports the folder as bad."""
    root = make_ssv1(tmp_path, n_frames=(8, 6))
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

    code, out = check_data_run(capsys, "--dataset", "ssv1", "--root", str(root), "--split", "train")
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("  [train]")]
    assert len(bad) == 1 and "line 1 (id 100)" in bad[0] and "missing" in bad[0]


def test_case2_zero_byte_truncated_and_png_renamed_jpegs(tmp_path):
    folder = write_frame_folder(tmp_path / "v", 4)
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
    """A cut file either raises DecodeError naming it, or is read as the shorter video its intact
    part is: the count equals what decodes, and those frames equal the full file's frames."""
    full = write_video(tmp_path / f"full{suffix}", 12, codec=codec)
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
    path = write_video(tmp_path / "v.webm", 10)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # WebM stores no frame count
    assert count_frames(path) == 10
    root = make_ssv2(tmp_path / "ds", n_frames=(10, 13))
    ds = build_dataset("ssv2", root, "val", frames=4, size=16)
    # 10 frames, 4 segments of 2.5: centres 1.25, 3.75, 6.25, 8.75 -> 1, 3, 6, 8
    assert which(ds[0]["clip"], 0) == [1, 3, 6, 8]
    # 13 frames: centres 1.625, 4.875, 8.125, 11.375 -> 1, 4, 8, 11
    assert which(ds[1]["clip"], 1) == [1, 4, 8, 11]


# ----------------------------------------------------------------------------- case 4
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("kind", ["frames", "webm"])
def test_case4_video_shorter_than_segments(tmp_path, n, kind):
    if kind == "frames":
        root = make_ssv1(tmp_path, n_frames=(n, 9))
        name = "ssv1"
    else:
        root = make_ssv2(tmp_path, n_frames=(n, 9))
        name = "ssv2"
    want = uniform_indices(n, 8).tolist()  # n=3: frames 0,0,0,1,1,1,2,2
    if n == 3:
        assert uniform_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    val = build_dataset(name, root, "val", frames=8, size=16)
    item = val[0]
    assert item["clip"].shape == (3, 8, 16, 16)
    assert which(item["clip"], 0) == want
    views = build_dataset(name, root, "val", frames=8, size=16, clips=2, crops=3)[0]["clip"]
    assert views.shape == (6, 3, 8, 16, 16)
    assert all(which(v, 0) == want for v in views)
    train = build_dataset(name, root, "train", frames=8, size=16, train=True, flip="none")
    clips = [train[(0, epoch)]["clip"] for epoch in range(3)]
    assert all(c.shape == (3, 8, 16, 16) for c in clips)
    assert torch.equal(train[(0, 1)]["clip"], clips[1])  # deterministic
    # the temporal pattern is the same in every epoch (only the crop/scale changes)
    for c in clips:
        assert which(c, 0) == want


# ----------------------------------------------------------------------------- case 5
def _ssv1_with(root: Path, extra_lines: list[str]) -> None:
    make_ssv1(root, n_frames=(4, 4))
    with open(root / "something-something-v1-train.csv", "a") as f:
        f.write("".join(line + "\n" for line in extra_lines))


def test_case5_unknown_class_and_duplicate_id_fail_at_load_time(tmp_path):
    _ssv1_with(tmp_path, ["300;Juggling something", "100;Holding something"])
    with pytest.raises(AnnotationError) as e:
        build_dataset("ssv1", tmp_path, "train", frames=4, size=16, train=True)
    msg = str(e.value)
    assert "2 problem(s)" in msg
    assert "something-something-v1-train.csv, line 3: unknown class 'Juggling something'" in msg
    assert "something-something-v1-train.csv, line 4: duplicate id '100' (first at line 1)" in msg


def test_case5_template_matching_no_class_fails_at_load_time(tmp_path):
    root = make_ssv2(tmp_path, n_frames=(4, 4))
    items = json.loads((root / "something-something-v2-train.json").read_text())
    items.append({"id": "999", "template": "Spinning [something] around"})
    (root / "something-something-v2-train.json").write_text(json.dumps(items))
    with pytest.raises(AnnotationError, match=r"something-something-v2-train.json, entry 2: template "
                                              r"'Spinning \[something\] around' of video 999 matches no class"):
        build_dataset("ssv2", root, "train", frames=4, size=16, train=True)


def test_case5_label_index_out_of_range_fails_at_load_time(tmp_path):
    write_frame_folder(tmp_path / "a", 4)
    write_frame_folder(tmp_path / "b", 4)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "train.txt").write_text("a 4 1\nb 4 3\n")
    with pytest.raises(AnnotationError, match=r"train.txt, line 2: label 3 out of range: 3 classes"):
        build_dataset("list", tmp_path, "train", classes_file="classes.txt", train=True, frames=4, size=16)
    (tmp_path / "train.txt").write_text("a 4 1\nb 4 -2\n")
    with pytest.raises(AnnotationError, match=r"train.txt, line 2: negative label -2"):
        build_dataset("list", tmp_path, "train", classes_file="classes.txt", train=True, frames=4, size=16)
    # every label that reaches a batch is a valid class index
    (tmp_path / "train.txt").write_text("a 4 1\nb 4 2\n")
    ds = build_dataset("list", tmp_path, "train", classes_file="classes.txt", train=True, frames=4, size=16,
                       flip="none")
    assert [ds[(i, 0)]["label"] for i in range(2)] == [1, 2]


# ----------------------------------------------------------------------------- case 16 (data side)
def test_case16_workers_and_epochs_get_different_augmentations(tmp_path):
    """Eight identical videos: any difference between their clips is augmentation. Loaded by two
    workers, the samples differ from each other (no worker repeats another's random stream) and
    from one epoch to the next, and equal what a single-process loader gives."""
    root = tmp_path
    lines = []
    for i in range(8):
        folder = root / FRAMES_DIR / str(100 + i)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(7)  # the same textured frames in every video
        for t in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"{t + 1:05d}.jpg",
                                                                                    quality=100)
        lines.append(f"{100 + i};Holding something")
    (root / "something-something-v1-labels.csv").write_text("Holding something\n")
    (root / "something-something-v1-train.csv").write_text("\n".join(lines) + "\n")
    ds = build_dataset("ssv1", root, "train", frames=4, size=16, train=True, seed=5)

    def epoch_clips(loader, epoch):
        set_epoch(loader, epoch)
        return {int(b["index"][0]): b["clip"][0] for b in loader}

    two = build_loader(ds, 1, train=True, workers=2, seed=5)
    zero = build_loader(ds, 1, train=True, workers=0, seed=5)
    e0, e1 = epoch_clips(two, 0), epoch_clips(two, 1)
    assert sorted(e0) == list(range(8))
    distinct = {c.numpy().tobytes() for c in e0.values()}
    assert len(distinct) == 8  # every sample its own augmentation
    assert all(not torch.equal(e0[i], e1[i]) for i in range(8))  # and a new one each epoch
    z0 = epoch_clips(zero, 0)
    assert all(torch.equal(z0[i], e0[i]) for i in range(8))  # independent of the worker count
