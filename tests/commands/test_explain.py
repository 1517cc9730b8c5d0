"""`gdn explain`: the files it writes and what they hold, with the colour classifier of conftest.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gdn.cli import main
from gdn.data.decode import count_frames
from gdn.engine.explain import explain
from gdn.engine.predict import Predictor
from media import colour_frames, write_video

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def green_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "green.mp4"
    write_video(path, colour_frames("green", 30), "mpeg4", "yuv420p")
    return path


def test_explain_writes_json_pngs_and_overlay(colour_checkpoint, green_video, tmp_path, capsys):
    out = tmp_path / "why"
    assert main(["explain", str(colour_checkpoint), str(green_video), "--out", str(out), "--layer", "layer3",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{green_video}: 'green' p=") and "reversed" in printed
    data = json.loads((out / "explain.json").read_text())
    assert (data["class"], data["model"], data["layer"]) == ("green", "tsn_tiny", "layer3")
    assert data["frames"] == [3, 11, 18, 26]  # TSN's centre frames of 4 segments of 30 frames
    assert sum(data["map_share"]) == pytest.approx(1.0, abs=1e-3) and len(data["map_share"]) == 4
    t = data["temporal"]
    assert len(t["occluded"]) == 4 and t["reversed"] == pytest.approx(t["original"], abs=1e-6)  # TSN
    assert data["probability"] == pytest.approx(t["original"], abs=1e-6)
    for name in ("frames.png", "temporal.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    assert count_frames(out / "overlay.mp4") == 30  # each sampled frame for its segment: the video's length


def test_explain_a_chosen_class(colour_checkpoint, green_video):
    predictor = Predictor(colour_checkpoint, device="cpu")
    e = explain(predictor, green_video, target="red", layer="layer2")
    assert (e.target, e.class_name) == (0, "red") and e.predicted[0][1] == "green"
    assert e.maps.shape == (4, 32, 32) and e.frames.shape == (4, 32, 32, 3)
    assert e.probability == pytest.approx(float(e.temporal["original"]), abs=1e-6) and e.probability < 0.5
    e = explain(predictor, green_video, layer="layer2")  # the predicted class
    assert e.class_name == "green" and e.maps.min() >= 0 and e.maps.max() == pytest.approx(1.0)


@pytest.mark.parametrize("argv,reason", [
    (["--class", "gren"], "unknown class 'gren' (did you mean 'green'?)"),
    (["--class", "7"], "class index 7 out of range: the model has 3 classes"),
    (["--layer", "layer9"], "unknown layer 'layer9': choose one of layer1, layer2, layer3, layer4"),
])
def test_bad_class_or_layer_is_one_line_exit_2(colour_checkpoint, green_video, tmp_path, argv, reason, capsys):
    assert main(["explain", str(colour_checkpoint), str(green_video), "--out", str(tmp_path), *argv,
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gdn explain: error: ") and reason in err[0], err


def test_unreadable_video_is_one_line_exit_2(colour_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    assert main(["explain", str(colour_checkpoint), str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "empty" in err[0]
