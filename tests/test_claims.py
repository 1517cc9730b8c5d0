"""benchmarks/claims.py in its tiniest setting: the structure and consistency of results.json."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gdn.data.synthetic import ALL_CLASSES
from gdn.engine.evaluate import compute_metrics, load_scores, pair_metrics
from gdn.models.profile import profile_model

REPO = Path(__file__).resolve().parents[1]


def _load_claims():
    spec = importlib.util.spec_from_file_location("claims", REPO / "benchmarks" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["claims"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


claims = _load_claims()

HAND_WRITTEN = "# Results\n\nhand-written tables\n\n"
AFTER = "\n## kept after the markers\n"


def tiny_settings() -> "claims.Settings":
    # 2 pairs (moving left/right: mirrored; up/down: not), 2 training and 2 validation clips per
    # class, 4 / 8 frames at 32 / 16 px, one epoch, one seed.
    return claims.Settings(
        seeds=[0], models=["tsn_tiny", "gdn_tiny"], frames=4, long_frames=8, size=32, low_size=16,
        epochs=1, batch_size=4, pairs=2, train_per_class=2, val_per_class=2, height=36, width=48,
        min_frames=8, max_frames=10, workers=0, threads=1,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("claims")
    md = out / "results.md"
    md.write_text(HAND_WRITTEN + claims.BEGIN + "\nold numbers\n" + claims.END + AFTER)
    s = tiny_settings()
    results = claims.run_claims(s, out, "python benchmarks/claims.py --test", results_md=md)
    return s, out, md, results


def test_results_json_structure(run):
    s, out, _, results = run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["command"] == "python benchmarks/claims.py --test"
    assert {"date", "machine", "settings", "recipe", "dataset", "runs", "experiments", "claims"} <= set(on_disk)
    assert on_disk["settings"]["seeds"] == [0]
    assert on_disk["dataset"]["counts"] == {"train": 8, "validation": 8, "test": 0}
    assert on_disk["dataset"]["mirrored_classes"] == ["Moving something from left to right",
                                                      "Moving something from right to left"]
    # base gdn, tsn, 3 more Table 3 cells, 2 more flips: 7 distinct trainings
    assert len(on_disk["runs"]) == 7
    assert on_disk["experiments"]["table2"] == ["tsn_tiny-4f-32px-flip_label", "gdn_tiny-4f-32px-flip_label"]
    assert sorted(on_disk["experiments"]["table3"]) == sorted(
        f"gdn_tiny-{f}f-{z}px-flip_label" for f in (4, 8) for z in (32, 16))
    for key, r in on_disk["runs"].items():
        assert list(r["per_seed"]) == ["0"]
        seed0 = r["per_seed"]["0"]
        assert seed0["num_videos"] == 8
        assert r["mean"]["top1"] == seed0["top1"] and r["std"]["top1"] == 0.0
        # the recipe is shared: only model, frames, size, flip and seed differ
        cfg = (Path(seed0["run_dir"]) / "config.yaml").read_text()
        assert f"epochs: {s.epochs}" in cfg and f"lr: {s.lr}" in cfg
    # GDN is the only temporal model here: nothing to rank it against (gdn_cheapest, gdn_best)
    assert {c["id"] for c in on_disk["claims"]} == {"tsn_chance", "temporal_above", "half_side_cheap",
                                                    "frames_help_more", "ensemble", "label_flip"}
    assert all(isinstance(c["held"], bool) for c in on_disk["claims"])
    assert (out / "fig3_accuracy_vs_gmacs.png").stat().st_size > 0
    assert (out / "table3_tradeoff.png").stat().st_size > 0


def test_params_and_gmacs_equal_profile_model(run):
    _, _, _, results = run
    for r in results["runs"].values():
        prof = profile_model(r["model"], r["frames"], r["size"], num_classes=4)
        assert r["params"] == prof["params"]
        assert r["gmacs"] == prof["gmacs"]
        assert round(r["mmacs"] / 1e3, 3) == prof["gmacs"]


def test_scores_match_the_reported_accuracy(run):
    _, _, _, results = run
    for r in results["runs"].values():
        seed0 = r["per_seed"]["0"]
        f = load_scores(seed0["scores"])
        assert seed0["top1"] == compute_metrics(f.scores, f.labels)["top1"]
        # train()'s own validation of the same final model gives the same top-1
        assert seed0["train_val_top1"] == pytest.approx(seed0["top1"], abs=1e-9)


def test_ensemble_recomputed_from_saved_scores(run):
    _, out, _, results = run
    ens = results["experiments"]["ensemble"]
    assert ens["members"] == ["gdn_tiny-4f-32px-flip_label", "gdn_tiny-8f-32px-flip_label"]
    seed0 = ens["per_seed"]["0"]
    a, b = (load_scores(p) for p in seed0["members"])
    order = [b.video_ids.index(v) for v in a.video_ids]  # align b to a by video id
    assert np.array_equal(b.labels[order], a.labels)
    mean = (a.scores.astype(np.float64) + b.scores[order]) / 2
    fused = load_scores(out / "ensemble" / "seed0.npz")
    assert fused.video_ids == a.video_ids
    np.testing.assert_allclose(fused.scores, mean, atol=1e-6)
    top1 = 100.0 * float((mean.argmax(1) == a.labels).mean())
    assert seed0["top1"] == top1
    assert ens["mean"]["top1"] == top1


def test_flip_settings_share_the_seed_set(run):
    _, _, _, results = run
    flip = results["experiments"]["flip"]
    assert set(flip) == {"label", "none", "naive"}
    assert flip["label"] == "gdn_tiny-4f-32px-flip_label"
    for name, key in flip.items():
        run_ = results["runs"][key]
        assert run_["flip"] == name
        assert list(run_["per_seed"]) == ["0"]
        assert run_["per_seed"]["0"]["num_mirrored"] == 4  # 2 clips x 2 mirrored classes


def test_results_md_keeps_the_hand_written_parts(run):
    _, _, md, results = run
    text = md.read_text()
    assert text.startswith(HAND_WRITTEN + claims.BEGIN)
    assert text.endswith(claims.END + "\n" + AFTER)
    assert "old numbers" not in text
    assert text.count(claims.BEGIN) == 1 and text.count(claims.END) == 1
    for c in results["claims"]:
        assert c["claim"] in text


def test_finished_runs_are_reused(run, monkeypatch, tmp_path):
    s, out, _, results = run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(claims, "train", no_training)
    again = claims.run_claims(s, out, "again", results_md=None)
    assert {k: r["mean"] for k, r in again["runs"].items()} == {k: r["mean"] for k, r in results["runs"].items()}


def test_pair_metrics_exact():
    classes = sorted(ALL_CLASSES[:4])  # away/closer are not included: 2 pairs, move_x and move_y
    # ['Moving something down', '... from left to right', '... from right to left', '... up']
    labels = np.array([0, 3, 1, 2, 1])
    scores = np.array([
        [0.7, 0.1, 0.1, 0.1],   # down above its reverse (up): pair ok, top-1 ok
        [0.5, 0.1, 0.1, 0.3],   # up below its reverse (down): pair wrong, top-1 wrong
        [0.1, 0.3, 0.2, 0.4],   # left->right over right->left: pair ok, top-1 wrong (up)
        [0.1, 0.5, 0.4, 0.0],   # right->left loses to its mirror: pair wrong, top-1 wrong
        [0.1, 0.6, 0.2, 0.1],   # left->right: pair ok, top-1 ok
    ])
    m = pair_metrics(scores, labels, classes)
    assert m["num_paired"] == 5 and m["num_mirrored"] == 3
    assert m["pair_acc"] == 60.0
    assert m["mirror_pair_acc"] == pytest.approx(100.0 * 2 / 3, abs=1e-12)
    assert m["mirror_top1"] == pytest.approx(100.0 * 1 / 3, abs=1e-12)


def test_table2_only_adds_rows_in_its_own_section(run):
    """--table2-only --models: experiment 1 alone, the runs the full invocation made reused (the
    same fingerprint), a model that cannot take the clip listed with its reason, and its own
    section of results.md next to the full run's, which stays as it was."""
    s, out, md, _ = run
    before = md.read_text()
    extra = dataclasses.replace(s, models=["gdn_tiny", "i3d_r50"], table2_only=True)
    results = claims.run_claims(extra, out, "python benchmarks/claims.py --table2-only", results_md=md)
    assert list(results["runs"]) == ["gdn_tiny-4f-32px-flip_label"]
    assert results["runs"]["gdn_tiny-4f-32px-flip_label"]["per_seed"]["0"]["train_s"] == \
        json.loads(before and (out / "runs" / "gdn_tiny-4f-32px-flip_label" / "seed0" / "result.json").read_text())["train_s"]
    assert "multiple of 8 frames" in results["experiments"]["not_run"]["i3d_r50"]
    assert set(results["experiments"]) == {"table2", "not_run"}
    assert [c["id"] for c in results["claims"]] == []  # GDN is the only temporal model: nothing to compare
    text = md.read_text()
    assert text.startswith(before.split(claims.END)[0] + claims.END)  # the full run's section untouched
    section = text.split(claims.BEGIN_T2)[1].split(claims.END_T2)[0]
    assert "| `gdn_tiny` |" in section and "`i3d_r50` was not run: " in section
    assert (out / "fig3_pair_accuracy_vs_gmacs.png").is_file()
