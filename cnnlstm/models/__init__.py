"""Models: frame encoders, temporal models, heads and the registry."""
from . import baselines as _baselines  # noqa: F401  (registers the baselines)
from . import caption as _caption  # noqa: F401  (registers caption_lstm)
from . import label_decoder as _label_decoder  # noqa: F401  (registers the autoregressive labeller)
from . import zoo as _zoo  # noqa: F401  (registers the models)
from ._registry import create_model, get_model_builder, list_models, model_recipe, register_model
from .backbones import FrameEncoder, create_encoder, list_backbones
from .video_model import ModelOutput, VideoModel
from .weights import WeightsNotFoundError

__all__ = [
    "create_model",
    "get_model_builder",
    "list_models",
    "register_model",
    "model_recipe",
    "create_encoder",
    "list_backbones",
    "FrameEncoder",
    "VideoModel",
    "ModelOutput",
    "WeightsNotFoundError",
]
