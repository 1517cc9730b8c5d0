"""Exact metrics of `gdn.engine.evaluate` on models whose outputs are known in advance."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from gdn.engine.evaluate import compute_metrics, evaluate, view_average

torch.set_num_threads(1)


class TableModel(nn.Module):
    """Returns row `int(clip[b, 0, 0, 0, 0])` of a fixed logits table: outputs known per clip."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)
        self.dummy = nn.Linear(1, 1)  # so .eval()/.train() have something to act on

    def forward(self, x):  # (B, C, T, H, W) -> (B, K)
        return self.table[x[:, 0, 0, 0, 0].long()]


class KeyedClips(Dataset):
    """Item i: a clip filled with key i (or i*V + v for view v of a multi-view clip)."""

    def __init__(self, labels: list[int], views: int = 0):
        self.labels, self.views = labels, views

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.views:
            keys = torch.arange(self.views, dtype=torch.float32) + i * self.views
            clip = keys.view(-1, 1, 1, 1, 1).expand(-1, 1, 2, 2, 2).clone()  # (V, C, T, H, W)
        else:
            clip = torch.full((1, 2, 2, 2), float(i))
        return {"clip": clip, "label": self.labels[i], "index": i, "num_skipped": 0}


def test_metrics_exact_single_view():
    # 6 classes, 5 videos. Argmax per video: 0, 1, 2, 5, 4; labels: 0, 1, 3, 3, -1 (unknown).
    logits = torch.tensor([
        [9.0, 1, 0, 0, 0, 0],   # label 0, top1 hit
        [0.0, 9, 8, 0, 0, 0],   # label 1, top1 hit
        [0.0, 1, 9, 8, 0, 0],   # label 3, top1 miss (2), top5 hit (rank 2)
        [1.0, 6, 7, 0, 8, 9],   # label 3, top1 miss (5), top5 miss: 3 ranks 6th (lowest)
        [0.0, 0, 0, 0, 9, 0],   # unlabelled: scored, not counted
    ])
    model = TableModel(logits)
    loader = DataLoader(KeyedClips([0, 1, 3, 3, -1]), batch_size=2)
    res = evaluate(model, loader, "cpu")
    assert res.num_videos == 5 and res.num_labelled == 4
    assert res.top1 == 50.0                       # 2 of 4
    assert res.top5 == 75.0                       # 3 of 4
    # classes present: 0 (1/1), 1 (1/1), 3 (0/2) -> mean of 100, 100, 0
    assert res.mean_class_accuracy == pytest.approx(200.0 / 3)
    assert res.per_class[0] == 100.0 and res.per_class[1] == 100.0 and res.per_class[3] == 0.0
    assert math.isnan(res.per_class[2]) and math.isnan(res.per_class[4])
    expected = np.zeros((6, 6), dtype=np.int64)
    expected[0, 0] = expected[1, 1] = expected[3, 2] = expected[3, 5] = 1
    np.testing.assert_array_equal(res.confusion, expected)
    np.testing.assert_array_equal(res.indices, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(res.labels, [0, 1, 3, 3, -1])
    np.testing.assert_allclose(res.scores, torch.softmax(logits, 1).numpy(), rtol=1e-6)
    assert res.metrics() == {"top1": 50.0, "top5": 75.0, "mean_class_accuracy": pytest.approx(200.0 / 3),
                             "num_videos": 5}
    assert model.training  # previous mode restored


def test_multi_view_averages_softmax_not_logits():
    # 2 videos x 2 views, 2 classes. Video 0: view logits favour class 0 strongly once and class 1
    # mildly once. Averaging logits would pick class 0 either way; check the softmax average.
    l00, l01 = torch.tensor([4.0, 0.0]), torch.tensor([0.0, 1.0])
    l10, l11 = torch.tensor([0.0, 3.0]), torch.tensor([0.0, 2.0])
    model = TableModel(torch.stack([l00, l01, l10, l11]))
    loader = DataLoader(KeyedClips([0, 0], views=2), batch_size=2)
    res = evaluate(model, loader, "cpu", num_classes=2)
    want0 = (torch.softmax(l00, 0) + torch.softmax(l01, 0)) / 2
    want1 = (torch.softmax(l10, 0) + torch.softmax(l11, 0)) / 2
    np.testing.assert_allclose(res.scores, torch.stack([want0, want1]).numpy(), rtol=1e-6)
    assert res.top1 == 50.0 and res.top5 == 100.0 and res.num_videos == 2
    # per class: class 0 has 2 videos, 1 right -> 50; class 1 has none -> mean class = 50
    assert res.mean_class_accuracy == 50.0


def test_view_averaging_per_protocol():
    """The TSM repository averages logits (so does MMAction2's TSN head, through its features);
    gdn and MMAction2's TSM/I3D heads average softmax. One confident view against two mild
    ones: the logit average picks class 0, the softmax average class 1."""
    assert view_average("gdn", "tsn_r50") == view_average("gdn", "gdn_r50") == "prob"
    assert view_average("tsm", "tsm_r50") == view_average("tsm", "tsn_r50") == "logits"
    assert view_average("mmaction", "tsn_r50") == "logits"
    assert view_average("mmaction", "tsm_r50") == view_average("mmaction", "i3d_r50") == "prob"
    table = torch.tensor([[10.0, 0.0], [0.0, 3.0], [0.0, 3.0]])  # 1 video x 3 views
    loader = DataLoader(KeyedClips([0], views=3), batch_size=1)
    by_logits = evaluate(TableModel(table), loader, "cpu", average="logits")
    by_prob = evaluate(TableModel(table), loader, "cpu", average="prob")
    np.testing.assert_allclose(by_logits.scores[0], torch.softmax(table.mean(0), 0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(by_prob.scores[0], torch.softmax(table, 1).mean(0).numpy(), rtol=1e-6)
    assert (by_logits.top1, by_prob.top1) == (100.0, 0.0)
    with pytest.raises(ValueError, match="average must be one of"):
        evaluate(TableModel(table), loader, "cpu", average="features")


def test_all_unlabelled_gives_scores_and_nan_metrics():
    model = TableModel(torch.eye(3))
    res = evaluate(model, DataLoader(KeyedClips([-1, -1, -1]), batch_size=3), "cpu")
    assert res.num_videos == 3 and res.num_labelled == 0
    assert math.isnan(res.top1) and math.isnan(res.top5) and math.isnan(res.mean_class_accuracy)
    np.testing.assert_array_equal(res.scores.argmax(1), [0, 1, 2])
    assert res.confusion.sum() == 0


def test_compute_metrics_ties_break_to_lower_class_and_checks_shapes():
    m = compute_metrics(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 1]))
    assert m["top1"] == 50.0 and m["confusion"].tolist() == [[1, 0], [1, 0]]
    with pytest.raises(ValueError, match="out of range"):
        compute_metrics(np.ones((1, 2)), np.array([2]))
    with pytest.raises(ValueError, match="expected 3"):
        compute_metrics(np.ones((1, 2)), np.array([0]), num_classes=3)


def test_num_classes_mismatch_is_an_error():
    with pytest.raises(ValueError, match="outputs 3 classes but num_classes=4"):
        evaluate(TableModel(torch.eye(3)), DataLoader(KeyedClips([0]), batch_size=1), "cpu", num_classes=4)


# --- distributed: 2 gloo processes over 7 videos give exactly the single-process result ----------

LABELS = [0, 2, 1, 1, -1, 3, 2]          # 7 videos: not a multiple of 2
TABLE = torch.arange(7 * 4 * 2, dtype=torch.float32).view(14, 4).sin() * 3  # 7 videos x 2 views


def _worker(rank: int, world: int, init_file: str, out_dir: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ds = KeyedClips(LABELS, views=2)
        # DistributedSampler pads 7 -> 8 with a duplicate of video 0: it must not count twice.
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        res = evaluate(TableModel(TABLE), loader, "cpu", distributed=True)
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), scores=res.scores, labels=res.labels,
                 indices=res.indices, confusion=res.confusion,
                 m=np.array([res.top1, res.top5, res.mean_class_accuracy, res.num_videos]))
    finally:
        dist.destroy_process_group()


def test_distributed_equals_single_process(tmp_path):
    single = evaluate(TableModel(TABLE), DataLoader(KeyedClips(LABELS, views=2), batch_size=3), "cpu")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_array_equal(got["indices"], np.arange(7))
        np.testing.assert_array_equal(got["labels"], LABELS)
        np.testing.assert_array_equal(got["scores"], single.scores)
        np.testing.assert_array_equal(got["confusion"], single.confusion)
        assert got["confusion"].sum() == 6                       # 6 labelled videos, each once
        assert got["m"].tolist() == [single.top1, single.top5, single.mean_class_accuracy, 7]


# --- `gdn test` on a tiny synthetic dataset --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tsn_tiny checkpoint (untrained) whose config points at a tiny synthetic SSv1 dataset."""
    from gdn.config import Config
    from gdn.data.synthetic import generate
    from gdn.engine.checkpoint import save_checkpoint
    from gdn.models import create_model

    root = tmp_path_factory.mktemp("tinyrun")
    summary = generate(root / "data", format="ssv1", classes=1, train_per_class=2, val_per_class=3,
                       test_per_class=0, height=32, width=40, min_frames=8, max_frames=10, workers=1)
    cfg = Config()
    cfg.model.name, cfg.model.dropout = "tsn_tiny", 0.0
    cfg.data.dataset, cfg.data.root, cfg.data.label_order = "ssv1", str(root / "data"), "csv"
    cfg.data.frames, cfg.data.size, cfg.data.workers = 4, 32, 0
    torch.manual_seed(0)
    model = create_model("tsn_tiny", num_classes=len(summary.classes), dropout=0.0)
    ckpt = root / "run" / "best.pt"
    from gdn.engine.checkpoint import save_checkpoint  # noqa: F811

    save_checkpoint(ckpt, {"model": model.state_dict(), "config": cfg.to_dict(), "classes": summary.classes,
                           "epoch": 1, "step": 0, "global_step": 1, "best_top1": None, "metrics": {}})
    return ckpt, cfg, summary


def test_gdn_test_json_files_and_scores(tiny_run, tmp_path, capsys):
    import json

    from gdn.cli import main
    from gdn.data.datasets import build_dataset
    from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
    from gdn.engine.evaluate import load_scores

    ckpt, cfg, summary = tiny_run
    scores = tmp_path / "s.npz"
    assert main(["test", str(ckpt), "--json", "--device", "cpu", "--scores", str(scores),
                 "--out", str(tmp_path), "--batch-size", "4"]) == 0
    got = json.loads(capsys.readouterr().out)
    # the same numbers as evaluate() on the paper protocol (centre frames, centre crop, 1 view)
    model, _, classes = build_model_from_checkpoint(load_checkpoint(ckpt))
    ds = build_dataset("ssv1", cfg.data.root, "validation", frames=4, size=32, label_order="csv")
    want = evaluate(model, DataLoader(ds, batch_size=2), "cpu")
    assert got == {"top1": want.top1, "top5": want.top5, "mean_class_accuracy": want.mean_class_accuracy,
                   "num_videos": 6, "num_labelled": 6, "protocol": "gdn", "views": 1}
    saved = load_scores(scores)
    assert saved.video_ids == ds.video_ids and saved.classes == summary.classes
    np.testing.assert_allclose(saved.scores, want.scores, rtol=1e-5)
    assert (tmp_path / "best-validation-confusion.png").stat().st_size > 0
    rows = (tmp_path / "best-validation-per-class.csv").read_text().splitlines()
    assert rows[0] == "index,class,videos,correct,accuracy" and len(rows) == 1 + len(classes)
    assert sum(int(r.split(",")[-3]) for r in rows[1:]) == 6

    # multi-view: 2 clips x 3 crops, files get their own names
    assert main(["test", str(ckpt), "--json", "--device", "cpu", "--clips", "2", "--crops", "3",
                 "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["num_videos"] == 6
    assert (tmp_path / "best-validation-2x3-per-class.json").is_file()


def test_gdn_test_bad_files_exit_2_naming_the_file(tiny_run, tmp_path, capsys):
    import shutil

    from gdn.cli import main

    ckpt, cfg, _ = tiny_run
    # a corrupt frame in a copy of the dataset: evaluation must stop and name it, no traceback
    data = tmp_path / "data"
    shutil.copytree(cfg.data.root, data)
    vid = (data / "something-something-v1-validation.csv").read_text().split(";")[0]
    bad = data / "20bn-something-something-v1" / vid / "00001.jpg"  # index 0: always sampled
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["test", str(ckpt), "--device", "cpu", "--data-root", str(data), "--workers", "1",
                 "--frames", "8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    assert main(["test", str(garbage), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(garbage) in err[0]


def test_gdn_test_compile_gives_the_eager_results(tiny_run, tmp_path, capsys):
    """`gdn test --compile` (inductor with frozen weights) reports the eager metrics and scores."""
    import json

    from gdn.cli import main
    from gdn.engine.evaluate import load_scores

    ckpt, _, _ = tiny_run
    runs = []
    for flags in ([], ["--compile"]):
        scores = tmp_path / f"scores{len(flags)}.npz"
        assert main(["test", str(ckpt), "--json", "--device", "cpu", "--scores", str(scores),
                     "--out", str(tmp_path), *flags]) == 0
        runs.append((json.loads(capsys.readouterr().out), load_scores(scores).scores))
    (eager, eager_scores), (compiled, compiled_scores) = runs
    assert compiled == eager and eager["num_videos"] == 6
    np.testing.assert_allclose(compiled_scores, eager_scores, rtol=1e-4, atol=1e-6)


def test_gdn_test_tsm_protocol_views_by_hand(tiny_run, tmp_path, capsys):
    """`gdn test --protocol tsm --clips 2 --crops 3` on the tiny dataset equals TSM's test script
    computed here by hand: twice_sample indices, Pillow resize to 36 x int(36 * 40 / 32) = 45,
    GroupFullResSample's three 32-pixel crops, six views whose logits are averaged."""
    import json

    from PIL import Image

    from gdn.cli import main
    from gdn.data.transforms import normalize
    from gdn.engine.checkpoint import load_checkpoint, save_checkpoint
    from gdn.engine.evaluate import load_scores
    from gdn.models import create_model

    ckpt, cfg, summary = tiny_run
    state = load_checkpoint(ckpt)
    state["model"]["fc.weight"] = state["model"]["fc.weight"] * 200  # confident views: averaging matters
    sharp = tmp_path / "sharp.pt"
    save_checkpoint(sharp, state)
    scores = tmp_path / "tsm.npz"
    assert main(["test", str(sharp), "--protocol", "tsm", "--clips", "2", "--crops", "3", "--json",
                 "--device", "cpu", "--scores", str(scores), "--out", str(tmp_path)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["protocol"], got["views"], got["num_videos"]) == ("tsm", 6, 6)
    assert (tmp_path / "sharp-validation-tsm-2x3-per-class.json").is_file()

    model = create_model("tsn_tiny", num_classes=len(summary.classes), dropout=0.0)
    model.load_state_dict(state["model"])
    model.eval()
    root = Path(cfg.data.root)
    lines = (root / "something-something-v1-validation.csv").read_text().splitlines()
    saved = load_scores(scores)
    by_logits, by_prob, labels = [], [], []
    for line in lines:
        vid, name = line.split(";", 1)
        files = sorted((root / "20bn-something-something-v1" / vid).glob("*.jpg"))
        tick = len(files) / 4.0
        clips = [[int(tick / 2.0 + tick * x) for x in range(4)], [int(tick * x) for x in range(4)]]
        images = [Image.open(files[i]).convert("RGB").resize((45, 36), Image.BILINEAR) for c in clips for i in c]
        views = []
        for x, y in ((0, 2), (12, 2), (6, 2)):  # w_step = (45 - 32) // 4 = 3, h_step = (36 - 32) // 4 = 1
            crops = np.stack([np.asarray(im.crop((x, y, x + 32, y + 32))) for im in images])  # (2 * 4, 32, 32, 3)
            views += [crops[:4], crops[4:]]
        x = normalize(torch.from_numpy(np.stack(views)).permute(0, 4, 1, 2, 3))  # (6, C, T, 32, 32)
        with torch.no_grad():
            logits = model(x)
        by_logits.append(torch.softmax(logits.mean(0), 0).numpy())
        by_prob.append(torch.softmax(logits, 1).mean(0).numpy())
        labels.append(summary.classes.index(name))
    assert saved.video_ids == [line.split(";")[0] for line in lines]
    np.testing.assert_allclose(saved.scores, np.stack(by_logits), rtol=1e-5, atol=1e-6)
    assert np.abs(np.stack(by_prob) - saved.scores).max() > 1e-2  # the other averaging is far off
    top1 = 100.0 * float(np.mean(np.stack(by_logits).argmax(1) == np.array(labels)))
    assert got["top1"] == pytest.approx(top1)

    assert main(["test", str(sharp), "--protocol", "tsm", "--clips", "3", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "twice_sample" in err[0]


# ----------------------------------------------------------------------------- confusion matrix
SSV2_NAMES = [  # real Something-Something V2 classes, in an order that keeps pairs apart
    "Moving something away from something", "Opening something", "Pushing something from left to right",
    "Putting something into something", "Folding something", "Moving something closer to something",
    "Holding something", "Closing something", "Taking something out of something",
    "Pushing something from right to left", "Unfolding something", "Turning the camera left while filming something",
    "Turning the camera right while filming something",
]


def test_time_reverse_pairs_from_names_and_the_synthetic_declaration():
    from gdn.data.synthetic import ALL_CLASSES, reverse_pairs
    from gdn.engine.evaluate import time_reverse_pairs

    pairs = time_reverse_pairs(SSV2_NAMES)
    named = {(SSV2_NAMES[a], SSV2_NAMES[b]) for a, b in pairs.items() if a < b}
    assert named == {
        ("Moving something away from something", "Moving something closer to something"),
        ("Opening something", "Closing something"),
        ("Pushing something from left to right", "Pushing something from right to left"),
        ("Putting something into something", "Taking something out of something"),
        ("Folding something", "Unfolding something"),
        ("Turning the camera left while filming something", "Turning the camera right while filming something"),
    }  # "Holding something" has no reverse
    # the synthetic dataset's declared pairs are found whatever the order of its classes
    shuffled = ALL_CLASSES[1::2] + ALL_CLASSES[::2]
    assert time_reverse_pairs(shuffled) == reverse_pairs(shuffled) and len(reverse_pairs(shuffled)) == 10
    # a dataset's own declaration comes first
    assert time_reverse_pairs(["a", "b", "c"], declared=[("c", "a")]) == {2: 0, 0: 2}


def test_confusion_figure_puts_each_class_next_to_its_reverse_and_writes_the_values():
    from gdn.engine.evaluate import confusion_figure, pair_order, time_reverse_pairs

    classes = SSV2_NAMES
    k = len(classes)
    pairs = time_reverse_pairs(classes)
    order = pair_order(k, pairs)
    assert sorted(order) == list(range(k))
    position = {c: i for i, c in enumerate(order)}
    assert len(pairs) == 12 and all(abs(position[a] - position[b]) == 1 for a, b in pairs.items())
    # a "TSN" that confuses every class with its reverse: 3 of 4 videos go to the partner
    confusion = np.zeros((k, k), np.int64)
    for a in range(k):
        confusion[a, pairs.get(a, a)] += 3
        confusion[a, a] += 1
    fig = confusion_figure(confusion, classes, title="tsn")
    ax = fig.axes[0]
    rows = [label.get_text() for label in ax.get_yticklabels()]
    assert [r.replace("\n", " ") for r in rows] == [f"{classes[i]} (4)" for i in order]  # full names
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert len(cells) == k * k
    for r, a in enumerate(order):
        for c, b in enumerate(order):
            want = 100 if a == b and a not in pairs else 75 if pairs.get(a) == b else 25 if a == b else 0
            assert cells[r, c] == str(want), (classes[a], classes[b])
    assert len(ax.patches) == len(pairs) // 2  # one outlined block per pair
    import matplotlib.pyplot as plt

    plt.close(fig)
