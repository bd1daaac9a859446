"""Caption text: tokenization, the word vocabulary, and the token targets of a video.

:func:`tokenize` follows what the COCO caption evaluation (pycocoevalcap's PTB tokenizer followed
by its punctuation filter) does to words, in pure Python (the original runs Stanford CoreNLP in
Java): lowercase, clitics split off (``don't`` -> ``do n't``, ``man's`` -> ``man 's``), brackets,
quotes and the punctuation ``. , ; : ! ? - -- ...`` dropped, hyphenated words and decimal numbers
kept whole, other symbols (``& $ % /``) kept as tokens. It is idempotent: tokenizing the joined
tokens gives the same tokens, so metrics can take raw or already tokenized captions.

Letters: B batch, L caption tokens.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)

_CLITIC = re.compile(r"n't\b|'(?:s|re|ve|ll|d|m)\b")
_TOKEN = re.compile(
    r"n't\b|'(?:s|re|ve|ll|d|m)\b"  # clitics (PTB splits them off the word)
    r"|\d+(?:[.,]\d+)+"  # 3.5, 1,000
    r"|\w+(?:-\w+)*"  # words, hyphenated words
    r"|[^\w\s]"  # any other symbol, one character at a time
)
_DROPPED = set("'\"`.,;:!?-()[]{}")  # tokens made only of these are removed (pycocoevalcap PUNCTUATIONS)


def tokenize(text: str) -> list[str]:
    """Lowercase words of ``text`` with punctuation removed, like the COCO evaluation tokenizer."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a string; got {type(text).__name__}")
    text = _CLITIC.sub(lambda m: " " + m.group(0), text.lower())  # "don't" -> "do n't"
    return [t for t in _TOKEN.findall(text) if not set(t) <= _DROPPED]


class Vocabulary:
    """Words <-> ids. ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3, then the words."""

    pad, bos, eos, unk = 0, 1, 2, 3

    def __init__(self, tokens: Sequence[str], *, min_freq: int = 1):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the specials {list(SPECIALS)}; got {tokens[:4]}")
        doubled = [t for t, n in Counter(tokens).items() if n > 1]
        if doubled:
            raise ValueError(f"vocabulary tokens must be unique; repeated: {doubled[:5]}")
        self.tokens = tokens
        self.min_freq = min_freq
        self._index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, captions: Iterable[str], *, min_freq: int = 1, max_size: int | None = None) -> "Vocabulary":
        """Words of ``captions`` seen at least ``min_freq`` times, most frequent first (ties
        alphabetical); ``max_size`` caps the total size, the 4 specials included."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1; got {min_freq}")
        if max_size is not None and max_size < len(SPECIALS):
            raise ValueError(f"max_size must be >= {len(SPECIALS)} (the specials); got {max_size}")
        counts = Counter(word for caption in captions for word in tokenize(caption))
        words = sorted((w for w, n in counts.items() if n >= min_freq and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *words], min_freq=min_freq)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def encode(self, text: str, *, bos: bool = True, eos: bool = True) -> list[int]:
        """Token ids of ``text`` (unknown words -> ``<unk>``), with ``<bos>``/``<eos>`` around."""
        ids = [self._index.get(word, self.unk) for word in tokenize(text)]
        return ([self.bos] if bos else []) + ids + ([self.eos] if eos else [])

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """Words of ``ids`` up to the first ``<eos>``, specials dropped, joined by spaces."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"token id {i} is outside this vocabulary of {len(self.tokens)} tokens")
            if i == self.eos:
                break
            if i >= len(SPECIALS):
                words.append(self.tokens[i])
        return " ".join(words)

    def save(self, path: str | os.PathLike) -> str:
        """Write ``{"tokens": [...], "min_freq": n}`` as JSON; returns the path."""
        from ...engine.io import atomic_write_json

        return str(atomic_write_json(path, {"tokens": self.tokens, "min_freq": self.min_freq}, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not a vocabulary JSON file ({exc})") from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{path}: expected a JSON object with a list of strings under 'tokens' (written by "
                             "Vocabulary.save)")
        return cls(tokens, min_freq=int(data.get("min_freq", 1)))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, min_freq={self.min_freq})"


class CaptionTargets:
    """Token ids (L,) ``<bos> ... <eos>`` of one caption of a video: a random one per (seed, epoch,
    video) when ``random``, else the first."""

    def __init__(self, captions: dict[str, list[str]], vocab: Vocabulary, *, random: bool):
        self.captions, self.vocab, self.random = captions, vocab, random

    def __call__(self, item, frame_indices, fps, generator=None) -> Tensor:
        options = self.captions[item.path]
        k = int(torch.randint(len(options), (1,), generator=generator)) if self.random and len(options) > 1 else 0
        return torch.tensor(self.vocab.encode(options[k]), dtype=torch.long)  # (L,)


__all__ = ["tokenize", "Vocabulary", "CaptionTargets", "SPECIALS"]
