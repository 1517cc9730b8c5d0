import logging

import numpy as np
import pytest
import torch
from PIL import Image

from media import FRAMES_DIR, VIDEOS_DIR, make_grey_ssv1, make_grey_ssv2, which

from gdn.cli import main
from gdn.data.annotations import AnnotationError
from gdn.data.datasets import TooManyBadSamples, build_dataset, check_bad_fraction
from gdn.data.decode import DecodeError
from gdn.data.loader import EvalSampler, TrainSampler, build_loader, set_epoch
from gdn.data.sampling import uniform_indices
from gdn.engine.evaluate import evaluate

torch.set_num_threads(1)

CLASSES = ["Holding something", "Pushing something from left to right",
           "Pushing something from right to left"]


def make_ssv1(root, n_videos=7, n_frames=(6, 9, 3, 12, 1, 10, 8), size=(24, 40)):
    """A tiny SSv1 layout; video i has n_frames[i] frames whose pixels all equal
    10 * (frame number) + i, so decoded values tell which frame of which video came back."""
    frames_dir = root / "20bn-something-something-v1"
    lines = []
    for i in range(n_videos):
        d = frames_dir / f"{100 + i}"
        d.mkdir(parents=True)
        for t in range(n_frames[i]):
            Image.new("RGB", size[::-1], (10 * t + i,) * 3).save(d / f"{t + 1:05d}.jpg", quality=100)
        lines.append(f"{100 + i};{CLASSES[i % 3]}")
    (root / "something-something-v1-labels.csv").write_text("\n".join(CLASSES) + "\n")
    (root / "something-something-v1-train.csv").write_text("\n".join(lines) + "\n")
    (root / "something-something-v1-validation.csv").write_text("\n".join(lines) + "\n")
    (root / "something-something-v1-test.csv").write_text("\n".join(str(100 + i) for i in range(n_videos)))
    return root


def _pixels(clip):
    """Per-frame value of channel 0 (frames are flat): the pipelines return uint8 pixels."""
    assert clip.dtype == torch.uint8
    return clip[0, :, 0, 0].long().tolist()


def test_eval_items_exact_frames(tmp_path):
    ds = build_dataset("ssv1", make_ssv1(tmp_path), "val", frames=4, size=16)
    assert len(ds) == 7 and ds.classes == CLASSES and ds.labels == [0, 1, 2, 0, 1, 2, 0]
    item = ds[1]  # 9 frames, centres of 4 segments of 2.25: 1, 3, 5, 7
    assert item["clip"].shape == (3, 4, 16, 16) and item["clip"].dtype == torch.uint8
    assert _pixels(item["clip"]) == [10 * t + 1 for t in (1, 3, 5, 7)]
    assert (item["label"], item["index"], item["num_skipped"]) == (1, 1, 0)
    assert _pixels(ds[4]["clip"]) == [4] * 4  # a 1-frame video repeats it
    views = build_dataset("ssv1", tmp_path, "val", frames=4, size=16, clips=2, crops=3)[3]["clip"]
    assert views.shape == (6, 3, 4, 16, 16)  # clip-major: 2 clips x 3 crops
    assert _pixels(views[0]) == _pixels(views[2]) == [10 * t + 3 for t in (0, 3, 6, 9)]
    assert _pixels(views[3]) == [10 * t + 3 for t in (2, 5, 8, 11)]
    assert build_dataset("ssv1", tmp_path, "test", frames=4, size=16)[0]["label"] == -1


def test_protocol_items_exact_frames(tmp_path):
    """`protocol` reaches the sampler: video 2 has 3 frames, T = 4. Evaluation: gdn floor(i n / T),
    both peers floor((i + 0.5) n / T); training: TSM frame 0, MMAction2 round(i n / T) (half to
    even); video 3 (12 frames) in training: one frame of each 3-frame segment."""
    root = make_ssv1(tmp_path)
    want_eval = {"gdn": [0, 0, 1, 2], "tsm": [0, 1, 1, 2], "mmaction": [0, 1, 1, 2]}
    want_train = {"tsm": [0, 0, 0, 0], "mmaction": [0, 1, 2, 2]}
    for protocol, frames in want_eval.items():
        ds = build_dataset("ssv1", root, "val", frames=4, size=16, protocol=protocol)
        assert _pixels(ds[2]["clip"]) == [10 * t + 2 for t in frames], protocol
    for protocol, frames in want_train.items():
        ds = build_dataset("ssv1", root, "train", frames=4, size=16, train=True, protocol=protocol)
        assert _pixels(ds[(2, 0)]["clip"]) == [10 * t + 2 for t in frames], protocol
        for epoch in range(5):
            assert [(v - 3) // 10 // 3 for v in _pixels(ds[(3, epoch)]["clip"])] == [0, 1, 2, 3]
    # twice_sample x three crops of the short side (MMAction2's ThreeCrop): 6 views of 16 + 2 px
    views = build_dataset("ssv1", root, "val", frames=4, size=16, clips=2, crops=3, protocol="mmaction")[3]["clip"]
    assert views.shape == (6, 3, 4, 18, 18)
    assert _pixels(views[0]) == [10 * t + 3 for t in (1, 4, 7, 10)]  # 0.5 points of 3-frame segments
    assert _pixels(views[3]) == [10 * t + 3 for t in (0, 3, 6, 9)]   # twice_sample: their starts
    with pytest.raises(ValueError, match="1 segment clip, or 2"):
        build_dataset("ssv1", root, "val", frames=4, size=16, clips=3, protocol="tsm")


def test_train_items_depend_on_seed_epoch_index_only(tmp_path):
    ds = build_dataset("ssv1", make_ssv1(tmp_path), "train", frames=4, size=16, train=True, seed=3)
    a, b = ds[(3, 0)], ds[(3, 0)]
    assert torch.equal(a["clip"], b["clip"]) and a["label"] == b["label"]
    epochs = {tuple(_pixels(ds[(3, e)]["clip"])) for e in range(8)}
    assert len(epochs) > 2
    for clip in epochs:  # one frame per segment of 3 frames of video 3
        assert [(v - 3) // 10 // 3 for v in clip] == [0, 1, 2, 3]
    assert not torch.equal(ds[(0, 0)]["clip"], ds[(5, 0)]["clip"])


def _batches(loader, epoch, start_batch=0):
    set_epoch(loader, epoch, start_batch)
    return [(b["index"].tolist(), b["label"].tolist(), b["clip"]) for b in loader]


def test_loader_same_batches_any_worker_count_and_resume(tmp_path):
    ds = build_dataset("ssv1", make_ssv1(tmp_path), "train", frames=4, size=16, train=True)
    l0 = build_loader(ds, 2, train=True, workers=0, seed=1)
    l2 = build_loader(ds, 2, train=True, workers=2, seed=1)
    for epoch in (0, 1):
        b0, b2 = _batches(l0, epoch), _batches(l2, epoch)
        assert len(b0) == 3  # 7 videos, batch 2, drop_last
        for x, y in zip(b0, b2):
            assert x[0] == y[0] and x[1] == y[1] and torch.equal(x[2], y[2])
    assert _batches(l0, 0)[0][0] != _batches(l0, 1)[0][0]
    resumed = _batches(l2, 1, start_batch=2)
    full = _batches(l0, 1)
    assert len(resumed) == 1 and resumed[0][0] == full[2][0] and torch.equal(resumed[0][2], full[2][2])


def test_train_sampler_shards_like_distributed_sampler():
    shards = [list(TrainSampler(7, 2, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 3 for s in shards)
    order = np.random.default_rng([0, 0]).permutation(7).tolist()
    padded = order + order[:2]
    assert [i for i, _ in shards[1]] == padded[1::3]
    assert sorted(i for s in shards for i, _ in s) == sorted(padded)
    s = TrainSampler(7, 2, seed=0)
    s.set_epoch(4, start_batch=1)
    assert len(s) == 5 and [e for _, e in s] == [4] * 5


@pytest.mark.parametrize("size", [1, 7, 11])
@pytest.mark.parametrize("world", [2, 3])
def test_eval_sampler_covers_each_index_once(size, world):
    shards = [list(EvalSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(size))
    assert [len(s) for s in shards] == [len(EvalSampler(size, rank=r, world_size=world)) for r in range(world)]


def test_training_skips_bad_files_and_counts_them(tmp_path, caplog):
    root = make_ssv1(tmp_path)
    (root / "20bn-something-something-v1" / "102" / "00002.jpg").write_bytes(b"not a jpeg")
    for f in (root / "20bn-something-something-v1" / "103").iterdir():
        f.unlink()
    ds = build_dataset("ssv1", root, "train", frames=4, size=16, train=True)
    with caplog.at_level(logging.WARNING):
        item = ds[(2, 0)]
    assert (item["index"], item["num_skipped"]) == (4, 2)
    assert "102" in caplog.text and "103" in caplog.text
    assert ds[(6, 0)]["num_skipped"] == 0
    with pytest.raises(DecodeError, match=r"102/00002.jpg.*not a readable JPEG"):
        build_dataset("ssv1", root, "val", frames=4, size=16)[2]
    with pytest.raises(DecodeError, match=r"103: contains no JPEG frames"):
        build_dataset("ssv1", root, "val", frames=4, size=16)[3]


def test_bad_fraction_check():
    check_bad_fraction(0, 10, 0.0)
    check_bad_fraction(2, 1000, 0.01)
    check_bad_fraction(5, 100, 0.01)  # too early to judge
    with pytest.raises(TooManyBadSamples, match=r"11 unreadable videos.*1000 samples.*gdn check-data"):
        check_bad_fraction(11, 1000, 0.01)
    with pytest.raises(TooManyBadSamples):
        check_bad_fraction(1, 5, 0.0)


def test_bad_annotations_fail_at_build_time(tmp_path):
    root = make_ssv1(tmp_path)
    with open(root / "something-something-v1-train.csv", "a") as f:
        f.write("999;Juggling something\n")
    with pytest.raises(AnnotationError, match=r"train.csv, line 8: unknown class 'Juggling something'"):
        build_dataset("ssv1", root, "train", train=True)


# ---------------------------------------------------------------- whole synthetic datasets


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from gdn.data.synthetic import generate

    out = {}
    for fmt in ("ssv1", "ssv2"):
        root = tmp_path_factory.mktemp(fmt)
        out[fmt] = generate(root, format=fmt, classes=2, train_per_class=3, val_per_class=2,
                            test_per_class=1, height=32, width=48, min_frames=6, max_frames=12,
                            workers=1)
    return out


@pytest.mark.parametrize("fmt", ["ssv1", "ssv2"])
def test_synthetic_dataset_loads_same_batches_with_workers(synth, fmt):
    summary = synth[fmt]
    order = "csv" if fmt == "ssv1" else "sorted"
    ds = build_dataset(fmt, summary.root, "train", frames=4, size=16, train=True, label_order=order)
    assert ds.classes == summary.classes
    truth = {c.id: summary.classes.index(c.class_name) for c in summary.clips if c.split == "train"}
    assert dict(zip(ds.video_ids, ds.labels)) == truth
    # the synthetic classes come in left/right mirrored pairs
    assert sorted(ds.flip_map) == list(range(len(ds.classes)))

    runs = []
    for workers in (0, 2):
        loader = build_loader(ds, 4, train=True, workers=workers, seed=0)
        runs.append(_batches(loader, 1))
    assert len(runs[0]) == 3  # 4 classes x 3 videos, batch 4
    for x, y in zip(*runs):
        assert x[0] == y[0] and x[1] == y[1] and torch.equal(x[2], y[2])
        assert x[2].shape == (4, 3, 4, 16, 16)

    val = build_dataset(fmt, summary.root, "val", frames=4, size=16, label_order=order)
    batches = list(build_loader(val, 3, train=False, workers=0))
    assert sum(len(b["index"]) for b in batches) == len(val) == 8  # 2 pairs = 4 classes x 2
    test = build_dataset(fmt, summary.root, "test", frames=4, size=16)
    assert test[0]["label"] == -1 and test[0]["clip"].shape == (3, 4, 16, 16)


@pytest.mark.parametrize("fmt", ["ssv1", "ssv2"])
def test_items_from_unstacked_frames_equal_the_stacked_clip_transformed(synth, fmt):
    """Items are built from the decoded frames without stacking them (only the crop is
    copied): the same pixels as transforming the stacked clip of `read_clips`."""
    root = synth[fmt].root
    for train, split in ((True, "train"), (False, "val")):
        ds = build_dataset(fmt, root, split, frames=4, size=16, train=train,
                           clips=1 if train else 2, crops=1 if train else 3)
        for index in range(len(ds)):
            rng = np.random.default_rng([ds.seed, 5, index])
            clips = ds.read_clips(index, rng)  # (clips, C, T, H, W); draws the sampler's numbers
            frames = ds.read_frames(index, np.random.default_rng([ds.seed, 5, index]))
            assert torch.equal(torch.from_numpy(np.stack(frames)).permute(0, 4, 1, 2, 3), clips)
            item = ds[(index, 5)]
            if train:
                want, label = ds.transform(clips[0], ds.labels[index], rng)
                assert item["label"] == label
            else:
                want = torch.cat([ds.transform(c) for c in clips])
            assert torch.equal(item["clip"], want)


def test_corrupt_webm_skipped_in_training_raises_in_eval(synth, tmp_path):
    import shutil

    root = tmp_path / "ssv2"
    shutil.copytree(synth["ssv2"].root, root)
    ds = build_dataset("ssv2", root, "train", frames=4, size=16, train=True)
    bad = root / "20bn-something-something-v2" / f"{ds.video_ids[0]}.webm"
    bad.write_bytes(bad.read_bytes()[:200])
    ds = build_dataset("ssv2", root, "train", frames=4, size=16, train=True)
    item = ds[(0, 0)]
    assert (item["index"], item["num_skipped"]) == (1, 1)
    bad.unlink()
    assert ds[(0, 3)]["num_skipped"] == 1
    ev = build_dataset("ssv2", root, "train", frames=4, size=16)
    with pytest.raises(DecodeError, match=rf"{bad.name}: file not found"):
        ev[0]


def _check_data(capsys, *argv):
    import argparse

    from gdn.commands import check_data

    parser = argparse.ArgumentParser()
    check_data.add_arguments(parser)
    code = check_data.run(parser.parse_args(list(argv)))
    return code, capsys.readouterr().out


def test_check_data_clean_and_bad(synth, tmp_path, capsys):
    import shutil

    code, out = _check_data(capsys, "--dataset", "ssv1", "--root", str(synth["ssv1"].root))
    assert code == 0 and "clean" in out
    assert "train" in out and "validation" in out and "test" in out
    root = tmp_path / "ssv1"
    shutil.copytree(synth["ssv1"].root, root)
    frames = root / "20bn-something-something-v1"
    train = (root / "something-something-v1-train.csv").read_text().splitlines()
    first, second = train[0].split(";")[0], train[1].split(";")[0]
    (frames / first / "00001.jpg").write_bytes(b"")
    shutil.rmtree(frames / second)
    with open(root / "something-something-v1-train.csv", "a") as f:
        f.write(f"{first};Juggling something\n")
    code, out = _check_data(capsys, "--dataset", "ssv1", "--root", str(root), "--split", "train")
    assert code == 1
    assert "3 bad entries" in out
    assert "something-something-v1-train.csv, line 13: unknown class 'Juggling something'" in out
    assert f"line 1 (id {first}): {frames / first / '00001.jpg'}: frame file is empty" in out
    assert f"line 2 (id {second}): {frames / second}: frame folder not found" in out


# ----------------------------------------------------------------------------- case 1
def test_case1_missing_frame_folder_checkdata_lists_train_skips_eval_stops(tmp_path, capsys, caplog):
    """Case 1 (docs/reliability.md): a missing frame folder is listed by check-data, skipped and
    counted in training, an error naming it in evaluation."""
    root = make_grey_ssv1(tmp_path)
    missing = root / FRAMES_DIR / "102"
    for f in missing.iterdir():
        f.unlink()
    missing.rmdir()

    # check-data lists it with the annotation file, line and id, and exits 1
    code, out = main(["check-data", "--dataset", "ssv1", "--root", str(root), "--split", "train"]), capsys.readouterr().out
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("  [train]")]
    assert len(bad) == 1
    assert "something-something-v1-train.csv, line 3 (id 102)" in bad[0] and str(missing) in bad[0]
    assert "frame folder not found" in bad[0]

    # training skips it (deterministically: the next index) and counts the skip
    train = build_dataset("ssv1", root, "train", frames=4, size=16, train=True)
    with caplog.at_level(logging.WARNING, logger="gdn.data.datasets"):
        item = train[(2, 0)]
    assert (item["index"], item["num_skipped"], item["label"]) == (3, 1, 0)
    assert "102" in caplog.text and str(missing) in caplog.text
    assert train[(2, 0)]["index"] == 3 and torch.equal(train[(2, 0)]["clip"], item["clip"])
    loader = build_loader(train, 2, train=True, workers=0, seed=0, drop_last=False)
    set_epoch(loader, 0)
    skipped = sum(int(b["num_skipped"].sum()) for b in loader)
    assert skipped == 1  # the missing video comes up once per epoch and is counted once

    # evaluation stops with the path (through the loader and `evaluate`, as `gdn test` runs it)
    val = build_dataset("ssv1", root, "val", frames=4, size=16)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    with pytest.raises(DecodeError) as e:
        evaluate(model, build_loader(val, 2, train=False, workers=0), "cpu")
    assert str(e.value) == (f"{missing}: frame folder not found [ssv1 validation video 102, "
                            "something-something-v1-validation.csv, line 3; check the data root and the "
                            "annotation file]")


def test_case1_missing_webm_checkdata_and_eval(tmp_path, capsys):
    """Case 1 (docs/reliability.md): a missing WebM is listed by check-data, an error in evaluation,
    skipped in training."""
    root = make_grey_ssv2(tmp_path)
    gone = root / VIDEOS_DIR / "201.webm"
    gone.unlink()
    code, out = main(["check-data", "--dataset", "ssv2", "--root", str(root), "--split", "validation"]), capsys.readouterr().out
    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("  [validation]")]
    assert len(bad) == 1 and "something-something-v2-validation.json, entry 1 (id 201)" in bad[0]
    assert f"{gone}: file not found" in bad[0]
    val = build_dataset("ssv2", root, "val", frames=4, size=16)
    with pytest.raises(DecodeError, match=rf"{gone}: file not found"):
        val[1]
    item = build_dataset("ssv2", root, "train", frames=4, size=16, train=True)[(1, 0)]
    assert (item["index"], item["num_skipped"]) == (2, 1)


# ----------------------------------------------------------------------------- case 4
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("kind", ["frames", "webm"])
def test_case4_video_shorter_than_segments(tmp_path, n, kind):
    """Case 4 (docs/reliability.md): a video shorter than the segments repeats frames as floor(i * n
    / T), in every view and epoch."""
    if kind == "frames":
        root = make_grey_ssv1(tmp_path, n_frames=(n, 9))
        name = "ssv1"
    else:
        root = make_grey_ssv2(tmp_path, n_frames=(n, 9))
        name = "ssv2"
    want = uniform_indices(n, 8).tolist()  # n=3: frames 0,0,0,1,1,1,2,2
    if n == 3:
        assert uniform_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    val = build_dataset(name, root, "val", frames=8, size=16)
    item = val[0]
    assert item["clip"].shape == (3, 8, 16, 16)
    assert which(item["clip"], 0) == want
    views = build_dataset(name, root, "val", frames=8, size=16, clips=2, crops=3)[0]["clip"]
    assert views.shape == (6, 3, 8, 16, 16)
    assert all(which(v, 0) == want for v in views)
    train = build_dataset(name, root, "train", frames=8, size=16, train=True, flip="none")
    clips = [train[(0, epoch)]["clip"] for epoch in range(3)]
    assert all(c.shape == (3, 8, 16, 16) for c in clips)
    assert torch.equal(train[(0, 1)]["clip"], clips[1])  # deterministic
    # the temporal pattern is the same in every epoch (only the crop/scale changes)
    for c in clips:
        assert which(c, 0) == want


# ----------------------------------------------------------------------------- case 16 (data side)
def test_case16_workers_and_epochs_get_different_augmentations(tmp_path):
    """Case 16 (docs/reliability.md): eight identical videos: any difference between their clips is
    augmentation. Loaded by two
    workers, the samples differ from each other (no worker repeats another's random stream) and
    from one epoch to the next, and equal what a single-process loader gives."""
    root = tmp_path
    lines = []
    for i in range(8):
        folder = root / FRAMES_DIR / str(100 + i)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(7)  # the same textured frames in every video
        for t in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"{t + 1:05d}.jpg",
                                                                                    quality=100)
        lines.append(f"{100 + i};Holding something")
    (root / "something-something-v1-labels.csv").write_text("Holding something\n")
    (root / "something-something-v1-train.csv").write_text("\n".join(lines) + "\n")
    ds = build_dataset("ssv1", root, "train", frames=4, size=16, train=True, seed=5)

    def epoch_clips(loader, epoch):
        set_epoch(loader, epoch)
        return {int(b["index"][0]): b["clip"][0] for b in loader}

    two = build_loader(ds, 1, train=True, workers=2, seed=5)
    zero = build_loader(ds, 1, train=True, workers=0, seed=5)
    e0, e1 = epoch_clips(two, 0), epoch_clips(two, 1)
    assert sorted(e0) == list(range(8))
    distinct = {c.numpy().tobytes() for c in e0.values()}
    assert len(distinct) == 8  # every sample its own augmentation
    assert all(not torch.equal(e0[i], e1[i]) for i in range(8))  # and a new one each epoch
    z0 = epoch_clips(zero, 0)
    assert all(torch.equal(z0[i], e0[i]) for i in range(8))  # independent of the worker count
