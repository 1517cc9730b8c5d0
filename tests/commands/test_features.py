"""`gdn features`: per-window embeddings, their times, the file formats and the input errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from media import FOOTAGE

from gdn.cli import main
from gdn.data.decode import read_frames
from gdn.data.sampling import SegmentSampler
from gdn.data.transforms import EvalTransform, model_input
from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from gdn.engine.features import load_features

torch.set_num_threads(1)


@pytest.mark.parametrize("window,stride,rate", [("16f", "8f", 25.0), ("0.4s", "0.2s", 25.0)])
def test_windows_of_a_long_video_are_the_model_pooled_output_of_each_window(footage_checkpoint, tmp_path, capsys,
                                                                            window, stride, rate):
    video = FOOTAGE / "bikes.mp4"  # 48 frames at 25 fps
    out = tmp_path / "w.npz"
    assert main(["features", str(footage_checkpoint), str(video), "--window", window, "--stride", stride,
                 "--out", str(out), "--device", "cpu"]) == 0
    feats, meta = load_features(out)
    # 0.4 s and 0.2 s at 25 fps are 10 and 5 frames; windows as `gdn predict --window` makes them,
    # the last partial one ending at the last frame
    length, starts = (16, [0, 8, 16, 24, 32]) if window.endswith("f") else (10, [0, 5, 10, 15, 20, 25, 30, 35, 38])
    assert feats.start_frame == starts and feats.end_frame == [s + length for s in starts]
    assert np.allclose(feats.start_s, np.array(starts) / rate) and np.allclose(feats.end_s, (np.array(starts) + length) / rate)
    assert feats.video_ids == [str(video)] * len(starts) and feats.labels == [-1] * len(starts)
    assert (meta["window"], meta["stride"]) == (window, stride)

    model, cfg, _ = build_model_from_checkpoint(load_checkpoint(footage_checkpoint))
    transform = EvalTransform(cfg.data.size, cfg.data.short_side)
    with torch.no_grad():
        for row, start in enumerate(starts):
            indices = SegmentSampler(cfg.data.frames, train=False)(length)[0] + start  # the segment centres
            clip = transform(read_frames(video, indices.tolist()))  # (1, C, T, S, S)
            pooled = model.forward_features(model_input(clip, "cpu")).mean(1)[0]
            assert np.allclose(feats.features[row], pooled.numpy(), atol=1e-5), row


def test_a_frame_folder_uses_fps_and_bad_inputs_are_reported(footage_checkpoint, footage_folder, tmp_path, capsys):
    folder = next(p for p in footage_folder.glob("*/*") if p.is_dir())  # 8 JPEG frames
    missing = tmp_path / "missing.mp4"
    code = main(["features", str(footage_checkpoint), str(missing), str(folder), "--window", "0.5s", "--stride",
                 "0.25s", "--fps", "8", "--out", str(tmp_path / "f.npz"), "--device", "cpu"])
    assert code == 2  # the missing file is reported, the folder still embedded
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gdn features: {missing}: file not found"]
    feats, _ = load_features(tmp_path / "f.npz")
    assert feats.start_frame == [0, 2, 4] and feats.end_frame == [4, 6, 8]  # 4-frame windows every 2 frames at 8 fps
    assert feats.start_s == [0.0, 0.25, 0.5]


@pytest.mark.parametrize("args,message", [
    ([], "give either video files / frame folders or --dataset"),
    (["x.mp4", "--dataset"], "give either video files / frame folders or --dataset"),
    (["x.mp4", "--stride", "2s"], "--stride needs --window"),
    (["x.mp4", "--window", "2m"], "'2m' is not a length: give seconds ('4', '2.5s') or a whole number of frames"),
    (["x.mp4", "--window", "1.5f"], "'1.5f' is not a length"),
])
def test_argument_errors_are_one_line_and_exit_2(footage_checkpoint, tmp_path, capsys, args, message):
    assert main(["features", str(footage_checkpoint), *args, "--out", str(tmp_path / "f.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_parquet_needs_pyarrow_or_round_trips(footage_checkpoint, tmp_path, capsys):
    video = FOOTAGE / "carphone.mp4"
    code = main(["features", str(footage_checkpoint), str(video), "--out", str(tmp_path / "f.parquet"),
                 "--device", "cpu"])
    if importlib.util.find_spec("pyarrow") is None:
        assert code == 2 and "writing .parquet needs pyarrow" in capsys.readouterr().err
        return
    assert code == 0
    assert main(["features", str(footage_checkpoint), str(video), "--out", str(tmp_path / "f.npz"), "--device", "cpu"]) == 0
    a, b = load_features(tmp_path / "f.parquet")[0], load_features(tmp_path / "f.npz")[0]
    assert a.video_ids == b.video_ids and np.array_equal(a.features, b.features)
