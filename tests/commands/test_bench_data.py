"""`gdn bench-data` in a tiny setting: one row per (source, frame count) with the timed work."""

import json

import pytest

from gdn.cli import main
from gdn.data.synthetic import generate


@pytest.mark.parametrize("fmt, source", [("ssv2", "webm"), ("ssv1", "jpeg")])
def test_bench_data_on_a_given_root(tmp_path, capsys, monkeypatch, fmt, source):
    from gdn.commands import bench_data

    events = []  # the process is set up as a DataLoader worker is, before anything is read
    real_prepare = bench_data.prepare

    def prepare(*args):
        events.append("prepare")
        return real_prepare(*args)

    monkeypatch.setattr(bench_data, "init_worker", lambda: events.append("init_worker"))
    monkeypatch.setattr(bench_data, "prepare", prepare)
    root = tmp_path / fmt
    generate(root, format=fmt, classes=2, train_per_class=2, val_per_class=1, test_per_class=1,
             height=32, width=48, min_frames=6, max_frames=10, seed=0)
    assert main(["bench-data", "--root", str(root), "--dataset", fmt, "--frames", "2,4",
                 "--size", "16", "--samples", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert events == ["init_worker", "prepare", "prepare"]
    assert [(r["source"], r["frames"], r["samples"], r["videos"]) for r in rows] == \
        [(source, 2, 5, 8), (source, 4, 5, 8)]  # 2 pairs = 4 classes x 2
    for r in rows:
        assert r["frame_size"] == "32x48" and r["size"] == 16
        assert r["target_per_core"] == {"webm": 35.0, "jpeg": 100.0}[source]
        assert r["cpu_s"] > 0 and r["rounds"] == 4
        assert r["clips_per_s_cpu_best"] >= r["clips_per_s_cpu"] > 0


def test_bench_data_rounds_take_every_configuration_in_turn(tmp_path, monkeypatch):
    """The samples of a row are split into rounds that cover them exactly once, and each round
    times every configuration in turn (so load from elsewhere falls on all rows alike)."""
    from gdn.commands import bench_data

    root = tmp_path / "ssv1"
    generate(root, format="ssv1", classes=2, train_per_class=1, val_per_class=1,
             test_per_class=1, height=32, width=48, min_frames=6, max_frames=8, seed=0)
    calls = []
    monkeypatch.setattr(bench_data, "time_items",
                        lambda ds, keys: calls.append((ds.frames, keys)) or (1.0, 1.0 + len(calls)))
    rows = bench_data.bench([("ssv1", root, 2), ("ssv1", root, 3)], "train", 16, samples=10,
                            rounds=3)
    assert calls == [(2, range(0, 3)), (3, range(0, 3)), (2, range(3, 6)), (3, range(3, 6)),
                     (2, range(6, 10)), (3, range(6, 10))]
    # CPU seconds 2..7 per call: rounds of the first row take 2, 4, 6 s for 3, 3, 4 clips
    assert rows[0]["cpu_s"] == 12 and rows[0]["clips_per_s_cpu"] == 0.8  # median of 1.5, .75, .67
    assert rows[0]["clips_per_s_cpu_best"] == 1.5 and rows[1]["rounds"] == 3


def test_bench_data_needs_the_layout_of_a_root(tmp_path, capsys):
    assert main(["bench-data", "--root", str(tmp_path)]) == 2
    assert "--root needs --dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_data_synthetic_sources(capsys):
    assert main(["bench-data", "--videos", "8", "--samples", "4", "--frames", "4", "--size", "32",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["source"], r["frame_size"]) for r in rows] == \
        [("webm", "240x426"), ("jpeg", "100x176"), ("jpeg", "240x426")]
