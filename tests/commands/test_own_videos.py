"""A folder of your own videos (real footage) through every command: train, test, predict,
export, features."""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import pytest
import torch

from gdn.cli import main
from gdn.config import Config
from gdn.data.datasets import build_dataset
from gdn.data.transforms import model_input
from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from gdn.engine.features import load_features

torch.set_num_threads(1)


def test_folder_dataset_trains_tests_predicts_exports_and_extracts_features(footage_folder, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(["train", "--dataset", "folder", "--data-root", str(footage_folder), "--model", "gdn_tiny",
                     "--frames", "4", "--size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                     "--device", "cpu", "--out", str(run)]) == 0
    # no weights: the scratch recipe, said in the log and kept in the run's config
    assert "recipe: scratch (the model starts from random weights): lr 0.05, base_batch_size 16" in caplog.text
    cfg = Config.from_yaml(run / "config.yaml")
    assert (cfg.train.recipe, cfg.train.schedule, cfg.train.weight_decay, cfg.model.dropout) == ("scratch", "cosine", 1e-4, 0.2)
    # the split: 1 of each class's 3 clips held out, written to the run folder, the config pointing at it
    assert (cfg.data.train_list, cfg.data.val_list) == (str(run / "split-train.txt"), str(run / "split-val.txt"))
    val_ids = (run / "split-val.txt").read_text().splitlines()
    assert Counter(i.split("/")[0] for i in val_ids) == {c: 1 for c in sorted(p.name for p in footage_folder.iterdir())}
    assert len((run / "split-train.txt").read_text().splitlines()) == 12

    # test: the held-out clips, named in the checkpoint's config
    capsys.readouterr()
    assert main(["test", str(run / "last.pt"), "--json", "--workers", "0", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["num_videos"] == 6

    # predict: a video and a frame folder of the dataset
    video, frames = footage_folder / val_ids[0], next(p for p in footage_folder.glob("*/*") if p.is_dir())
    assert main(["predict", str(run / "last.pt"), str(video), str(frames), "--json", "--device", "cpu"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in preds] == [str(video), str(frames)]
    assert {p["predictions"][0]["class"] for p in preds} <= set(load_checkpoint(run / "last.pt")["classes"])

    pytest.importorskip("onnxruntime")
    assert main(["export", str(run / "last.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "onnxruntime = PyTorch" in capsys.readouterr().out

    # features of the validation split: the model's pooled pre-classifier output, video by video
    assert main(["features", str(run / "last.pt"), "--dataset", "--out", str(tmp_path / "val.npz"),
                 "--device", "cpu"]) == 0
    feats, meta = load_features(tmp_path / "val.npz")
    assert feats.video_ids == val_ids and meta["model"] == "gdn_tiny"
    model, cfg, classes = build_model_from_checkpoint(load_checkpoint(run / "last.pt"))
    ds = build_dataset("folder", footage_folder, "validation", frames=4, size=32, list_file=run / "split-val.txt")
    assert feats.labels == ds.labels
    with torch.no_grad():
        for i in range(len(ds)):
            x = model_input(ds[i]["clip"][None], "cpu")
            pooled = model.forward_features(x).mean(1)[0]  # (D,): the frames' features, averaged
            assert np.allclose(feats.features[i], pooled.numpy(), atol=1e-5)
            # ...and the classifier of that embedding is the model's output (TSN consensus is linear)
            assert torch.allclose(model.fc(torch.from_numpy(feats.features[i])), model(x)[0], atol=1e-4)
