"""GDN and its baselines behind one registry."""

from gdn.models.eco import ECO
from gdn.models.i3d import I3DResNet
from gdn.models.layers import (
    CONV_MAKERS, GDM, TSM, ClipShapeError, Conv2Plus1d, FrameConv2d, NonLocal, TemporalShift, VideoConv3d, conv_maker,
    split_channels,
)
from gdn.models.registry import create_model, list_models, register_model
from gdn.models.resnet import VideoResNet
from gdn.models.weights import WeightsMismatchError, WeightsReport, load_weights

__all__ = [
    "CONV_MAKERS", "ECO", "GDM", "TSM", "ClipShapeError", "Conv2Plus1d", "FrameConv2d", "I3DResNet", "NonLocal",
    "TemporalShift", "VideoConv3d", "VideoResNet", "WeightsMismatchError", "WeightsReport", "conv_maker",
    "create_model", "list_models", "load_weights", "register_model", "split_channels",
]
