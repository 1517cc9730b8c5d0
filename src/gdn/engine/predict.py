"""Predict the classes of arbitrary videos and frame folders with a trained checkpoint.

The clips go through exactly the evaluation path of `gdn test`: the inputs are wrapped as a
one-off annotation list (label -1) and read by `gdn.data.datasets.VideoDataset` with the
checkpoint's frames, size, short side and sampling, so decoding, segment sampling and the eval
transforms are the dataset's own. `--clips N` averages the softmax over N temporal views.

`write_overlay` re-encodes a whole input (every frame) with the top predictions drawn on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from gdn.data.annotations import Annotations, Entry
from gdn.data.datasets import VideoDataset
from gdn.data.decode import VIDEO_SUFFIXES, DecodeError, count_frames, read_frames
from gdn.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from gdn.engine.distributed import resolve_device
from gdn.engine.evaluate import score_clips
from gdn.models.fast import compile_for_inference

log = logging.getLogger(__name__)

__all__ = ["VIDEO_SUFFIXES", "Prediction", "Predictor", "expand_inputs", "read_all_frames", "write_overlay"]


@dataclass
class Prediction:
    path: str
    topk: list[tuple[int, str, float]]   # (class index, class name, probability), best first
    scores: np.ndarray                    # (K,) softmax, averaged over views

    def to_dict(self) -> dict:
        return {"path": self.path,
                "predictions": [{"index": i, "class": c, "probability": p} for i, c, p in self.topk]}


def expand_inputs(paths: list[str]) -> list[Path]:
    """Command-line inputs -> videos and frame folders.

    A folder holding JPEG frames is one input; a folder without frames but with video files
    stands for its videos (sorted); anything else is passed through so that reading it reports
    the problem for that path.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not any(f.suffix.lower() in (".jpg", ".jpeg") for f in p.iterdir()):
            videos = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            if videos:
                out.extend(videos)
                continue
        out.append(p)
    return out


class Predictor:
    """A checkpoint's model plus its evaluation data settings.

    Args:
        checkpoint: path of a `gdn train` checkpoint (loaded safely).
        device: "auto" | "cpu" | "cuda" | "cuda:N".
        clips: temporal views averaged per video (1: the paper's centre-frame protocol).
        compile: torch.compile the model.
        amp: autocast mode for inference ("auto": bf16 on CUDA).
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "auto", clips: int = 1,
                 compile: bool = False, amp: str = "auto") -> None:
        model, self.cfg, self.classes = build_model_from_checkpoint(load_checkpoint(checkpoint))
        self.device = torch.device(resolve_device(device))
        self.model = model.to(self.device).eval()
        if compile:
            self.model = compile_for_inference(self.model)
        self.clips, self.amp = clips, amp

    def dataset(self, paths: list[Path]) -> VideoDataset:
        """The inputs as an evaluation dataset (label -1) with the checkpoint's data settings."""
        entries = [Entry(id=str(p), path=p, label=-1, line=i + 1, frames=p.is_dir())
                   for i, p in enumerate(paths)]
        ann = Annotations(name="predict", split="inputs", file=Path("<command line>"),
                          classes=list(self.classes), entries=entries)
        d = self.cfg.data
        return VideoDataset(ann, frames=d.frames, train=False, size=d.size, short_side=d.short_side,
                            clips=self.clips, crops=1, sampling=d.sampling)

    @torch.no_grad()
    def predict_item(self, ds: VideoDataset, index: int, topk: int = 5) -> Prediction:
        """Prediction for item `index` of `self.dataset(...)`; DecodeError names the file."""
        path = ds.entries[index].path
        try:
            item = ds[index]
        except DecodeError as e:  # the dataset appends its split and index: keep the decoder's message
            raise DecodeError(str(e.__cause__ or e)) from None
        except OSError as e:
            raise DecodeError(f"{path}: cannot be read ({e})") from None
        probs = score_clips(self.model, item["clip"].unsqueeze(0), self.device, self.amp)[0].cpu()
        values, classes = probs.topk(min(topk, len(self.classes)))
        top = [(int(c), self.classes[int(c)], float(v)) for v, c in zip(values, classes)]
        return Prediction(path=str(path), topk=top, scores=probs.numpy())


def read_all_frames(path: str | Path) -> tuple[np.ndarray, Fraction]:
    """Every frame of a video or frame folder as uint8 (N, H, W, 3), and its frame rate
    (the stream's average rate; 12 fps, Something-Something's, for frame folders)."""
    path = Path(path)
    frames = np.stack(read_frames(path, range(count_frames(path))))
    if path.is_dir():
        return frames, Fraction(12)
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate or Fraction(12)
    return frames, Fraction(rate)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def draw_predictions(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """The frame with `lines` drawn top-left on a translucent dark band (Pillow ImageDraw)."""
    image = Image.fromarray(frame).convert("RGBA")
    size = max(10, image.height // 18)
    font = _font(size)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    pad, step = size // 3, int(size * 1.25)
    width = max(draw.textlength(line, font=font) for line in lines)
    draw.rectangle((0, 0, width + 2 * pad, pad * 2 + step * len(lines)), fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * step), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(image, overlay).convert("RGB"))


def write_overlay(src: str | Path, dst: str | Path, prediction: Prediction, *, min_short_side: int = 240) -> int:
    """Re-encode every frame of `src` into `dst` with the top predictions drawn on it.

    Small inputs are upscaled to a short side of `min_short_side` so the text stays legible;
    H.264 (yuv420p) when this FFmpeg build has an encoder for it, else MPEG-4 Part 2.
    Returns the number of frames written.
    """
    frames, rate = read_all_frames(src)
    h, w = frames.shape[1:3]
    scale = max(1.0, min_short_side / min(h, w))
    out_w, out_h = (int(round(w * scale / 2)) * 2, int(round(h * scale / 2)) * 2)  # yuv420p: even sides
    lines = [f"{c}: {100 * p:.1f}%" for _, c, p in prediction.topk]
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(dst), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        for frame in frames:
            image = Image.fromarray(frame)
            if image.size != (out_w, out_h):
                image = image.resize((out_w, out_h), Image.BILINEAR)
            drawn = draw_predictions(np.asarray(image), lines)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(drawn, format="rgb24")))
        container.mux(stream.encode())
    log.info("wrote %s (%d frames, %s)", dst, len(frames), codec)
    return len(frames)
