import json
import random
from pathlib import Path

import pytest
from media import CLASSES, make_grey_ssv1, make_grey_ssv2, write_grey_frames

from gdn.data.datasets import build_dataset

from gdn.data.annotations import AnnotationError, read_annotations, read_list, read_ssv1, read_ssv2
from gdn.data.transforms import flip_label_map

CAM_L = "Turning the camera left while filming something"
CAM_R = "Turning the camera right while filming something"
PUSH_LR = "Pushing something from left to right"
PUSH_RL = "Pushing something from right to left"
PULL_LR = "Pulling something from left to right"
PULL_RL = "Pulling something from right to left"


def sorted_label_list() -> list[str]:
    """174 alphabetically sorted names with the mirrored classes at their SSv2 indices
    (86/87 pulling, 93/94 pushing, 166/167 camera); fillers sort into the gaps."""
    fixed = {86: PULL_LR, 87: PULL_RL, 93: PUSH_LR, 94: PUSH_RL, 166: CAM_L, 167: CAM_R}

    def filler(i):
        prefix = "A" if i < 86 else "Pullingz" if i < 93 else "Q" if i < 166 else "Z"
        return f"{prefix} filler {i:03d}"

    names = [fixed.get(i) or filler(i) for i in range(174)]
    assert names == sorted(names)
    return names


def csv_label_list() -> list[str]:
    """174 names in 'CSV order' with SSv1's pairs at 2/4 (camera), 30/41 (pushing), 52/66 (pulling)."""
    fixed = {2: CAM_L, 4: CAM_R, 30: PUSH_LR, 41: PUSH_RL, 52: PULL_LR, 66: PULL_RL}
    names = [fixed.get(i) or f"Filler {i:03d}" for i in range(174)]
    rest = [n for n in names if n.startswith("Filler")]
    random.Random(0).shuffle(rest)  # CSV order is not alphabetical
    it = iter(rest)
    return [n if not n.startswith("Filler") else next(it) for n in names]


def write_ssv1(root, names, train_lines, test_lines=("7",)):
    (root / "something-something-v1-labels.csv").write_text("\n".join(names) + "\n")
    (root / "something-something-v1-train.csv").write_text("\n".join(train_lines) + "\n")
    (root / "something-something-v1-validation.csv").write_text("\n".join(train_lines[:1]) + "\n")
    (root / "something-something-v1-test.csv").write_text("\n".join(test_lines) + "\n")


def write_ssv2(root, names, train_items, test_items=({"id": "9"},)):
    labels = {n: str(i) for i, n in enumerate(names)}
    (root / "something-something-v2-labels.json").write_text(json.dumps(labels))
    (root / "something-something-v2-train.json").write_text(json.dumps(train_items))
    (root / "something-something-v2-test.json").write_text(json.dumps(list(test_items)))


def pairs(fmap):
    return {(i, j) for i, j in enumerate(fmap) if i != j}


def test_ssv1_both_label_orders_and_flip_pairs(tmp_path):
    csv_names = csv_label_list()
    write_ssv1(tmp_path, csv_names, ["1;" + PUSH_LR, "2;" + CAM_R, "3;" + csv_names[0]])
    ann = read_ssv1(tmp_path, "train", "csv")
    assert ann.classes == csv_names and not ann.problems
    assert [(e.id, e.label) for e in ann.entries] == [("1", 30), ("2", 4), ("3", 0)]
    assert ann.entries[0].path == tmp_path / "20bn-something-something-v1" / "1"
    assert pairs(flip_label_map(ann.classes)) == {(2, 4), (4, 2), (30, 41), (41, 30), (52, 66), (66, 52)}

    # the same label file in sorted order (TSM/GST) gives the SSv2 indices
    write_ssv1(tmp_path, csv_label_list_sorted_source(), ["1;" + PUSH_LR])
    ann = read_ssv1(tmp_path, "train", "sorted")
    assert ann.classes == sorted_label_list()
    assert ann.entries[0].label == 93
    assert pairs(flip_label_map(ann.classes)) == {(86, 87), (87, 86), (93, 94), (94, 93),
                                                 (166, 167), (167, 166)}
    test = read_ssv1(tmp_path, "test")
    assert [(e.id, e.label) for e in test.entries] == [("7", -1)]


def csv_label_list_sorted_source():
    names = sorted_label_list()
    random.Random(1).shuffle(names)
    return names


def test_ssv2_classes_templates_and_flip_pairs(tmp_path):
    names = sorted_label_list()
    items = [{"id": "11", "template": "Pushing [something] from left to right", "label": "x"},
             {"id": "12", "template": "Turning the camera right while filming [something]"}]
    write_ssv2(tmp_path, names, items)
    ann = read_ssv2(tmp_path, "train")
    assert not ann.problems
    assert [(e.id, e.label, e.frames) for e in ann.entries] == [("11", 93, False), ("12", 167, False)]
    assert ann.entries[0].path == tmp_path / "20bn-something-something-v2" / "11.webm"
    assert pairs(flip_label_map(ann.classes)) == {(86, 87), (87, 86), (93, 94), (94, 93),
                                                 (166, 167), (167, 166)}
    test = read_annotations("ssv2", tmp_path, "test")
    assert [(e.id, e.label) for e in test.entries] == [("9", -1)]
    # extracted frame folders are detected
    (tmp_path / "20bn-something-something-v2" / "11").mkdir(parents=True)
    ann = read_ssv2(tmp_path, "train")
    assert ann.entries[0].frames and ann.entries[0].path == tmp_path / "20bn-something-something-v2" / "11"
    ann = read_ssv2(tmp_path, "train", frames_dir=tmp_path / "frames")
    assert ann.entries[1].path == tmp_path / "frames" / "12"


def test_ssv1_errors_name_file_and_line(tmp_path):
    write_ssv1(tmp_path, ["Holding something", "Dropping something"],
               ["1;Holding something", "2;Juggling something", "1;Dropping something", "no-separator"])
    ann = read_ssv1(tmp_path, "train")
    got = [str(p) for p in ann.problems]
    f = tmp_path / "something-something-v1-train.csv"
    assert got == [f"{f}, line 2: unknown class 'Juggling something' (not in something-something-v1-labels.csv)",
                   f"{f}, line 4: expected '<id>;<class name>', got 'no-separator'",
                   f"{f}, line 3: duplicate id '1' (first at line 1); remove one of them"]
    with pytest.raises(AnnotationError, match=r"(?s)3 problem\(s\).*line 2: unknown class.*gdn check-data"):
        ann.raise_for_problems()
    with pytest.raises(AnnotationError, match="labels.csv: SSv1 label file not found"):
        read_ssv1(tmp_path / "nowhere", "train")


def test_ssv2_errors_name_file_and_entry(tmp_path):
    write_ssv2(tmp_path, ["Holding something"], [
        {"id": "1", "template": "Holding [something]"},
        {"id": "2", "template": "Juggling [something]"},
        {"id": "1", "template": "Holding [something]"},
        {"template": "Holding [something]"},
    ])
    f = tmp_path / "something-something-v2-train.json"
    got = [str(p) for p in read_ssv2(tmp_path, "train").problems]
    assert got[0] == (f"{f}, entry 1: template 'Juggling [something]' of video 2 matches no class "
                      "in something-something-v2-labels.json")
    assert got[1].startswith(f"{f}, entry 3: expected an object with an 'id'")
    assert got[2] == f"{f}, entry 2: duplicate id '1' (first at entry 0); remove one of them"


def test_list_files(tmp_path):
    (tmp_path / "train.txt").write_text("a/v1 30 0\na/v2 12 2\n")
    ann = read_list(tmp_path, "train.txt")
    assert ann.classes == ["0", "1", "2"]
    assert [(e.id, e.label, e.frames) for e in ann.entries] == [("a/v1", 0, True), ("a/v2", 2, True)]
    assert ann.entries[0].path == tmp_path / "a" / "v1"

    (tmp_path / "classes.txt").write_text("left thing\nright thing\n")
    (tmp_path / "videos.txt").write_text("x/my video.mp4 1\ny.mp4 0\ny.mp4 1\nz.mp4 5\n")
    ann = read_list(tmp_path, "videos.txt", "classes.txt")
    assert [(e.id, e.label, e.frames) for e in ann.entries] == [("x/my video.mp4", 1, False),
                                                                ("y.mp4", 0, False)]
    f = tmp_path / "videos.txt"
    assert [str(p) for p in ann.problems] == [
        f"{f}, line 4: label 5 out of range: 2 classes in classes.txt",
        f"{f}, line 3: duplicate id 'y.mp4' (first at line 2); remove one of them"]
    assert flip_label_map(ann.classes) == [1, 0]

    (tmp_path / "test.txt").write_text("t1.mp4\nt2.mp4\n")
    ann = read_annotations("list", tmp_path, "test")
    assert [e.label for e in ann.entries] == [-1, -1] and ann.classes == []


# ----------------------------------------------------------------------------- case 5
def _ssv1_with(root: Path, extra_lines: list[str]) -> None:
    make_grey_ssv1(root, n_frames=(4, 4))
    with open(root / "something-something-v1-train.csv", "a") as f:
        f.write("".join(line + "\n" for line in extra_lines))


def test_case5_unknown_class_and_duplicate_id_fail_at_load_time(tmp_path):
    """Case 5 (docs/reliability.md): an unknown class and a duplicate id fail when the dataset is
    built, naming file and line."""
    _ssv1_with(tmp_path, ["300;Juggling something", "100;Holding something"])
    with pytest.raises(AnnotationError) as e:
        build_dataset("ssv1", tmp_path, "train", frames=4, size=16, train=True)
    msg = str(e.value)
    assert "2 problem(s)" in msg
    assert "something-something-v1-train.csv, line 3: unknown class 'Juggling something'" in msg
    assert "something-something-v1-train.csv, line 4: duplicate id '100' (first at line 1)" in msg


def test_case5_template_matching_no_class_fails_at_load_time(tmp_path):
    """Case 5 (docs/reliability.md): an SSv2 template matching no class fails at build time, naming
    the entry."""
    root = make_grey_ssv2(tmp_path, n_frames=(4, 4))
    items = json.loads((root / "something-something-v2-train.json").read_text())
    items.append({"id": "999", "template": "Spinning [something] around"})
    (root / "something-something-v2-train.json").write_text(json.dumps(items))
    with pytest.raises(AnnotationError, match=r"something-something-v2-train.json, entry 2: template "
                                              r"'Spinning \[something\] around' of video 999 matches no class"):
        build_dataset("ssv2", root, "train", frames=4, size=16, train=True)


def test_case5_label_index_out_of_range_fails_at_load_time(tmp_path):
    """Case 5 (docs/reliability.md): a list label out of range or negative fails at build time,
    naming the line."""
    write_grey_frames(tmp_path / "a", 4)
    write_grey_frames(tmp_path / "b", 4)
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


def test_list_line_without_label_is_an_error_in_train_and_val_not_in_test(tmp_path):
    """The most likely typo of a hand-made list, a path without its label, fails at load time
    naming the file and line (it used to pass as unlabelled and crash training with
    `Target -1 is out of bounds`); a test split may be unlabelled."""
    from gdn.data.datasets import build_dataset

    (tmp_path / "train.txt").write_text("videos/a.mp4 0\nvideos/x.mp4\nvideos/b.mp4 1\n")
    f = tmp_path / "train.txt"
    for split in ("train", "val", "validation"):
        ann = read_list(tmp_path, "train.txt", split=split)
        assert [str(p) for p in ann.problems] == [
            f"{f}, line 2: 'videos/x.mp4' has no label; every line of a {split} list needs one "
            "('<path> <label>')"]
        assert [e.id for e in ann.entries] == ["videos/a.mp4", "videos/b.mp4"]
    with pytest.raises(AnnotationError, match=rf"(?s)1 problem\(s\).*{f}, line 2: 'videos/x.mp4' has no label"):
        build_dataset("list", tmp_path, "train", list_file="train.txt", train=True)
    ann = read_list(tmp_path, "train.txt", split="test")
    assert ann.problems == [] and [e.label for e in ann.entries] == [0, -1, 1]

    # an explicit -1 (unknown) is no label either, where labels are needed
    (tmp_path / "val.txt").write_text("a.mp4 -1\n")
    assert [p.reason for p in read_list(tmp_path, "val.txt", split="val").problems] == [
        "label -1 (unknown): every video of a val list needs its class index"]


def test_list_class_name_where_the_label_belongs_is_reported_as_that(tmp_path):
    (tmp_path / "classes.txt").write_text("backward\nforward\nMoving something up\n")
    (tmp_path / "train.txt").write_text("x.mp4 forward\ny.mp4 Moving something up\nz.mp4 sideways\nw.mp4 0\n")
    ann = read_list(tmp_path, "train.txt", "classes.txt")
    assert [(p.where, p.reason) for p in ann.problems] == [
        ("line 1", "the class name 'forward' stands where its label index belongs: write 1"),
        ("line 2", "the class name 'Moving something up' stands where its label index belongs: write 2"),
        ("line 3", "expected '<path> <label>', got 'z.mp4 sideways': 'sideways' is not a label index "
                   "(a 0-based integer)")]
    assert [e.id for e in ann.entries] == ["w.mp4"]
    # in an unlabelled test list too: not read as a video named "x.mp4 forward"
    (tmp_path / "test.txt").write_text("x.mp4 forward\nmy video.mp4\n")
    ann = read_list(tmp_path, "test.txt", "classes.txt", split="test")
    assert [p.where for p in ann.problems] == ["line 1"] and [e.id for e in ann.entries] == ["my video.mp4"]


def test_frame_list_with_one_line_short_of_its_label(tmp_path):
    """The format is the majority's: one short line in a frame-folder list is that line's
    problem, not a reason to read every other line as a video path."""
    (tmp_path / "train.txt").write_text("a 30 0\nb 12\nc 20 1\n")
    ann = read_list(tmp_path, "train.txt")
    assert [(e.id, e.frames) for e in ann.entries] == [("a", True), ("c", True)]
    assert [p.reason for p in ann.problems] == ["expected '<dir> <num_frames> <label>', got 'b 12'"]


@pytest.mark.parametrize("file", ["val.txt", "validation.txt"])
@pytest.mark.parametrize("split", ["val", "validation"])
def test_list_validation_split_found_under_either_name(tmp_path, file, split):
    (tmp_path / file).write_text("a.mp4 0\n")
    ann = read_annotations("list", tmp_path, split)
    assert ann.file == tmp_path / file and [e.id for e in ann.entries] == ["a.mp4"]


def test_list_split_file_not_found_names_what_was_looked_for_and_the_fix(tmp_path):
    with pytest.raises(AnnotationError) as e:
        read_annotations("list", tmp_path, "validation")
    assert str(e.value) == (
        f"no list file for the validation split: looked for {tmp_path}/validation.txt and {tmp_path}/val.txt; "
        "name it with `--set data.val_list=FILE` (relative to the data root) for gdn train, --list-file FILE "
        "for gdn test and gdn check-data")


def test_relative_paths_are_resolved_under_the_root_and_named_absolute(tmp_path, monkeypatch):
    """The readers take the root as given (relative to the current directory) and the list's own
    files under it; a missing one is named by its absolute path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "train.txt").write_text("v.mp4 0\n")
    ann = read_list("mydata", "train.txt")
    assert ann.entries[0].path.absolute() == tmp_path / "mydata" / "v.mp4"
    with pytest.raises(AnnotationError, match=rf"^{tmp_path}/mydata/mydata/classes.txt: class-names file not found"):
        read_list("mydata", "train.txt", "mydata/classes.txt")
