"""Data: annotations, decoding, clip sampling, transforms, datasets and the synthetic dataset."""

from gdn.data.annotations import AnnotationError, Annotations, read_annotations
from gdn.data.datasets import TooManyBadSamples, VideoDataset, build_dataset, check_bad_fraction
from gdn.data.loader import EvalSampler, TrainSampler, build_loader, set_epoch

__all__ = [
    "AnnotationError", "Annotations", "read_annotations",
    "TooManyBadSamples", "VideoDataset", "build_dataset", "check_bad_fraction",
    "EvalSampler", "TrainSampler", "build_loader", "set_epoch",
]
