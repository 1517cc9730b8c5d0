"""`gdn check-data`: "clean" only when every entry is labelled and readable; reading nothing is a
failure with its reason as the last line; paths typed on the command line are relative to the
current directory."""

from __future__ import annotations

import pytest
from media import LOSSLESS, gradient_frames, write_video

from gdn.cli import main


def make_list_dataset(root, lines: str, classes: str | None = "push\npull\n"):
    """A list dataset of videos under `root`: a.mp4 and b.mp4 (12 frames each), the train list
    `lines` and, unless None, a class-names file."""
    suffix, codec, pix_fmt, options = LOSSLESS["x264rgb-mp4"]
    (root / "videos").mkdir(parents=True)
    for name in ("a", "b"):
        write_video(root / "videos" / f"{name}{suffix}", gradient_frames(12), codec, pix_fmt, options)
    (root / "train.txt").write_text(lines)
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def run(capsys, *argv) -> tuple[int, list[str], list[str]]:
    code = main(["check-data", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_a_line_without_its_label_is_bad_not_clean(tmp_path, capsys):
    root = make_list_dataset(tmp_path / "d", "videos/a.mp4 0\nvideos/b.mp4\n")
    code, out, _ = run(capsys, "--dataset", "list", "--root", str(root), "--split", "train")
    assert code == 1
    assert out[-2:] == ["1 bad entry:", "  [train] train.txt, line 2: 'videos/b.mp4' has no label; every line "
                                        "of a train list needs one ('<path> <label>')"]
    root = make_list_dataset(tmp_path / "ok", "videos/a.mp4 0\nvideos/b.mp4 1\n")
    code, out, _ = run(capsys, "--dataset", "list", "--root", str(root), "--split", "train")
    assert code == 0 and out[-1] == "clean: every entry has a known label and readable frames"


@pytest.mark.parametrize("case", ["empty root", "wrong dataset", "no list file"])
def test_nothing_read_is_a_failure_with_the_reason_last(tmp_path, capsys, case):
    root = tmp_path / "d"
    root.mkdir()
    if case == "wrong dataset":
        (root / "something-something-v1-labels.csv").write_text("push\n")
    dataset = "list" if case == "no list file" else "ssv2"
    code, out, err = run(capsys, "--dataset", dataset, "--root", str(root))
    assert code == 1 and not any("clean" in line for line in out)
    assert len(err) == 1 and err[0].startswith(f"gdn check-data: error: nothing could be read under {root} "
                                               f"as dataset {dataset}: ")
    reason = {"empty root": f"{root}/something-something-v2-labels.json: SSv2 label file not found; check the "
                            "data root",
              "wrong dataset": "this data root holds ssv1 annotations (something-something-v1-labels.csv): use "
                               "dataset ssv1",
              "no list file": f"no list file for the train split: looked for {root}/train.txt"}[case]
    assert reason in err[0]


def test_usage_errors_exit_2_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--dataset", "ssv1", "--root", str(tmp_path / "nonexistent"))
    assert code == 2 and err == [f"gdn check-data: error: --root {tmp_path}/nonexistent: {tmp_path}/nonexistent "
                                 "is not a folder; pass the folder that holds the annotation files and the videos"]
    root = make_list_dataset(tmp_path / "d", "videos/a.mp4 0\n")
    code, _, err = run(capsys, "--dataset", "list", "--root", str(root), "--classes-file", "nope.txt")
    assert code == 2 and err == [f"gdn check-data: error: --classes-file nope.txt: {tmp_path}/nope.txt not found "
                                 "(paths typed on the command line are relative to the current directory)"]


def test_paths_typed_are_relative_to_the_current_directory(tmp_path, capsys, monkeypatch):
    """`--classes-file mydata/classes.txt` is mydata/classes.txt from where the command runs
    (it was looked for under the root, as mydata/mydata/classes.txt); the video paths inside the
    list stay relative to the root."""
    make_list_dataset(tmp_path / "mydata", "videos/a.mp4 0\nvideos/b.mp4 1\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "--dataset", "list", "--root", "mydata", "--list-file", "mydata/train.txt",
                       "--classes-file", "mydata/classes.txt")
    assert code == 0
    assert [line.split() for line in out if line.split()[:1] in (["0"], ["1"])] == [["0", "push", "1"],
                                                                                    ["1", "pull", "1"]]


def test_a_video_that_ends_early_is_bad(tmp_path, capsys):
    suffix, codec, pix_fmt, options = LOSSLESS["ffv1-mkv"]
    root = make_list_dataset(tmp_path / "d", "videos/a.mp4 0\nvideos/cut.mkv 1\n")
    whole = tmp_path / f"whole{suffix}"
    write_video(whole, gradient_frames(40), codec, pix_fmt, options)
    data = whole.read_bytes()
    (root / "videos" / "cut.mkv").write_bytes(data[: len(data) // 2])
    code, out, _ = run(capsys, "--dataset", "list", "--root", str(root), "--split", "train",
                       "--cache-dir", str(tmp_path / "cache"))
    assert code == 1
    assert out[-1].startswith(f"  [train] train.txt, line 2 (id videos/cut.mkv): {root}/videos/cut.mkv: the file "
                              "ends early: ")
    assert out[-1].endswith("(about 40 frames); re-download or re-encode it")
    # the frame-count cache remembers it: a second check does not call the file clean
    assert run(capsys, "--dataset", "list", "--root", str(root), "--split", "train",
               "--cache-dir", str(tmp_path / "cache"))[0] == 1
