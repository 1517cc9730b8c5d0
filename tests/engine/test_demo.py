"""`gdn demo`: the quick setting end to end; the full demo (>= 90% for GDN) is `slow`."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest
import torch

from gdn.cli import main
from gdn.data.synthetic import reverse_pairs
from gdn.engine.demo import DEMO_MODELS, demo_config
from gdn.engine.evaluate import pair_metrics

torch.set_num_threads(1)


def test_pair_accuracy_counts_own_class_over_its_reverse():
    classes = ["Moving something up", "Moving something down", "Moving something closer",
               "Moving something away"]
    pairs = reverse_pairs(classes)
    assert pairs == {0: 1, 1: 0, 2: 3, 3: 2}
    scores = np.array([
        [0.1, 0.0, 0.9, 0.0],   # label 0: wrong overall (top-1 is 2) but beats its reverse -> right
        [0.5, 0.4, 0.1, 0.0],   # label 1: loses to its reverse -> wrong
        [0.0, 0.0, 0.3, 0.7],   # label 3: beats its reverse (2) -> right
        [0.0, 0.0, 0.5, 0.5],   # label 2: tie with its reverse -> wrong (not strictly above)
    ])
    assert pair_metrics(scores, np.array([0, 1, 3, 2]), classes)["pair_acc"] == 50.0


def test_same_budget_for_both_models(tmp_path):
    gdn, tsn = (demo_config(m, tmp_path, tmp_path / "data").to_dict() for m in DEMO_MODELS)
    assert gdn["model"].pop("name") == "gdn_tiny" and tsn["model"].pop("name") == "tsn_tiny"
    assert gdn.pop("out").endswith("gdn_tiny") and tsn.pop("out").endswith("tsn_tiny")
    assert gdn == tsn


def _check_outputs(out, capsys_out: str, quick: bool) -> dict:
    summary = json.loads((out / "demo.json").read_text())
    assert [m["model"] for m in summary["models"]] == list(DEMO_MODELS)
    assert summary["quick"] is quick
    for f in ("report.md", "curves.png", "confusion_gdn_tiny.png", "confusion_tsn_tiny.png",
              "gdn_tiny/last.pt", "tsn_tiny/last.pt", "data/demo-data.json"):
        assert (out / f).is_file(), f
    report = (out / "report.md").read_text()
    for m in summary["models"]:
        # the report's row and the printed table carry the run's own numbers
        row = next(line for line in report.splitlines() if line.startswith(f"| {m['model']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3]) == pytest.approx(m["top1"], abs=0.005)
        assert float(cells[5]) == pytest.approx(m["pair_accuracy"], abs=0.005)
        assert re.search(rf"^{m['model']}\s.*\s{m['top1']:.2f}\s", capsys_out, re.M)
        # top-1 of the final model equals what training logged for its last epoch
        last = json.loads((out / m["model"] / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["val_top1"] == pytest.approx(m["top1"])
    return summary


def test_smoke_quick_demo_writes_every_output_and_reuses_its_data(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    summary = _check_outputs(out, capsys.readouterr().out, quick=True)
    spec = summary["data"]
    assert spec["counts"]["validation"] == 8 and len(spec["classes"]) == 4
    assert summary["models"][0]["params"] < summary["models"][1]["params"]  # GDN is the lighter one
    # a second run reuses the complete dataset (same marker, not regenerated)
    marker = (out / "data" / "demo-data.json").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "data" / "demo-data.json").stat().st_mtime_ns == marker

    # the report's "Reproduce" command, run as written from the report's folder, trains into a
    # new folder (the demo's run is kept) and gets the demo run's numbers
    command = re.search(r"Reproduce .*: `(gdn train [^`]+)`", (out / "report.md").read_text())[1]
    before = (out / "gdn_tiny" / "last.pt").read_bytes()
    monkeypatch.chdir(out)
    assert main(shlex.split(command)[1:]) == 0
    assert (out / "gdn_tiny" / "last.pt").read_bytes() == before
    (again,) = [p for p in out.iterdir() if p.is_dir() and p.name not in ("data", "gdn_tiny", "tsn_tiny")]
    demo, reproduced = [json.loads((d / "metrics.jsonl").read_text()) for d in (out / "gdn_tiny", again)]
    keys = ("epoch", "loss", "train_top1", "val_top1")
    assert [reproduced[k] for k in keys] == [demo[k] for k in keys]


@pytest.mark.slow
def test_full_demo_gdn_sees_time_tsn_does_not(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    summary = _check_outputs(out, capsys.readouterr().out, quick=False)
    gdn, tsn = summary["models"]
    assert gdn["top1"] >= 90.0 and gdn["pair_accuracy"] >= 90.0
    assert tsn["pair_accuracy"] <= 70.0  # near chance (50%) within time-reversed pairs
