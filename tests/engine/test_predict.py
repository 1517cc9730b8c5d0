"""`gdn predict` on a tiny checkpoint and tiny videos written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from gdn.cli import main
from gdn.config import Config
from gdn.data.decode import count_frames
from gdn.data.transforms import normalize
from gdn.engine.checkpoint import save_checkpoint
from gdn.engine.predict import Predictor
from gdn.models import create_model

torch.set_num_threads(1)
CLASSES = ["Pushing something from left to right", "Pushing something from right to left", "Waving"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    cfg = Config()
    cfg.model.name, cfg.model.dropout = "tsn_tiny", 0.0
    cfg.data.frames, cfg.data.size = 4, 32
    torch.manual_seed(0)
    model = create_model("tsn_tiny", num_classes=len(CLASSES), dropout=0.0)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "classes": CLASSES,
                           "epoch": 1, "step": 0, "global_step": 1, "best_top1": None, "metrics": {}})
    return path


def write_video(path: Path, frames: int = 10, h: int = 48, w: int = 64) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())
    return path


def write_frames(folder: Path, frames: int = 6) -> Path:
    folder.mkdir()
    for i in range(frames):
        Image.fromarray(np.full((40, 50, 3), 20 * i, np.uint8)).save(folder / f"{i + 1:05d}.jpg")
    return folder


def test_topk_table_and_json(ckpt, tmp_path, capsys):
    video, folder = write_video(tmp_path / "clip.mp4"), write_frames(tmp_path / "frames")
    assert main(["predict", str(ckpt), str(video), str(folder), "--topk", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and lines[0] == str(video) and lines[3] == str(folder)
    assert [line.split()[0] for line in lines[1:3]] == ["1", "2"] and lines[1].endswith("%")

    assert main(["predict", str(ckpt), str(video), str(folder), "--topk", "3", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in out] == [str(video), str(folder)]
    for r in out:
        preds = r["predictions"]
        assert len(preds) == 3 and sorted(p["class"] for p in preds) == sorted(CLASSES)
        assert sum(p["probability"] for p in preds) == pytest.approx(1.0, abs=1e-5)
        assert [p["probability"] for p in preds] == sorted((p["probability"] for p in preds), reverse=True)
        assert all(CLASSES[p["index"]] == p["class"] for p in preds)


def test_same_scores_as_the_eval_path(ckpt, tmp_path):
    """predict = the checkpoint's model on the dataset's eval clip, softmax averaged over clips."""
    video = write_video(tmp_path / "clip.mp4")
    p = Predictor(ckpt, device="cpu", clips=2)
    ds = p.dataset([video])
    clip = ds[0]["clip"]
    assert clip.shape == (2, 3, 4, 32, 32)  # 2 views, C, T=4, 32 x 32 from the checkpoint's config
    with torch.no_grad():
        want = torch.softmax(p.model(normalize(clip)), 1).mean(0)
    got = p.predict_item(ds, 0, topk=3)
    np.testing.assert_allclose(got.scores, want.numpy(), rtol=1e-5, atol=1e-7)


def test_unreadable_inputs_one_line_each_exit_2(ckpt, tmp_path):
    good = write_video(tmp_path / "good.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    noise = tmp_path / "noise.webm"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    nofr = tmp_path / "no_frames"
    nofr.mkdir()
    (nofr / "readme.txt").write_text("x")
    missing = tmp_path / "missing.mp4"
    bad = [missing, empty, text, noise, nofr]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "gdn", "predict", str(ckpt), *map(str, bad), str(good),
                           "--json", "--device", "cpu"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gdn predict:")]
    assert len(errors) == len(bad)
    for path, line in zip(bad, errors):
        assert str(path) in line
    assert "not found" in errors[0] and "empty" in errors[1] and "no JPEG frames" in errors[4]
    # the readable input was still processed
    assert [r["path"] for r in json.loads(proc.stdout)] == [str(good)]


def test_overlay_is_decodable_with_same_frame_count(ckpt, tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", frames=9)
    out = tmp_path / "overlay.mp4"
    assert main(["predict", str(ckpt), str(video), "--overlay", str(out), "--device", "cpu"]) == 0
    assert count_frames(out) == 9
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert min(frame.shape[:2]) >= 240  # upscaled so the text is legible
    # the text band is drawn top-left: dark with white text, unlike the random-noise input
    band = frame[: frame.shape[0] // 10, : frame.shape[1] // 4]
    assert band.max() > 200 and np.median(band) < 110

    folder = write_frames(tmp_path / "frames", frames=5)
    assert main(["predict", str(ckpt), str(video), str(folder), "--overlay", str(tmp_path / "o.mp4"),
                 "--device", "cpu"]) == 0
    assert count_frames(tmp_path / "o-clip.mp4") == 9 and count_frames(tmp_path / "o-frames.mp4") == 5


def test_bad_checkpoint_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    video = write_video(tmp_path / "clip.mp4")
    assert main(["predict", str(bad), str(video)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


def test_compiled_predictor_gives_the_eager_scores(ckpt, tmp_path):
    """--compile (inductor with frozen weights) changes the speed, not the scores."""
    video = write_video(tmp_path / "clip.mp4")
    eager, compiled = Predictor(ckpt, device="cpu", clips=2), Predictor(ckpt, device="cpu", clips=2, compile=True)
    ds = eager.dataset([video])
    want = eager.predict_item(ds, 0, topk=3)
    got = compiled.predict_item(ds, 0, topk=3)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-6)
    assert [i for i, _, _ in got.topk] == [i for i, _, _ in want.topk]
