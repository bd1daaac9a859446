"""Video captioning: CNN frame encoder, LSTM over frames, LSTM decoder with attention over time.

Letters: B batch, T frames, C channels, H/W height/width, D frame-feature size, M memory size
(one attention key per frame), S decoder hidden size, E word-embedding size, A attention size,
L caption tokens, V vocabulary size.

The video is encoded once: clips (B, T, C, H, W) or cached features (B, T, D) -> memory (B, T, M)
and mask (B, T) (True on real frames). The decoder is an ``LSTMCell`` fed [word embedding,
context]; at every step it attends over the memory with the previous hidden state as query
(additive, Bahdanau, or multiplicative, Luong "general"), padding gets exactly zero weight, and
[hidden, context] -> vocabulary logits. ``forward`` runs it with teacher forcing (or scheduled
sampling); greedy and beam search live in :mod:`cnnlstm.tasks.caption.generate` and use its
``encode`` / ``init_decoder`` / ``decode_step`` API.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._registry import register_model
from ._seq import check_lengths, lengths_to_mask, masked_mean
from .attention import AdditiveAttention, GeneralAttention
from .backbones import FrameEncoder, create_encoder
from .dropout import Dropout
from .temporal import LSTMEncoder
from .video_model import ModelOutput

# the decoder state: (h (B, S), c (B, S), keys (B, T, A)): the LSTMCell state and the memory
# projected once per video for the attention. Every entry is batch-first, so a search can reorder
# or repeat it with ``index_select(0, ...)`` / ``repeat_interleave(k, 0)``.
State = tuple[Tensor, Tensor, Tensor]
ATTENTIONS = ("bahdanau", "luong")


class CaptionLSTM(nn.Module):
    """Encoder-decoder video captioner; ``forward`` returns logits (B, L, V) and attention (B, L, T)."""

    task = "caption"
    per_frame = False
    streamable = False

    def __init__(self, *, encoder: FrameEncoder, vocab_size: int, hidden_size: int = 256, embed_dim: int = 128,
                 num_layers: int = 1, dropout: float = 0.1, encoder_lstm: bool = True, attention: str = "bahdanau"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {list(ATTENTIONS)}; got {attention!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.encoder = encoder
        D = encoder.num_features
        if encoder_lstm:  # bidirectional: each frame's key sees the whole clip, in order
            self.temporal = LSTMEncoder(D, hidden_size, num_layers=num_layers, dropout=dropout, bidirectional=True)
            memory_size = self.temporal.out_features
        else:  # frame features alone: attention is then blind to frame order
            self.temporal = nn.Sequential(nn.Linear(D, hidden_size), nn.Tanh())
            memory_size = hidden_size
        self.memory_size = memory_size
        self.hidden_size = hidden_size
        self.embed_dim = embed_dim
        self.init_h = nn.Linear(memory_size, hidden_size)
        self.init_c = nn.Linear(memory_size, hidden_size)
        if attention == "bahdanau":
            self.attention = AdditiveAttention(hidden_size, memory_size, hidden_size)
        else:
            self.attention = GeneralAttention(hidden_size, memory_size)
        self.cell = nn.LSTMCell(embed_dim + memory_size, hidden_size)
        self.dropout = Dropout(dropout)
        self.reset_head(vocab_size)

    @property
    def num_features(self) -> int:
        """D, the size of the per-frame features that ``forward`` also accepts."""
        return self.encoder.num_features

    @property
    def num_classes(self) -> int:
        """V, the vocabulary size."""
        return self.out.out_features

    def reset_head(self, vocab_size: int) -> None:
        """New word embedding and output layer for a vocabulary of ``vocab_size`` tokens."""
        if vocab_size < 5:
            raise ValueError("vocab_size (num_classes) must be >= 5: <pad> <bos> <eos> <unk> and a word; got "
                             f"{vocab_size}")
        ref = self.init_h.weight
        self.embedding = nn.Embedding(vocab_size, self.embed_dim, padding_idx=0).to(ref.device, ref.dtype)
        self.out = nn.Linear(self.hidden_size + self.memory_size, vocab_size).to(ref.device, ref.dtype)

    # --- the video ------------------------------------------------------------------------------
    def encode(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Clips (B, T, C, H, W) or features (B, T, D) -> memory (B, T, M), mask (B, T) bool."""
        if x.dim() not in (3, 5):
            raise ValueError(
                f"expected clips (B, T, C, H, W) or frame features (B, T, D={self.num_features}); "
                f"got shape {tuple(x.shape)}"
            )
        B, T = x.shape[:2]
        lengths = check_lengths(lengths, B, T, x.device)
        if x.dim() == 5:
            x, _ = self.encoder(x, lengths)  # (B, T, D), the CNN folded over B*T real frames
        elif x.shape[-1] != self.num_features:
            raise ValueError(f"features must have D={self.num_features} (the encoder's output size); got {x.shape[-1]}")
        if isinstance(self.temporal, LSTMEncoder):
            memory = self.temporal(x, lengths).sequence  # (B, T, M)
        else:
            memory = self.temporal(x)  # (B, T, M)
        if lengths is not None:
            mask = lengths_to_mask(lengths, T)  # (B, T)
        else:
            mask = torch.ones(B, T, dtype=torch.bool, device=x.device)
        return memory, mask

    # --- the decoder ----------------------------------------------------------------------------
    def init_decoder(self, memory: Tensor, mask: Tensor) -> State:
        """Initial state from the mean of the memory over real frames."""
        mean = masked_mean(memory, mask)  # (B, M)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), self.attention.keys(memory)

    def decode_step(self, tokens: Tensor, state: State, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, State]:
        """Previous tokens (B,) -> logits (B, V) for the next token, attention (B, T), new state."""
        h, c, keys = state
        scores = self.attention(h, keys).masked_fill(~mask, float("-inf"))  # (B, T)
        weights = torch.softmax(scores, dim=1)  # (B, T), exactly 0 on padding
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, M)
        inputs = torch.cat([self.dropout(self.embedding(tokens)), context], dim=-1)  # (B, E + M)
        h, c = self.cell(inputs, (h, c))  # (B, S) each
        logits = self.out(self.dropout(torch.cat([h, context], dim=-1)))  # (B, V)
        return logits, weights, (h, c, keys)

    def forward(self, x: Tensor, lengths: Tensor | None = None, *, captions: Tensor,
                teacher_forcing: float = 1.0) -> ModelOutput:
        """x: clips (B, T, C, H, W) or features (B, T, D); lengths (B,); captions (B, L) the decoder
        inputs (``<bos>`` first, padded with 0). ``teacher_forcing`` < 1 is scheduled sampling:
        at each step each sample gets its own previous argmax with probability 1 - teacher_forcing.

        Returns logits (B, L, V) (step l predicts token l + 1) and attention (B, L, T)."""
        if not torch.is_tensor(captions) or captions.dim() != 2 or captions.dtype != torch.long:
            got = f"{captions.dtype} {tuple(captions.shape)}" if torch.is_tensor(captions) else type(captions).__name__
            raise ValueError(f"captions must be a LongTensor (B, L) of decoder input tokens; got {got}")
        if captions.shape[0] != x.shape[0] or captions.shape[1] < 1:
            raise ValueError(f"captions must be (B={x.shape[0]}, L >= 1) like the videos; got {tuple(captions.shape)}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1]; got {teacher_forcing}")
        lo, hi = int(captions.min()), int(captions.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"caption token ids must be in [0, {self.num_classes}) (the vocabulary); got min {lo}, "
                             f"max {hi}")
        memory, mask = self.encode(x, lengths)  # (B, T, M), (B, T)
        state = self.init_decoder(memory, mask)
        tokens = captions[:, 0]  # (B,)
        all_logits, all_weights = [], []
        for step in range(captions.shape[1]):
            if step > 0:
                tokens = captions[:, step]  # (B,)
                if teacher_forcing < 1.0:
                    own = all_logits[-1].detach().argmax(-1)  # (B,)
                    use_own = torch.rand(tokens.shape, device=tokens.device) >= teacher_forcing  # (B,)
                    tokens = torch.where(use_own, own, tokens)
            logits, weights, state = self.decode_step(tokens, state, memory, mask)  # (B, V), (B, T)
            all_logits.append(logits)
            all_weights.append(weights)
        return ModelOutput(torch.stack(all_logits, 1), torch.stack(all_weights, 1))  # (B, L, V), (B, L, T)


@register_model(recipe="caption")
def caption_lstm(num_classes: int, *, backbone: str = "resnet18", weights=None, pool: str | None = None,
                 hidden_size: int = 256,
                 embed_dim: int = 128, num_layers: int = 1, dropout: float = 0.1, encoder_lstm: bool = True,
                 attention: str = "bahdanau") -> CaptionLSTM:
    """CNN -> bidirectional LSTM over frames -> LSTM decoder with attention over frames; generates
    captions (``num_classes`` = vocabulary size). ``encoder_lstm=False`` attends over frame features
    directly (blind to frame order); ``attention="luong"`` uses multiplicative attention."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    return CaptionLSTM(encoder=encoder, vocab_size=num_classes, hidden_size=hidden_size, embed_dim=embed_dim,
                       num_layers=num_layers, dropout=dropout, encoder_lstm=encoder_lstm, attention=attention)


__all__ = ["CaptionLSTM", "AdditiveAttention", "GeneralAttention", "caption_lstm"]
