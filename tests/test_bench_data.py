"""`gdn bench-data` in a tiny setting: one row per (source, frame count) with the timed work."""

import json

import pytest

from gdn.cli import main
from gdn.data.synthetic import generate


@pytest.mark.parametrize("fmt, source", [("ssv2", "webm"), ("ssv1", "jpeg")])
def test_bench_data_on_a_given_root(tmp_path, capsys, fmt, source):
    root = tmp_path / fmt
    generate(root, format=fmt, classes=2, train_per_class=2, val_per_class=1, test_per_class=1,
             height=32, width=48, min_frames=6, max_frames=10, seed=0)
    assert main(["bench-data", "--root", str(root), "--dataset", fmt, "--frames", "2,4",
                 "--size", "16", "--samples", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["source"], r["frames"], r["samples"], r["videos"]) for r in rows] == \
        [(source, 2, 5, 8), (source, 4, 5, 8)]  # 2 pairs = 4 classes x 2
    for r in rows:
        assert r["frame_size"] == "32x48" and r["size"] == 16
        assert r["target_per_core"] == {"webm": 35.0, "jpeg": 100.0}[source]
        assert r["cpu_s"] > 0 and r["clips_per_s_cpu"] > 0


def test_bench_data_needs_the_layout_of_a_root(tmp_path):
    with pytest.raises(SystemExit, match="--dataset"):
        main(["bench-data", "--root", str(tmp_path)])


@pytest.mark.slow
def test_bench_data_synthetic_sources(capsys):
    assert main(["bench-data", "--videos", "8", "--samples", "4", "--frames", "4", "--size", "32",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["source"], r["frame_size"]) for r in rows] == \
        [("webm", "240x426"), ("jpeg", "100x176"), ("jpeg", "240x426")]
