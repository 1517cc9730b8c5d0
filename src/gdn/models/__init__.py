"""GDN and its baselines behind one registry."""

from gdn.models.layers import (
    CONV_MAKERS, GDM, TSM, Conv2Plus1d, FrameConv2d, TemporalShift, VideoConv3d, conv_maker, split_channels,
)
from gdn.models.registry import create_model, list_models, register_model
from gdn.models.resnet import VideoResNet
from gdn.models.weights import WeightsMismatchError, WeightsReport, load_weights

__all__ = [
    "CONV_MAKERS", "GDM", "TSM", "Conv2Plus1d", "FrameConv2d", "TemporalShift", "VideoConv3d", "VideoResNet",
    "WeightsMismatchError", "WeightsReport", "conv_maker", "create_model", "list_models", "load_weights",
    "register_model", "split_channels",
]
