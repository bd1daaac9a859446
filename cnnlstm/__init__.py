"""cnnlstm: video understanding with CNN-LSTM models.

Letters used in shape comments across the package: B batch, T frames, C channels,
H/W height/width, D frame-feature size, K classes, L caption tokens.
"""
from .models import (
    FrameEncoder,
    ModelOutput,
    VideoModel,
    WeightsNotFoundError,
    create_encoder,
    create_model,
    list_backbones,
    list_models,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "list_backbones",
    "create_encoder",
    "FrameEncoder",
    "VideoModel",
    "ModelOutput",
    "WeightsNotFoundError",
]
