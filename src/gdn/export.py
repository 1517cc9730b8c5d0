"""ONNX export of a trained model: eval mode, BatchNorm folded, dynamic batch, verified.

`export_onnx(model, path, frames, size, classes)` writes a graph whose input `clips` is
(B, 3, T, H, W) with B free and T, H, W fixed, and whose output `logits` is (B, classes). The
class names (JSON list), frame count and size are stored in the model's metadata
(`metadata_props`). `verify_onnx` runs it with onnxruntime on random clips and raises
`ExportError` unless it matches PyTorch within `tolerance` (relative to the largest logit).
Uses the dynamo exporter (`torch.onnx.export(..., dynamo=True)`): the temporal shift of TSM
and the GDM are traced as data-dependent ops, which tests/test_export.py checks per family.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from gdn.errors import GdnError
from gdn.models.fold import fold_bn

log = logging.getLogger(__name__)


# The exporter's libraries log a line per optimisation pass and per deduplicated initializer
# (about 50 for a small model), and warn about what does not concern a video model (torchvision
# ops they cannot register, deprecations): shown only when gdn logs at DEBUG (`gdn -v`).
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "onnx_ir", "onnxscript")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's INFO logs and warnings (errors still show) unless gdn logs at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class ExportError(GdnError, RuntimeError):
    """An export that failed or whose ONNX outputs differ from PyTorch; the message names the file."""


def export_onnx(
    model: nn.Module,
    path: str | Path,
    frames: int,
    size: int,
    classes: Sequence[str] | None = None,
    metadata: dict[str, str] | None = None,
    verify: bool = True,
    tolerance: float = 1e-4,
) -> Path:
    """Export `model` (clips (B, 3, frames, size, size) -> logits) to `path`; returns the path.

    The model is copied, put in eval mode and its BatchNorms folded; the input model is not
    changed. With `verify`, the file is checked with onnxruntime at batch sizes 1 and 3. The
    exporter's own logging and warnings are shown only when this module logs at DEBUG.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fold_bn(model).cpu()
    example = torch.randn(2, 3, frames, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=["clips"], output_names=["logits"],
                dynamic_shapes=({0: batch},), verbose=False,
            )
    except Exception as e:  # the exporter raises many types; name the target and keep the cause
        raise ExportError(f"{path}: ONNX export failed: {type(e).__name__}: {e}") from e
    program.save(str(path))

    proto = onnx.load(str(path))
    props = {"frames": str(frames), "size": str(size), "input_layout": "B,C,T,H,W"}
    if classes is not None:
        props["classes"] = json.dumps(list(classes))
    props.update(metadata or {})
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    log.info("exported %s (%d frames, %dx%d, dynamic batch)", path, frames, size, size)
    if verify:
        verify_onnx(model, path, frames, size, tolerance=tolerance)
    return path


def verify_onnx(
    model: nn.Module, path: str | Path, frames: int, size: int,
    batch_sizes: Sequence[int] = (1, 3), tolerance: float = 1e-4, seed: int = 0,
) -> float:
    """Run `path` with onnxruntime and `model` with PyTorch on the same random clips.

    Returns the largest |difference| / max(1, largest |PyTorch logit|) over `batch_sizes`;
    raises `ExportError` if it exceeds `tolerance`.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for b in batch_sizes:
        clips = torch.randn(b, 3, frames, size, size, generator=gen)
        with torch.no_grad():
            ref = model(clips)
        (got,) = session.run(["logits"], {"clips": clips.numpy()})
        if got.shape != tuple(ref.shape):
            raise ExportError(f"{path}: ONNX output shape {got.shape} at batch {b}, PyTorch gives {tuple(ref.shape)}")
        diff = (torch.from_numpy(got) - ref).abs().max().item() / max(1.0, ref.abs().max().item())
        worst = max(worst, diff)
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(
                f"{path}: onnxruntime differs from PyTorch by {diff:.3g} (relative) at batch {b}, "
                f"above the tolerance {tolerance:g}; the export is wrong, do not use this file"
            )
    log.info("verified %s with onnxruntime: max relative difference %.2e at batch sizes %s",
             path, worst, list(batch_sizes))
    return worst


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an exported file (classes is a JSON list)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
