"""Fine-tuning and the training options for your own videos: the recipe in the log, frozen
stages, class balance, Mixup/CutMix/RandAugment with exact resume."""

from __future__ import annotations

import json
import logging
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gdn.engine.train as T
from gdn.cli import main
from gdn.config import ConfigError
from gdn.engine.checkpoint import load_checkpoint
from gdn.engine.train import class_balance, classification_loss, train

torch.set_num_threads(1)

FROZEN = ("conv1.", "bn1.", "layer1.", "layer2.")


def test_fine_tuning_with_frozen_stages_keeps_them_and_their_statistics_bit_identical(
        footage_folder, footage_checkpoint, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert main(["train", "--dataset", "folder", "--data-root", str(footage_folder), "--model", "gdn_tiny",
                     "--frames", "4", "--size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                     "--device", "cpu", "--init-from", str(footage_checkpoint), "--reset-head",
                     "--freeze-stages", "2", "--out", str(tmp_path / "tuned")]) == 0
    # weights given: the fine-tuning recipe, the new head at 5x the backbone's lr
    assert (f"recipe: finetune (the model starts from init_from {footage_checkpoint}): lr 0.02, base_batch_size 48, "
            "batch_size 4") in caplog.text
    assert "fc_lr_mult 5.0; set otherwise: train.batch_size=4" in caplog.text
    before = load_checkpoint(footage_checkpoint)["model"]
    after = load_checkpoint(tmp_path / "tuned" / "last.pt")["model"]
    frozen = [k for k in before if k.startswith(FROZEN)]
    assert any("running_mean" in k for k in frozen) and any(k.startswith("layer2.") for k in frozen)
    for k in frozen:  # parameters, BatchNorm statistics and their counters
        assert torch.equal(before[k], after[k]), k
    for prefix in ("layer3.", "layer4."):  # the rest trained: weights and statistics moved
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "weight" in k)
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "running_mean" in k)
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    # only trainable parameters are in the optimizer
    groups = load_checkpoint(tmp_path / "tuned" / "last.pt")["optimizer"]["param_groups"]
    trainable = sum(1 for k in after if not k.startswith(FROZEN) and "running" not in k and "num_batches" not in k)
    assert sum(len(g["params"]) for g in groups) == trainable


def test_freezing_more_stages_than_the_model_has_is_refused(footage_folder, footage_config, tmp_path):
    with pytest.raises(ConfigError, match="train.freeze_stages=5: the model has 4 stages"):
        train(footage_config(footage_folder, tmp_path / "run", freeze_stages=5))


def test_mixing_augmenting_and_balanced_sampling_resume_exactly(footage_folder, footage_config, tmp_path, monkeypatch):
    options = dict(epochs=2, mixup=0.8, cutmix=1.0, balance="sampler")
    full = footage_config(footage_folder, tmp_path / "full", **options).apply_overrides(["data.randaugment=2"])
    train(full)

    # the same run, stopped by SIGTERM in the 2nd batch of epoch 2 (3 batches an epoch), then resumed
    real = T.mix_batch
    calls = [0]

    def mix_then_stop(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    cut = footage_config(footage_folder, tmp_path / "cut", **options).apply_overrides(["data.randaugment=2"])
    cut.save_yaml(tmp_path / "cut.yaml")
    monkeypatch.setattr(T, "mix_batch", mix_then_stop)
    assert main(["train", "--config", str(tmp_path / "cut.yaml")]) == 128 + signal.SIGTERM
    assert (load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"], load_checkpoint(tmp_path / "cut" / "last.pt")["step"]) == (1, 2)
    monkeypatch.undo()
    assert main(["train", "--config", str(tmp_path / "cut.yaml"), "--resume", "auto"]) == 0

    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(tmp_path / "full") == losses(tmp_path / "cut")


def test_class_weighted_loss_and_the_balance_log(caplog):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 2])
    with caplog.at_level(logging.INFO):
        weights = class_balance(labels.tolist(), ["a", "b", "c"], "loss")
    assert "class balance: class-weighted loss (training videos per class: 1 for 'b' to 4 for 'a')" in caplog.text
    assert np.allclose(weights, [6 / (3 * 4), 6 / 3, 6 / 3])  # N / (K n_c)
    w = torch.tensor(weights, dtype=torch.float32)
    one_hot = F.one_hot(labels, 3).float()
    assert torch.allclose(classification_loss(logits, one_hot, w), F.cross_entropy(logits, labels, weight=w))
    assert torch.allclose(classification_loss(logits, labels, w), F.cross_entropy(logits, labels, weight=w))
    # a mixed target is the mix of the two losses
    lam, other = 0.3, labels.flip(0)
    mixed = lam * one_hot + (1 - lam) * F.one_hot(other, 3).float()
    expected = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, other)
    assert torch.allclose(classification_loss(logits, mixed), expected)
    with caplog.at_level(logging.INFO):
        class_balance([0, 0, 0, 1], ["a", "b"], "none")
    assert "--balance sampler or --balance loss evens them out" in caplog.text
