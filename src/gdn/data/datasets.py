"""Video datasets: annotations + decoding + clip sampling + transforms, chosen by name.

``build_dataset("ssv1" | "ssv2" | "list" | "folder", root, split, ...)`` returns a :class:`VideoDataset`.
An item is ``{"clip", "label", "index", "num_skipped"}``; see :meth:`VideoDataset.__getitem__`.

Determinism: every random choice for a sample (segment offsets, crop, scale, flip) comes from
``np.random.default_rng([seed, epoch, index])``. The loader's sampler hands ``(index, epoch)``
keys to the dataset, so a sample is the same whatever worker loads it and however many workers
there are, and differs between epochs.

Bad files: in training a missing, empty or corrupt video/JPEG is logged and replaced by the next
readable sample (index + 1, + 2, ... modulo the length; deterministic), and ``num_skipped`` says
how many were passed over; the training loop sums these and calls :func:`check_bad_fraction`.
In evaluation a bad file raises :class:`~gdn.data.decode.DecodeError` naming it: substituting
another video would silently change the reported accuracy.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from gdn.data.annotations import Annotations, Entry, read_annotations
from gdn.data.augment import RandAugment
from gdn.data.decode import DecodeError, FrameCountCache, count_frames_cached, read_frames
from gdn.data.sampling import build_sampler
from gdn.data.transforms import EvalTransform, TrainTransform, flip_label_map, stack_frames_last
from gdn.errors import GdnError

log = logging.getLogger(__name__)

__all__ = ["VideoDataset", "build_dataset", "check_bad_fraction", "TooManyBadSamples"]


class TooManyBadSamples(GdnError, RuntimeError):
    """More unreadable training samples than ``max_bad_fraction`` allows (the run fails: exit 1)."""

    exit_code = 1


def check_bad_fraction(num_skipped: int, num_seen: int, max_fraction: float, *,
                       min_seen: int = 200) -> None:
    """Raise :class:`TooManyBadSamples` when ``num_skipped / num_seen > max_fraction``.

    ``num_seen`` counts the samples delivered (sum of batch sizes) and ``num_skipped`` the bad
    files passed over to deliver them (sum of the items' ``num_skipped``). The ratio is judged
    only once ``num_seen >= min_seen`` so that one bad file in the first batch does not stop a
    run; any skip with ``max_fraction == 0`` is judged at once.
    """
    if num_skipped == 0 or (num_seen < min_seen and max_fraction > 0):
        return
    fraction = num_skipped / max(num_seen, 1)
    if fraction > max_fraction:
        raise TooManyBadSamples(
            f"{num_skipped} unreadable videos were skipped for {num_seen} samples "
            f"({100 * fraction:.2f}% > max_bad_fraction {100 * max_fraction:.2f}%); the warnings "
            "above name the files. Run `gdn check-data` to list all bad entries, fix or remove "
            "them, or raise max_bad_fraction."
        )


class VideoDataset(Dataset):
    """Clips of the videos listed in ``annotations``.

    Args:
        annotations: the split to load (problems must already be resolved).
        frames: frames per clip (T).
        train: training augmentation and skipping of bad files, or evaluation views.
        size: crop side; ``short_side`` defaults to ``round(size * 256 / 224)``.
        clips, crops: evaluation views, ``clips`` temporal x ``crops`` (1 or 3) spatial.
        sampling: ``"tsn"`` (segments) or ``"dense"`` (``stride`` apart).
        protocol: whose frame indices and evaluation pixels: ``"gdn"`` (its own), ``"tsm"`` or
            ``"mmaction"`` (the peers', exactly; docs/protocols.md). Training follows the
            protocol's sampling and keeps gdn's augmentation.
        full_res: evaluation crops of ``short_side`` instead of ``size`` (TSM's --full_res).
        flip: ``"label"`` (label-aware), ``"naive"`` (labels kept) or ``"none"`` (training only).
        frame_counts: remembers the frame counts of videos and frame folders (a dict or a
            FrameCountCache).
        randaugment, randaugment_magnitude: RandAugment ops per training clip (0: none) and
            their magnitude (0-10), the same for every frame (:mod:`gdn.data.augment`).
    """

    def __init__(self, annotations: Annotations, *, frames: int = 8, train: bool = False,
                 size: int = 224, short_side: int | None = None, clips: int = 1, crops: int = 1,
                 sampling: str = "tsn", stride: int = 2, protocol: str = "gdn", full_res: bool = False,
                 flip: str = "label", seed: int = 0, max_bad_fraction: float = 0.01,
                 frame_counts: dict | FrameCountCache | None = None, randaugment: int = 0,
                 randaugment_magnitude: int = 7) -> None:
        annotations.raise_for_problems()
        if not annotations.entries:
            raise ValueError(f"{annotations.file}: no videos listed; check the file and --split")
        if train and (clips > 1 or crops > 1):
            raise ValueError("clips and crops are evaluation views; use clips=1, crops=1 with train=True")
        self.name, self.split, self.train = annotations.name, annotations.split, train
        self.annotations = annotations
        self.classes = list(annotations.classes)
        self.entries: list[Entry] = list(annotations.entries)
        self.video_ids = [e.id for e in self.entries]
        self.labels = [e.label for e in self.entries]
        self.frames, self.clips, self.crops = frames, clips, crops
        self.seed, self.max_bad_fraction = seed, max_bad_fraction
        self.protocol = protocol
        self.sampler = build_sampler(sampling, frames, train=train, clips=clips, stride=stride,
                                     protocol=protocol)
        self.flip_map = flip_label_map(self.classes)
        if train:
            augment = RandAugment(randaugment, randaugment_magnitude) if randaugment else None
            self.transform = TrainTransform(size, short_side, flip=flip, flip_map=self.flip_map, augment=augment)
        else:
            self.transform = EvalTransform(size, short_side, crops=crops, protocol=protocol,
                                           full_res=full_res)
        self.frame_counts = frame_counts if frame_counts is not None else {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_views(self) -> int:
        return self.clips * self.crops

    def read_frames(self, index: int, rng: np.random.Generator | None = None
                    ) -> list[list[np.ndarray]]:
        """The sampled frames of video ``index``, untransformed and not stacked: ``clips`` lists
        of ``T`` uint8 ``(H, W, 3)`` arrays, the decoded frames themselves (nothing is copied
        here: the transforms' crop copies only the pixels it keeps).

        Only the sampled frames are decoded. Raises DecodeError for unreadable files.
        """
        path = self.entries[index].path
        idx = self.sampler(count_frames_cached(path, self.frame_counts), rng)  # (clips, T)
        frames = read_frames(path, idx.ravel().tolist())
        t = idx.shape[1]
        return [frames[k : k + t] for k in range(0, len(frames), t)]

    def read_clips(self, index: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        """:meth:`read_frames` stacked: uint8 ``(clips, C, T, H, W)``, frames-last in memory."""
        x = torch.from_numpy(np.stack(self.read_frames(index, rng)))  # (clips, T, H, W, 3)
        return x.permute(0, 4, 1, 2, 3)  # (clips, C, T, H, W)

    def _item(self, index: int, epoch: int) -> dict:
        rng = np.random.default_rng([self.seed, epoch, index])
        clips = self.read_frames(index, rng)
        label = self.labels[index]
        if self.train:
            clip, label = self.transform(clips[0], label, rng)  # (C, T, S, S)
        else:
            views = stack_frames_last([self.transform(c) for c in clips], torch.cat)  # (clips*crops, C, T, S, S)
            clip = views[0] if len(views) == 1 else views
        return {"clip": clip, "label": label, "index": index}

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` is an index or ``(index, epoch)``. Returns

        - ``clip``: uint8 pixels ``(C, T, H, W)``, or ``(V, C, T, H, W)`` for
          ``V = clips * crops > 1`` evaluation views (clip-major: clip 0 crop 0, clip 0 crop 1...),
          frames-last in memory; :func:`gdn.data.transforms.model_input` normalises a batch on
          the device (the engine does);
        - ``label``: int, -1 when unknown (test splits), after label-aware flipping;
        - ``index``: the dataset index actually returned (differs from the key after a skip);
        - ``num_skipped``: bad files passed over to return this item (training only).
        """
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        index, epoch = int(index), int(epoch)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        if not self.train:
            try:
                item = self._item(index, epoch)
            except DecodeError as e:
                raise DecodeError(f"{e} [{self._origin(index)}]") from e
            item["num_skipped"] = 0
            return item
        for skipped in range(len(self)):
            j = (index + skipped) % len(self)
            try:
                item = self._item(j, epoch)
            except (DecodeError, OSError) as e:
                log.warning("skipping unreadable training video: %s [%s]", e, self._origin(j))
                continue
            item["num_skipped"] = skipped
            return item
        raise DecodeError(f"no readable video in the {self.name} {self.split} split "
                          f"({len(self)} tried); run `gdn check-data`")

    def _origin(self, index: int) -> str:
        """Where video `index` comes from, for an error about it: the split, the annotation file
        and line, and, when its path does not exist, what to check."""
        entry = self.entries[index]
        text = f"{self.name} {self.split} video {entry.id}, {self.annotations.where(entry)}"
        if not entry.path.exists():
            text += "; check the data root and the annotation file"
        return text

    def count_video_frames(self) -> int:
        """Count the frames of every video file once, here, so that DataLoader workers (which
        keep their counts in memory only) never count the same WebM again; saves a
        FrameCountCache. Unreadable files are left for `__getitem__` to skip or report.
        Returns the number of videos counted."""
        videos = [e.path for e in self.entries if not e.frames and not e.path.is_dir()]
        counted = 0
        for path in tqdm(videos, desc="counting frames", disable=not videos or not sys.stderr.isatty(),
                         leave=False):
            try:
                count_frames_cached(path, self.frame_counts)
                counted += 1
            except DecodeError:
                pass
        if isinstance(self.frame_counts, FrameCountCache):
            self.frame_counts.save()
        return counted

    def __repr__(self) -> str:
        return (f"VideoDataset({self.name}/{self.split}, {len(self)} videos, "
                f"{len(self.classes)} classes, train={self.train}, protocol={self.protocol}, {self.sampler}, "
                f"views={self.num_views})")


def build_dataset(name: str, root: str | Path, split: str, *, frames: int = 8,
                  train: bool = False, size: int = 224, short_side: int | None = None,
                  clips: int = 1, crops: int = 1, sampling: str = "tsn", stride: int = 2,
                  protocol: str = "gdn", full_res: bool = False,
                  flip: str = "label", label_order: str = "sorted",
                  list_file: str | Path | None = None, classes_file: str | Path | None = None,
                  frames_dir: str | Path | None = None, seed: int = 0,
                  max_bad_fraction: float = 0.01,
                  cache_dir: str | Path | None = None, randaugment: int = 0,
                  randaugment_magnitude: int = 7) -> VideoDataset:
    """Dataset ``name`` (``ssv1``, ``ssv2``, ``list``, ``folder``) split ``split`` under ``root``; the
    other arguments are :class:`VideoDataset`'s (``protocol``: ``"gdn"``, ``"tsm"`` or ``"mmaction"``).

    Annotation problems raise :class:`~gdn.data.annotations.AnnotationError` here, naming the
    file and line. ``cache_dir``: a folder whose ``frame-counts-<name>.json`` holds video frame
    counts, read here (``gdn check-data --cache-dir`` writes it); counts missing from it are taken
    in the workers and kept in memory only.
    """
    ann = read_annotations(name, root, split, label_order=label_order, frames_dir=frames_dir,
                           list_file=list_file, classes_file=classes_file)
    counts = None
    if cache_dir is not None:
        counts = FrameCountCache(Path(cache_dir) / f"frame-counts-{name}.json")
    ds = VideoDataset(ann, frames=frames, train=train, size=size, short_side=short_side,
                      clips=clips, crops=crops, sampling=sampling, stride=stride, protocol=protocol,
                      full_res=full_res, flip=flip, seed=seed, max_bad_fraction=max_bad_fraction,
                      frame_counts=counts, randaugment=randaugment, randaugment_magnitude=randaugment_magnitude)
    log.info("%r", ds)
    return ds
