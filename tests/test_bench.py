"""`gdn bench` in a tiny setting: the JSON fields, the ratios, the models built by name."""

import json

import pytest
import torch

import gdn.bench
from gdn.bench import BenchConfig, run_bench
from gdn.cli import main

torch.set_num_threads(1)

FIELDS = {
    "model", "mode", "device", "frames", "size", "batch", "params_m", "train_clips_s", "infer_clips_s",
    "latency_ms", "latency_ms_min", "peak_mem_mib", "mem_method", "train_ratio", "infer_ratio",
    "latency_ratio", "baseline", "repeats", "threads", "fold_bn", "channels_last",
}


def test_cli_json_smoke(capsys, monkeypatch):
    built = []
    real_create = gdn.bench.create_model

    def spy(name, **kw):
        built.append(name)
        return real_create(name, **kw)

    monkeypatch.setattr(gdn.bench, "create_model", spy)
    argv = ["bench", "--device", "cpu", "--models", "gdn_tiny,tsn_tiny,tsm_tiny", "--frames", "2", "--size", "32",
            "--batch", "2", "--repeats", "1", "--warmup", "1", "--fold-bn", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert built == ["gdn_tiny", "tsn_tiny", "tsm_tiny"]
    assert [r["model"] for r in rows] == built and {r["mode"] for r in rows} == {"eager"}
    for r in rows:
        assert set(r) == FIELDS
        assert (r["frames"], r["size"], r["batch"], r["repeats"], r["baseline"]) == (2, 32, 2, 1, "tsn_tiny")
        assert r["fold_bn"] is True and r["device"] == "cpu"
        for key in ("train_clips_s", "infer_clips_s", "latency_ms", "train_ratio", "infer_ratio", "latency_ratio"):
            assert r[key] > 0, key
    tsn = rows[1]
    assert tsn["infer_ratio"] == tsn["train_ratio"] == tsn["latency_ratio"] == 1.0
    gdn_row = rows[0]
    assert gdn_row["infer_ratio"] == pytest.approx(gdn_row["infer_clips_s"] / tsn["infer_clips_s"])
    assert gdn_row["latency_ratio"] == pytest.approx(gdn_row["latency_ms"] / tsn["latency_ms"])
    assert gdn_row["params_m"] < tsn["params_m"]  # GDM has 33/8 of the 9 weights per in/out pair


def test_table_and_options(capsys, tmp_path):
    saved = tmp_path / "gpu" / "bench.json"
    argv = ["bench", "--models", "tsn_tiny,r3d_tiny", "--frames", "2", "--size", "32", "--batch", "1",
            "--repeats", "1", "--no-train", "--baseline", "r3d_tiny", "--save", str(saved)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith(("tsn_tiny", "r3d_tiny"))]
    assert len(lines) == 2 and "(1.00)" in lines[1]
    assert "ratios to r3d_tiny" in out
    rows = json.loads(saved.read_text())  # --save keeps the table on the terminal
    assert [(r["model"], r["baseline"], r["train_clips_s"]) for r in rows] == \
        [("tsn_tiny", "r3d_tiny", None), ("r3d_tiny", "r3d_tiny", None)]
    assert f"{rows[0]['infer_clips_s']:.2f} ({rows[0]['infer_ratio']:.2f})" in lines[0]


def test_rows_per_mode_and_unknown_model():
    rows = run_bench(BenchConfig(models=["tsn_tiny"], frames=1, size=32, batch=1, repeats=2, train=False))
    assert len(rows) == 1 and rows[0].train_clips_s is None and rows[0].train_ratio is None
    with pytest.raises(ValueError, match="unknown model.*nope_r50"):
        BenchConfig(models=["nope_r50"])
    with pytest.raises(ValueError, match="baseline 'gdn_tiny' is not among"):
        BenchConfig(models=["tsn_tiny"], baseline="gdn_tiny")


@pytest.mark.torch_internals
def test_compiled_rows_are_compiled_whatever_dynamos_limit():
    """Every model shares `VideoResNet.forward`, so dynamo's per-code graph limit (default 8)
    was reached by 3 models x (train, inference, latency) and the rest ran eagerly in
    "compiled" rows. With the limit at 1, two models still compile all their graphs."""
    import torch._dynamo.utils

    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    cfg = BenchConfig(models=["tsn_tiny", "gdn_tiny"], frames=2, size=32, batch=2, repeats=1,
                      compile=True, train=False)
    with torch._dynamo.config.patch(recompile_limit=1):
        rows = run_bench(cfg)
        assert torch._dynamo.config.recompile_limit == 1  # run_bench's own limit is undone
    assert [(r.model, r.mode) for r in rows] == [
        ("tsn_tiny", "eager"), ("tsn_tiny", "compiled"), ("gdn_tiny", "eager"), ("gdn_tiny", "compiled")]
    # per model: inference at batch 2 and one-clip latency, each its own (static) graph
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - before == 4
