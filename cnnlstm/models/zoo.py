"""The registered models, one small builder each. Defaults follow the seed chapter's classes.

Every builder takes ``num_classes``, ``backbone`` (see ``list_backbones()``), ``weights``
(None = random init, "imagenet" = torchvision's ImageNet weights, downloaded into the torch cache
on first use, or a local file) and ``pool`` ("avg", "grid" = 2 x 2 cells that keep coarse
position, "attention" = spatial attention pooling; None = the backbone's default: avg, grid for
``test_tiny``).
"""
from __future__ import annotations

from ._registry import register_model
from .backbones import create_encoder
from .heads import ClassifierHead
from .pools import AttentionPool, FinalStatePool, MeanPool
from .temporal import Identity, LSTMEncoder, ResidualLSTMStack, SelfAttentionLSTM
from .video_model import VideoModel

DEFAULT_BACKBONE = "resnet18"


@register_model(recipe="lstm")
def cnn_lstm(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
             hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.5,
             bidirectional: bool = False, feature_diff: bool = False) -> VideoModel:
    """CNN -> stacked LSTM -> final hidden state -> dropout + linear (seed: CNNLSTM). ``feature_diff``:
    the LSTM also reads each frame's feature change (:class:`~cnnlstm.models.temporal.LSTMEncoder`)."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = LSTMEncoder(encoder.num_features, hidden_size, num_layers=num_layers, dropout=dropout,
                           bidirectional=bidirectional, feature_diff=feature_diff)
    head = ClassifierHead(temporal.out_features, num_classes, dropout=dropout)
    return VideoModel(encoder=encoder, temporal=temporal, pool=FinalStatePool(), head=head)


@register_model(recipe="lstm")
def bi_cnn_lstm(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.3,
                head_dropout: float = 0.5, feature_diff: bool = False) -> VideoModel:
    """CNN -> 2-layer bidirectional LSTM -> both final states -> MLP head (seed: BiCNNLSTM)."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = LSTMEncoder(encoder.num_features, hidden_size, num_layers=num_layers, dropout=dropout,
                           bidirectional=True, feature_diff=feature_diff)
    head = ClassifierHead(temporal.out_features, num_classes, dropout=head_dropout, hidden=hidden_size)
    return VideoModel(encoder=encoder, temporal=temporal, pool=FinalStatePool(), head=head)


@register_model(recipe="attention")
def cnn_lstm_attention(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                       hidden_size: int = 512, num_layers: int = 2, attention_size: int = 128,
                       bidirectional: bool = True, feature_diff: bool = False) -> VideoModel:
    """CNN -> bidirectional LSTM -> temporal attention -> linear; returns the attention weights
    (seed: CNNLSTMAttention). ``bidirectional=False`` makes it causal and streamable."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = LSTMEncoder(encoder.num_features, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                           feature_diff=feature_diff)
    head = ClassifierHead(temporal.out_features, num_classes)
    return VideoModel(encoder=encoder, temporal=temporal, pool=AttentionPool(temporal.out_features, attention_size),
                      head=head)


@register_model(recipe="attention")
def self_attention_lstm(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                        hidden_size: int = 512, num_heads: int = 8, dropout: float = 0.0) -> VideoModel:
    """CNN -> LSTM -> self-attention + residual + LayerNorm -> last real frame's output -> linear
    (seed: SelfAttentionLSTM plus a classification head). The last output holds the LSTM's final
    state and attends over every frame; the masked mean over time, used before, learned order slowly
    (pairs8: 52.1% and 58.9% against 78.6% and 79.2% on 192 test videos, docs/training.md)."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = SelfAttentionLSTM(encoder.num_features, hidden_size, num_heads=num_heads, dropout=dropout)
    return VideoModel(encoder=encoder, temporal=temporal, pool=FinalStatePool(),
                      head=ClassifierHead(hidden_size, num_classes))


@register_model(recipe="lstm")
def deep_cnn_lstm(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                  hidden_size: int = 512, num_layers: int = 4, dropout: float = 0.3) -> VideoModel:
    """CNN -> projection -> residual LSTM stack with LayerNorm -> last real frame's output -> linear
    (seed: DeepCNNLSTM, which averaged the outputs over time: through the residual path that mean is
    mostly an order-blind mean of frame features; on pairs8 it reached 45.8% where the last output
    reaches 65.6%, docs/training.md)."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = ResidualLSTMStack(encoder.num_features, hidden_size, num_layers=num_layers, dropout=dropout)
    return VideoModel(encoder=encoder, temporal=temporal, pool=FinalStatePool(),
                      head=ClassifierHead(hidden_size, num_classes))


@register_model(recipe="lstm")
def seq2seq_cnn_lstm(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                     hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.3,
                     bidirectional: bool = False, feature_diff: bool = False) -> VideoModel:
    """CNN -> LSTM -> a label for every frame: logits (B, T, K) (seed: Seq2SeqCNNLSTM).
    ``bidirectional=True`` is for offline use (not streamable); ``feature_diff``: the LSTM also reads
    each frame's feature change (on by default for ``--task segment``, see ``TrainConfig.feature_diff``)."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = LSTMEncoder(encoder.num_features, hidden_size, num_layers=num_layers, dropout=dropout,
                           bidirectional=bidirectional, feature_diff=feature_diff)
    return VideoModel(encoder=encoder, temporal=temporal, pool=None,
                      head=ClassifierHead(temporal.out_features, num_classes))


@register_model(recipe="lstm")
def spatial_attention_cnn_lstm(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None,
                               hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.5) -> VideoModel:
    """CNN with spatial attention pooling (seed: SpatialAttentionCNN, for any backbone) -> LSTM;
    returns the spatial attention maps."""
    return cnn_lstm(num_classes=num_classes, backbone=backbone, weights=weights, pool="attention",
                    hidden_size=hidden_size, num_layers=num_layers, dropout=dropout)


@register_model(recipe="lstm")
def mean_pool(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
              dropout: float = 0.0) -> VideoModel:
    """Order-blind baseline (TSN-style): mean of frame features -> linear. Blind to frame order."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    head = ClassifierHead(encoder.num_features, num_classes, dropout=dropout)
    return VideoModel(encoder=encoder, temporal=Identity(encoder.num_features), pool=MeanPool(), head=head)
