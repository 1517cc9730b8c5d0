"""`gdn ensemble`: exact fused accuracy on hand-made score files, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gdn.cli import main
from gdn.engine.evaluate import ScoreFile, ScoreFileError, load_scores, save_scores

CLASSES = ["a", "b", "c"]
IDS = ["v1", "v2", "v3", "v4"]
LABELS = np.array([0, 1, 2, 1])
# Model A is right on v1, v2 (2/4); model B right on v3, v4 (2/4); their average is right on
# v1, v3, v4 (3/4): v2 is wrong because A's 0.5 for class 1 is outweighed by B's 0.8 for 0.
A = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.5, 0.1, 0.4], [0.5, 0.4, 0.1]], np.float32)
B = np.array([[0.4, 0.5, 0.1], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.1, 0.8, 0.1]], np.float32)


def _write(path, scores, ids=IDS, labels=LABELS, classes=CLASSES):
    save_scores(path, ScoreFile(video_ids=list(ids), labels=np.asarray(labels), scores=scores, classes=classes))
    return str(path)


def test_fused_accuracy_exact_json(tmp_path, capsys):
    a, b = _write(tmp_path / "a.npz", A), _write(tmp_path / "b.pt", B)
    out = tmp_path / "fused.npz"
    assert main(["ensemble", a, b, "--json", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["top1"] == 75.0 and res["num_videos"] == 4
    # classes: a 1/1, b 1/2 (v4 yes, v2 no), c 1/1 -> (100 + 50 + 100) / 3
    assert res["mean_class_accuracy"] == pytest.approx(250 / 3)
    assert [m["top1"] for m in res["models"]] == [50.0, 50.0]
    fused = load_scores(out)
    np.testing.assert_allclose(fused.scores, (A + B) / 2, rtol=1e-6)
    assert fused.video_ids == IDS and fused.classes == CLASSES and fused.labels.tolist() == LABELS.tolist()


def test_weights_and_reordered_ids(tmp_path, capsys):
    a = _write(tmp_path / "a.npz", A)
    perm = [2, 0, 3, 1]  # B saved in another video order: aligned by id
    b = _write(tmp_path / "b.npz", B[perm], ids=[IDS[i] for i in perm], labels=LABELS[perm])
    assert main(["ensemble", a, b, "--weights", "9", "1", "--json", "--out", str(tmp_path / "f.pt")]) == 0
    res = json.loads(capsys.readouterr().out)
    fused = load_scores(tmp_path / "f.pt")
    np.testing.assert_allclose(fused.scores, (9 * A + B) / 10, rtol=1e-6)
    # (9A + B)/10 predicts 0, 1, 0, 0 -> v1, v2 right (plain averaging got v1, v3, v4)
    assert res["top1"] == 50.0 and res["weights"] == [9.0, 1.0]
    np.testing.assert_array_equal(fused.scores.argmax(1), [0, 1, 0, 0])


def test_table_lists_every_model_and_the_fusion(tmp_path, capsys):
    a, b = _write(tmp_path / "a.npz", A), _write(tmp_path / "b.npz", B)
    assert main(["ensemble", a, b]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["scores", "weight", "top1"]
    assert lines[1].split()[2] == "50.00" and lines[3].split()[0] == "ensemble"
    assert lines[3].split()[1] == "75.00"


@pytest.mark.parametrize("change, message", [
    (dict(ids=["v1", "v2", "v3", "v9"]), "video ids do not match"),
    (dict(labels=[0, 1, 2, 2]), "video 'v4' has label 2"),
    (dict(classes=["a", "B", "c"]), "class names differ"),
])
def test_mismatch_names_the_file(tmp_path, capsys, change, message):
    a, b = _write(tmp_path / "a.npz", A), _write(tmp_path / "bad.npz", B, **change)
    assert main(["ensemble", a, b]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "bad.npz") in err[0] and message in err[0]


def test_unreadable_or_unsafe_files(tmp_path, capsys):
    a = _write(tmp_path / "a.npz", A)
    (tmp_path / "text.npz").write_text("not a zip")
    assert main(["ensemble", a, str(tmp_path / "text.npz")]) == 2
    assert "text.npz: cannot be read as a score file" in capsys.readouterr().err
    assert main(["ensemble", a, str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz: score file not found" in capsys.readouterr().err
    assert main(["ensemble", a, a, "--weights", "1"]) == 2
    assert "got 1 weights for 2 score files" in capsys.readouterr().err

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"video_ids": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ScoreFileError, match="evil.pt: cannot be read"):
        load_scores(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out
