"""`gdn predict --window` on long videos and `gdn predict --source` on a live stream, with the
colour classifier of conftest.py (a model whose answer the test controls)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from gdn.cli import main
from gdn.data.decode import count_frames
from media import colour_frames, write_video

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """32 red, 32 green, 36 blue frames (100 at 12 fps)."""
    frames = np.concatenate([colour_frames("red", 32), colour_frames("green", 32, seed=1),
                             colour_frames("blue", 36, seed=2)])
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, frames, "mpeg4", "yuv420p")
    return path


def test_windows_table_json_csv_timeline_and_overlay(colour_checkpoint, long_video, tmp_path, capsys):
    out = {k: tmp_path / f"out.{k}" for k in ("json", "csv", "png", "mp4")}
    assert main(["predict", str(colour_checkpoint), str(long_video), "--window", "16f", "--topk", "2",
                 "--device", "cpu", "--json", str(out["json"]), "--csv", str(out["csv"]),
                 "--timeline", str(out["png"]), "--overlay", str(out["mp4"])]) == 0
    # 6 windows of 16 frames, then the last partial window ends at the last frame: [84, 100)
    spans = [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80), (80, 96), (84, 100)]
    labels = ["red", "red", "green", "green", "blue", "blue", "blue"]
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0] == f"{long_video}: 7 windows of 16 frames, 100 frames at 12 fps"
    assert [line.split()[3] for line in table[2:]] == labels
    assert table[-1].split()[:3] == ["6", "7.00", "8.33"]

    (item,) = json.loads(out["json"].read_text())
    assert (item["path"], item["frames"], item["fps"]) == (str(long_video), 100, 12.0)
    assert [(w["start_frame"], w["end_frame"]) for w in item["windows"]] == spans
    assert [w["predictions"][0]["class"] for w in item["windows"]] == labels
    assert item["windows"][1]["start"] == pytest.approx(16 / 12, abs=1e-4)

    with open(out["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 * 2 and [r["rank"] for r in rows[:2]] == ["1", "2"]
    for r in rows:  # the same numbers as the JSON
        w = item["windows"][int(r["window"])]
        p = w["predictions"][int(r["rank"]) - 1]
        assert (int(r["start_frame"]), int(r["end_frame"]), r["class"]) == (w["start_frame"], w["end_frame"], p["class"])
        assert float(r["probability"]) == pytest.approx(p["probability"], abs=1e-6)

    with Image.open(out["png"]) as image:
        assert image.size == (1100, 500)
    assert count_frames(out["mp4"]) == 100


def test_seconds_and_stride(colour_checkpoint, long_video, capsys):
    assert main(["predict", str(colour_checkpoint), str(long_video), "--window", "2", "--stride", "1s",
                 "--json", "--device", "cpu"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    # 24-frame windows every 12 frames: 7 fit, then [76, 100)
    assert [w["start_frame"] for w in item["windows"]] == [0, 12, 24, 36, 48, 60, 72, 76]
    assert [w["start"] for w in item["windows"][:3]] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("argv,reason", [
    (["VIDEO", "--csv", "x.csv"], "--stride, --csv and --timeline need --window"),
    (["VIDEO", "--window", "16f", "--json", "VIDEO"], "--json writes a .json file"),
    (["VIDEO", "--source", "http://127.0.0.1:9/x.ts", "--window", "2s"], "not both"),
    (["--source", "http://127.0.0.1:9/x.ts"], "--source needs --window"),
    (["--source", "http://127.0.0.1:9/x.ts", "--window", "2s", "--overlay", "o.mp4"], "are for video files"),
    ([], "give video files or frame folders, or --source URL"),
    (["VIDEO", "--window", "8f", "--stride", "9f"], "stride <= window"),
])
def test_usage_errors_are_one_line_exit_2(colour_checkpoint, long_video, argv, reason, capsys):
    argv = [str(long_video) if a == "VIDEO" else a for a in argv]
    assert main(["predict", str(colour_checkpoint), *argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0], err


def test_a_window_that_is_not_a_length_is_an_argument_error(colour_checkpoint, long_video, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(colour_checkpoint), str(long_video), "--window", "4x"])
    assert e.value.code == 2 and "'4x' is not a length" in capsys.readouterr().err


def test_live_source_json_lines_with_smoothing_and_threshold(colour_checkpoint, serve, capsys):
    server = serve("end")
    assert main(["predict", str(colour_checkpoint), "--source", server.url, "--window", "12f", "--stride", "6f",
                 "--smooth", "2", "--threshold", "0.9", "--topk", "2", "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines and lines[-1]["window"] == 10 and lines[-1]["end_frame"] == 72
    for line in lines:
        assert set(line) == {"time", "path", "window", "start", "end", "start_frame", "end_frame",
                             "predictions", "label"}
        top = line["predictions"][0]
        assert line["label"] == (top["class"] if top["probability"] >= 0.9 else None)
    assert lines[-1]["label"] == "blue"


def test_live_source_dropped_is_one_line_exit_1(colour_checkpoint, serve, capsys):
    """Case 19 (docs/reliability.md) from the command line: one line, exit 1, no traceback."""
    server = serve("drop")
    assert main(["predict", str(colour_checkpoint), "--source", server.url, "--window", "12f",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"gdn predict: error: {server.url}: connection lost after ")
    assert err[-1].endswith("--reconnect N retries") and not any("Traceback" in e for e in err)
