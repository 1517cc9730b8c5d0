"""Folder datasets (`ROOT/<class name>/<video or frame folder>`): layouts, the stratified split,
bad entries, `gdn check-data`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from media import LOSSLESS, gradient_frames, write_video
from PIL import Image

from gdn.cli import main
from gdn.data.annotations import AnnotationError, read_folder, split_by_class, write_split_list
from gdn.data.datasets import build_dataset
from gdn.data.decode import read_frames

CLASSES = ["Pushing something from left to right", "Pushing something from right to left", "Waving"]


def video(path, seed: int = 0, n: int = 6):
    suffix, codec, pix_fmt, options = LOSSLESS["ffv1-mkv"]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = gradient_frames(n, seed=seed)
    write_video(path.with_suffix(suffix), frames, codec, pix_fmt, options)
    return frames


def frame_folder(path, seed: int = 0, n: int = 6):
    path.mkdir(parents=True)
    frames = gradient_frames(n, seed=seed)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{i + 1:05d}.jpg", quality=95)
    return frames


def flat(root, per_class=(3, 3, 2)):
    """CLASSES with `per_class` clips each, the last clip of each class a frame folder."""
    for c, (name, n) in enumerate(zip(CLASSES, per_class)):
        for i in range(n - 1):
            video(root / name / f"v{i}", seed=10 * c + i)
        frame_folder(root / name / f"f{n - 1}", seed=10 * c + n - 1)
    return root


def test_flat_folder_classes_sorted_entries_and_label_aware_flip(tmp_path):
    root = flat(tmp_path)
    (root / "README.txt").write_text("files beside the class folders are ignored")
    (root / CLASSES[2] / ".DS_Store").write_text("hidden entries too")
    ann = read_folder(root, "all")
    assert not ann.problems
    assert ann.classes == sorted(CLASSES)
    assert [(e.id, e.label, e.frames) for e in ann.entries] == [
        (f"{CLASSES[0]}/f2", 0, True), (f"{CLASSES[0]}/v0.mkv", 0, False), (f"{CLASSES[0]}/v1.mkv", 0, False),
        (f"{CLASSES[1]}/f2", 1, True), (f"{CLASSES[1]}/v0.mkv", 1, False), (f"{CLASSES[1]}/v1.mkv", 1, False),
        (f"{CLASSES[2]}/f1", 2, True), (f"{CLASSES[2]}/v0.mkv", 2, False)]
    ds = build_dataset("folder", root, "all", frames=4, size=16, train=True)
    assert ds.flip_map == [1, 0, 2]  # left/right classes swap under a horizontal flip, the others stay
    # the entry's path is the file written: its decoded frames are those encoded (lossless)
    assert np.array_equal(np.stack(read_frames(ann.entries[1].path, range(6))), gradient_frames(6, seed=0))
    assert ds[0]["clip"].shape == (3, 4, 16, 16)  # a frame folder entry reads as a clip


def test_split_folders_and_list_files_give_the_same_classes(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                video(tmp_path / "split" / split / name / f"{split}{i}", seed=c + i)
    train = build_dataset("folder", tmp_path / "split", "train", frames=4, size=16, train=True)
    val = build_dataset("folder", tmp_path / "split", "validation", frames=4, size=16)
    assert train.classes == val.classes == sorted(CLASSES)
    assert (len(train), len(val)) == (6, 3)
    assert val.video_ids == [f"{name}/val0.mkv" for name in sorted(CLASSES)]

    root = flat(tmp_path / "flat")
    (root / "val.txt").write_text(f"{CLASSES[2]}/v0.mkv\n{CLASSES[0]}/f2\n")  # beside the class folders
    val = build_dataset("folder", root, "validation", frames=4, size=16, list_file="val.txt")
    assert val.classes == sorted(CLASSES) and val.labels == [2, 0] and val.video_ids == [f"{CLASSES[2]}/v0.mkv", f"{CLASSES[0]}/f2"]
    assert val[1]["clip"].shape == (3, 4, 16, 16)  # the frame folder, listed without a suffix


def test_fraction_split_is_stratified_reproducible_and_round_trips_through_lists(tmp_path):
    root = tmp_path / "many"
    sizes = {"a": 10, "b": 5, "c": 2, "d": 1}
    for name, n in sizes.items():
        for i in range(n):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{i:02d}.mp4").write_bytes(b"")  # the split reads names only
    ann = read_folder(root, "all")
    train, val = split_by_class(ann, 0.2, seed=0)
    # per class round(n * 0.2), at least one when the class has two or more, none when it has one
    assert Counter(ann.classes[e.label] for e in val) == {"a": 2, "b": 1, "c": 1}
    assert Counter(ann.classes[e.label] for e in train) == {"a": 8, "b": 4, "c": 1, "d": 1}
    assert {e.id for e in train} | {e.id for e in val} == {e.id for e in ann.entries}
    assert not {e.id for e in train} & {e.id for e in val}
    assert split_by_class(ann, 0.2, seed=0) == (train, val)  # same folder, same seed: same split
    assert {e.id for e in split_by_class(ann, 0.2, seed=1)[1]} != {e.id for e in val}
    # another class added: the existing classes keep their split
    (root / "e").mkdir()
    (root / "e" / "x.mp4").write_bytes(b"")
    val2 = split_by_class(read_folder(root, "all"), 0.2, seed=0)[1]
    assert [e.id for e in val2] == [e.id for e in val]
    # written as a list and read back: the same entries and labels
    write_split_list(tmp_path / "val.txt", val)
    again = read_folder(root, "validation", list_file=tmp_path / "val.txt")
    assert [(e.id, ann.classes[e.label]) for e in again.entries] == [(e.id, ann.classes[e.label]) for e in val]


def test_case5_bad_entries_in_a_folder_dataset_are_named(tmp_path, capsys):
    """Reliability case 5 for folder datasets: a file that is not a video, an empty class folder,
    a validation class unknown to train and bad list lines fail at load time, each named;
    `gdn check-data` lists them with the unreadable videos and exits 1."""
    root = flat(tmp_path / "flat")
    (root / CLASSES[0] / "notes.txt").write_text("not a video")
    (root / "Empty class").mkdir()
    (root / CLASSES[2] / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(AnnotationError) as e:
        build_dataset("folder", root, "all", frames=4, size=16, train=True)
    msg = str(e.value)
    assert "2 problem(s) in the folder all annotations" in msg
    assert f"{root}, {CLASSES[0]}/notes.txt: not a video file (.txt suffix" in msg
    assert f"{root}, Empty class/: empty class folder" in msg

    assert main(["check-data", "--dataset", "folder", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"[all] flat, {CLASSES[0]}/notes.txt: not a video file" in out
    assert "[all] flat, Empty class/: empty class folder" in out
    assert f"[all] flat/{CLASSES[2]}/broken.mp4: {root / CLASSES[2] / 'broken.mp4'}: cannot be opened" in out

    split = tmp_path / "split"
    video(split / "train" / "Waving" / "a")
    video(split / "val" / "Waving" / "b")
    video(split / "val" / "Jumping" / "c")
    with pytest.raises(AnnotationError, match=r"val, Jumping/: class folder 'Jumping' has no counterpart in .*train"):
        build_dataset("folder", split, "validation", frames=4, size=16)

    (tmp_path / "list.txt").write_text(f"loose.mp4\nDancing/x.mp4\n{CLASSES[2]}/v0.mkv\n{CLASSES[2]}/v0.mkv\n")
    with pytest.raises(AnnotationError) as e:
        build_dataset("folder", flat(tmp_path / "flat2"), "train", frames=4, size=16, list_file=tmp_path / "list.txt")
    msg = str(e.value)
    assert "list.txt, line 1: expected <class name>/<video>, got 'loose.mp4'" in msg
    assert "list.txt, line 2: unknown class 'Dancing'" in msg
    assert f"list.txt, line 4: duplicate id '{CLASSES[2]}/v0.mkv' (first at line 3)" in msg


def test_unsplit_folder_needs_a_split_to_train_on(tmp_path):
    root = flat(tmp_path)
    with pytest.raises(AnnotationError, match="no train folder and no list file for the train split"):
        build_dataset("folder", root, "train", frames=4, size=16, train=True)
    with pytest.raises(AnnotationError, match="folder not found"):
        build_dataset("folder", tmp_path / "missing", "all", frames=4, size=16)
