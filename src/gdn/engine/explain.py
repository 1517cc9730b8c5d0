"""Where and when a model looked: Grad-CAM per frame and a test of frame order.

**Grad-CAM** (Selvaraju et al., ICCV 2017) for one class: inside the backbone the T frames of a
clip are a batch (``(B*T, C, h, w)``, `gdn.models.layers`), so a stage's output holds one
feature map per frame. Each frame gets its own map: the channels of that frame's features,
weighted by the spatial mean of the class logit's gradient with respect to them, summed and
passed through a ReLU. The maps of a clip are scaled by their common maximum (a frame the
class hardly depends on stays dark) and resized to the crop the model saw. The default stage is
the last; earlier stages (``layer1`` ...) give finer maps.

**Temporal test**: the probability of the class on the clip as sampled; with each frame in turn
occluded (replaced by the dataset's mean colour, zero after normalisation); with the frames in
reverse order; and with the frames shuffled (``shuffles`` seeded permutations). TSN averages
per-frame scores, so reversing or shuffling leaves its scores unchanged (up to floating point);
a model with temporal convolutions such as GDN's gives other scores when the order changes.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gdn.data.decode import count_frames, read_frames
from gdn.data.transforms import model_input
from gdn.data.windows import FOLDER_RATE, frame_rate
from gdn.engine.predict import Predictor
from gdn.engine.render import VideoWriter, class_colour, draw_lines, legible_size
from gdn.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["Explanation", "explain", "grad_cam", "save_explanation", "temporal_test"]


def _stage(model: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    if not hasattr(model, "stages"):
        raise UsageError(f"gdn explain needs a network whose stages keep the frames a batch (the ResNet families, "
                         f"I3D); {type(model).__name__} stacks them in time inside")
    stages = {f"layer{i + 1}": s for i, s in enumerate(model.stages())}
    name = layer or list(stages)[-1]
    if name not in stages:
        raise UsageError(f"unknown layer '{layer}': choose one of {', '.join(stages)}")
    return name, stages[name]


def grad_cam(model: nn.Module, clip: torch.Tensor, target: int, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM of class ``target`` for one normalised clip ``(1, C, T, H, W)``: ``(T, h, w)``
    non-negative maps at the resolution of stage ``layer`` (``"layer1"`` ... ; default the
    last), one per frame, unscaled. A stage that holds T / k frames (I3D's temporal strides)
    gives each of its maps to the k frames it covers. The model must be in eval mode."""
    _, stage = _stage(model, layer)
    features: list[torch.Tensor] = []
    hook = stage.register_forward_hook(lambda module, inputs, output: features.append(output))
    try:
        with torch.enable_grad():
            logits = model(clip)
            (grads,) = torch.autograd.grad(logits[0, target], features[0])
    finally:
        hook.remove()
    a = features[0].detach()                      # (T, C, h, w): the frames are the batch
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (T, C, 1, 1): one weight per frame and channel
    cam = F.relu((weights * a).sum(dim=1))        # (T, h, w)
    return cam.repeat_interleave(clip.shape[2] // cam.shape[0], dim=0)


@torch.no_grad()
def temporal_test(model: nn.Module, clip: torch.Tensor, target: int, *, shuffles: int = 5,
                  seed: int = 0) -> dict:
    """Probability of class ``target`` for one normalised clip ``(1, C, T, H, W)``: as given
    (``original``), with frame t occluded (``occluded[t]``), reversed (``reversed``) and under
    ``shuffles`` seeded permutations (``shuffled``, with their ``orders``); one batch."""
    t = clip.shape[2]
    rng = np.random.default_rng(seed)
    orders = []
    while len(orders) < shuffles and t > 2:
        order = rng.permutation(t)
        if (order != np.arange(t)).any() and (order != np.arange(t)[::-1]).any():
            orders.append(order.tolist())
    occluded = clip.repeat(t, 1, 1, 1, 1)
    occluded[torch.arange(t), :, torch.arange(t)] = 0  # item i: frame i at the mean colour
    batch = torch.cat([clip, clip.flip(2), *(clip[:, :, o] for o in orders), occluded])
    probs = torch.softmax(model(batch).float(), dim=1)[:, target].cpu().tolist()
    return {"original": probs[0], "reversed": probs[1], "shuffled": probs[2 : 2 + len(orders)],
            "orders": orders, "occluded": probs[2 + len(orders):]}


@dataclass
class Explanation:
    """What `explain` found for one video (see the module docstring)."""

    path: str
    model: str
    layer: str
    target: int                      # class explained
    class_name: str
    probability: float               # of `target` on the clip as sampled
    predicted: list[tuple[int, str, float]]  # the top classes, best first
    frame_indices: list[int]         # the T source frames sampled (0-based)
    frames: np.ndarray = field(repr=False)   # (T, S, S, 3) uint8: the crops the model saw
    maps: np.ndarray = field(repr=False)     # (T, S, S) float32 in [0, 1]: Grad-CAM, common scale
    temporal: dict = field(default_factory=dict)  # temporal_test's result
    rate: Fraction = FOLDER_RATE     # frames per second of the source video, for the overlay
    num_frames: int = 0              # of the source video

    def to_dict(self) -> dict:
        share = self.maps.sum(axis=(1, 2))
        return {
            "path": self.path, "model": self.model, "layer": self.layer,
            "class": self.class_name, "index": self.target, "probability": self.probability,
            "predictions": [{"index": i, "class": c, "probability": p} for i, c, p in self.predicted],
            "frames": self.frame_indices,
            "map_share": (share / share.sum() if share.sum() > 0 else share).round(4).tolist(),
            "temporal": self.temporal,
        }


def _class_index(classes: list[str], target: int | str | None, scores: torch.Tensor) -> int:
    if target is None:
        return int(scores.argmax())
    if isinstance(target, int) or str(target).isdigit():
        k = int(target)
        if not 0 <= k < len(classes):
            raise UsageError(f"class index {k} out of range: the model has {len(classes)} classes")
        return k
    if target in classes:
        return classes.index(target)
    close = difflib.get_close_matches(target, classes, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    known = (f"choose one of: {', '.join(classes)}" if len(classes) <= 20 else
             f"give one of the checkpoint's {len(classes)} class names or an index")
    raise UsageError(f"unknown class '{target}'{hint}; {known}")


def explain(predictor: Predictor, path: str | Path, *, target: int | str | None = None,
            layer: str | None = None, shuffles: int = 5, seed: int = 0, topk: int = 5) -> Explanation:
    """Grad-CAM and the temporal test for one video or frame folder.

    The clip is the one `gdn predict` scores (the checkpoint's sampling and eval transform, one
    view). ``target``: a class name or index; default the predicted class. Raises DecodeError
    naming the file, UsageError for an unknown class or layer.
    """
    model = predictor.model
    if not hasattr(model, "stages"):
        raise UsageError("explain needs the eager model: build the Predictor without compile")
    n = count_frames(path)
    idx = predictor.sampler(n)[:1]  # (1, T): the first view
    views = predictor.views([read_frames(path, idx[0].tolist())])  # (1, C, T, S, S) uint8
    clip = model_input(views, predictor.device)  # normalised, on the device
    with torch.no_grad():
        scores = torch.softmax(model(clip).float(), dim=1)[0].cpu()
    k = _class_index(predictor.classes, target, scores)
    name, _ = _stage(model, layer)
    cam = grad_cam(model, clip, k, name)  # (T, h, w)
    size = clip.shape[-2:]
    maps = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].clamp_min(0)
    peak = float(maps.max())
    maps = (maps / peak if peak > 0 else maps).cpu().numpy().astype(np.float32)
    return Explanation(
        path=str(path), model=predictor.cfg.model.name, layer=name, target=k,
        class_name=predictor.classes[k], probability=float(scores[k]),
        predicted=predictor.top_classes(scores, topk),
        frame_indices=idx[0].tolist(),
        frames=views[0].permute(1, 2, 3, 0).numpy(),  # (T, S, S, 3)
        maps=maps, temporal=temporal_test(model, clip, k, shuffles=shuffles, seed=seed),
        rate=frame_rate(path), num_frames=n,
    )


def _heat(frame: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 blended with ``cam`` (H, W) in [0, 1] through the jet colours,
    more where the map is stronger."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](cam)[..., :3] * 255
    alpha = 0.25 + 0.5 * cam[..., None]
    return (frame * (1 - alpha) + colours * alpha).round().astype(np.uint8)


def save_explanation(e: Explanation, out: str | Path) -> dict[str, Path]:
    """Write ``explain.json``, ``frames.png`` (the T frames and their maps), ``temporal.png``
    (the temporal test) and ``overlay.mp4`` (each sampled frame with its map, shown for its
    segment of the video, so it lasts as long as the video) into the folder ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f for k, f in (("json", "explain.json"), ("frames", "frames.png"),
                                     ("temporal", "temporal.png"), ("overlay", "overlay.mp4"))}
    paths["json"].write_text(json.dumps(e.to_dict(), indent=1) + "\n")
    tmp = e.temporal
    t = len(e.frame_indices)

    fig, axes = plt.subplots(2, t, figsize=(1.6 * t + 0.4, 3.9), squeeze=False)
    for i in range(t):
        axes[0, i].imshow(e.frames[i])
        axes[0, i].set_title(f"frame {e.frame_indices[i]}", fontsize=8)
        axes[1, i].imshow(_heat(e.frames[i], e.maps[i]))
        axes[1, i].set_title(f"occluded: {tmp['occluded'][i]:.2f}", fontsize=8)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("as sampled", fontsize=8)
    axes[1, 0].set_ylabel(f"Grad-CAM {e.layer}", fontsize=8)
    fig.suptitle(f"{e.model}: '{e.class_name}' p={e.probability:.2f}  (below each map: p with that "
                 "frame occluded)", fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["frames"], dpi=100)
    plt.close(fig)

    colour = np.array(class_colour(e.target)) / 255
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [max(t, 4), 4]})
    left.bar(range(t), tmp["occluded"], color=colour)
    left.axhline(tmp["original"], color="k", ls="--", lw=1)
    left.set_xticks(range(t), [str(i) for i in e.frame_indices], fontsize=8)
    left.set_xlabel("frame occluded (dashed: none)")
    left.set_ylabel("probability")
    left.set_ylim(0, 1.1)
    shuffled = tmp["shuffled"]
    bars = [tmp["original"], tmp["reversed"]] + ([float(np.mean(shuffled))] if shuffled else [])
    labels = ["in order", "reversed"] + ([f"shuffled\n(mean of {len(shuffled)})"] if shuffled else [])
    right.bar(range(len(bars)), bars, color=[colour, "0.45", "0.7"][: len(bars)])
    for i, v in enumerate(bars):
        right.text(i, v + 0.02, f"{v:.3f}", ha="center", fontsize=8)
    if shuffled:  # the range over the shuffles
        right.vlines(2, min(shuffled), max(shuffled), color="k", lw=1)
    right.set_xticks(range(len(bars)), labels, fontsize=8)
    right.set_ylim(0, 1.1)
    right.set_title("frame order", fontsize=9)
    change = round(tmp["reversed"] - tmp["original"], 3) + 0.0  # no "-0.000"
    fig.suptitle(f"{e.model}: p('{e.class_name}') with a frame occluded, and with the frames reordered "
                 f"(reversed: {change:+.3f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(paths["temporal"], dpi=100)
    plt.close(fig)

    s = e.frames.shape[1]
    out_h, out_w = legible_size(s, s, 240)
    writer = VideoWriter(paths["overlay"], out_w, out_h, e.rate)
    drawn = [draw_lines(np.asarray(Image.fromarray(_heat(e.frames[seg], e.maps[seg])).resize((out_w, out_h),
                                                                                           Image.BILINEAR)),
                        [f"{e.class_name}: {100 * e.probability:.1f}%", f"frame {e.frame_indices[seg]} ({seg + 1}/{t})"])
             for seg in range(t)]  # one picture per sampled frame, shown for its segment's source frames
    for i in range(max(e.num_frames, t)):
        writer.write(drawn[min(t - 1, i * t // max(e.num_frames, t))])  # the TSN segment of source frame i
    writer.close()
    return paths
