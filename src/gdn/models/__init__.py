"""GDN and its baselines behind one registry."""

from gdn.models.layers import GDM, ConvMaker, TemporalShift, split_channels
from gdn.models.registry import create_model, list_models, register_model
from gdn.models.resnet import VideoResNet

__all__ = [
    "GDM", "ConvMaker", "TemporalShift", "VideoResNet", "create_model", "list_models",
    "register_model", "split_channels",
]
