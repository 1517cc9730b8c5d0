"""ONNX export (gdn.export, `gdn export`): onnxruntime equals PyTorch per model family, with a
dynamic batch, and the temporal shift stays a function of the input."""

import copy
import json

import pytest
import torch
from torch import nn

from gdn import create_model
from gdn.cli import main
from gdn.config import Config
from gdn.export import ExportError, export_onnx, read_metadata, verify_onnx
from gdn.models.layers import TemporalShift

ort = pytest.importorskip("onnxruntime")
torch.set_num_threads(1)

FRAMES, SIZE = 4, 32
# Exporting a tiny ResNet takes several CPU seconds; GDN and TSM (the fused forms) run by
# default, the other families with -m slow.
FAMILIES = [
    "gdn_tiny", "tsm_tiny",
    pytest.param("r3d_tiny", marks=pytest.mark.slow),
    pytest.param("tsn_tiny", marks=pytest.mark.slow),
    pytest.param("r2plus1d_tiny", marks=pytest.mark.slow),
    pytest.param("gst_tiny", marks=pytest.mark.slow),
    pytest.param("s3d_tiny", marks=pytest.mark.slow),
    pytest.param("i3d_nl_tiny", marks=pytest.mark.slow),  # frame-count changes, non-local attention
    pytest.param("eco_full_tiny", marks=pytest.mark.slow),  # 3D part, pre-activation BNs as affine maps
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, bn_model):
    """name -> (model, path of its export), each family exported once per test module."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = bn_model(name)
            path = tmp_path_factory.mktemp(name) / f"{name}.onnx"
            cache[name] = (model, export_onnx(model, path, FRAMES, SIZE, classes=list("abcde"), verify=False))
        return cache[name]

    return get


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_matches_pytorch_at_batch_1_and_3(name, exported):
    model, path = exported(name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    outs = []
    for batch in (1, 3):
        clips = torch.randn(batch, 3, FRAMES, SIZE, SIZE, generator=gen)
        with torch.no_grad():
            ref = model(clips)
        (got,) = session.run(["logits"], {"clips": clips.numpy()})
        assert got.shape == (batch, 5)
        torch.testing.assert_close(torch.from_numpy(got), ref, rtol=0, atol=1e-4 * max(1.0, ref.abs().max().item()))
        outs.append(got)
    assert not torch.allclose(torch.from_numpy(outs[0][0]), torch.from_numpy(outs[1][0]))  # input-dependent
    meta = read_metadata(path)
    assert json.loads(meta["classes"]) == list("abcde")
    assert (meta["frames"], meta["size"]) == (str(FRAMES), str(SIZE))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the input model kept its BNs


class _ShiftOnly(nn.Module):
    """Clips (B, C, T, H, W) -> the TSM shift of their frames, in the backbone's layout."""

    def __init__(self):
        super().__init__()
        self.shift = TemporalShift(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.shift(frames, t)


def test_exported_shift_depends_on_the_input(tmp_path):
    # A traced constant would give the example input's shift for every input.
    path = tmp_path / "shift.onnx"
    torch.onnx.export(
        _ShiftOnly().eval(), (torch.randn(2, 8, 3, 2, 2),), str(path), dynamo=True, input_names=["x"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},), verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = _ShiftOnly()
    for seed, batch in ((1, 2), (2, 3)):
        x = torch.randn(batch, 8, 3, 2, 2, generator=torch.Generator().manual_seed(seed))
        (got,) = session.run(None, {"x": x.numpy()})
        b, c, t, h, w = x.shape
        ref = module.shift.forward_reference(x.transpose(1, 2).reshape(b * t, c, h, w), t)
        assert torch.equal(torch.from_numpy(got), ref)


def test_verify_fails_loudly_on_a_wrong_file(exported):
    model, path = exported("gdn_tiny")
    assert verify_onnx(model, path, FRAMES, SIZE) <= 1e-4
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.fc.bias += 1.0  # PyTorch now disagrees with the file
    with pytest.raises(ExportError, match="gdn_tiny.onnx.*differs from PyTorch"):
        verify_onnx(model, path, FRAMES, SIZE)


def test_cli_exports_a_checkpoint_with_its_classes(tmp_path, capsys):
    cfg = Config()
    cfg.model.name, cfg.data.frames, cfg.data.size = "tsm_tiny", 2, SIZE
    classes = ["push", "pull", "lift"]
    model = create_model("tsm_tiny", num_classes=3, dropout=cfg.model.dropout)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "classes": classes}, tmp_path / "last.pt")
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "last.pt"), "--onnx", str(out)]) == 0
    meta = read_metadata(out)
    assert json.loads(meta["classes"]) == classes
    assert (meta["model"], meta["frames"], meta["size"]) == ("tsm_tiny", "2", str(SIZE))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 2, SIZE, SIZE]
    assert "verified" in capsys.readouterr().out


def test_the_exporters_own_logging_shows_only_at_debug(caplog, recwarn):
    """`gdn export` prints its summary only: the exporter's libraries' INFO lines and warnings
    (about 50 for a tiny model) are silenced unless gdn logs at DEBUG (`gdn -v`)."""
    import logging
    import warnings

    from gdn.export import _quiet_exporter

    def chatter():
        logging.getLogger("onnx_ir.passes.common.unused_removal").info("Removed 421 unused nodes")
        logging.getLogger("onnxscript.rewriter").info("Applied 81 of general pattern rewrite rules.")
        logging.getLogger("torch.onnx._internal.exporter._registration").warning("torchvision is not installed")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning)

    with caplog.at_level(logging.INFO):
        with _quiet_exporter():
            chatter()
        assert caplog.records == [] and len(recwarn) == 0
        logging.getLogger("onnx_ir").error("an error still shows")
        assert len(caplog.records) == 1
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        with _quiet_exporter():
            chatter()
        assert len(caplog.records) == 3 and len(recwarn) == 1
