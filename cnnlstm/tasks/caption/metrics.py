"""Caption metrics, computed as the COCO caption evaluation (pycocoevalcap) computes them.

Pure Python reimplementations, checked against pycocoevalcap to 1e-6 in the tests:

* :func:`bleu`: corpus BLEU-1..n of pycocoevalcap's ``Bleu`` (the "closest" reference length,
  ties to the shorter; clipped n-gram counts summed over the corpus; its 1e-15 / 1e-9 smoothing).
* :func:`cider_d`: pycocoevalcap's ``Cider``, i.e. CIDEr-D: TF-IDF n-gram vectors (n = 1..4)
  with document frequencies from the references of the evaluated set, clipped hypothesis
  weights, a Gaussian length penalty (sigma = 6), averaged over references and n, times 10.
  Like the original, it scores 0 for a set of one video (every n-gram then has idf 0).

Hypotheses and references are tokenized with :func:`cnnlstm.tasks.caption.text.tokenize` first (lowercase,
punctuation removed, as the COCO PTB tokenizer does); already tokenized text stays the same.
METEOR is not included: pycocoevalcap's needs Java and NLTK's needs the WordNet download, and
neither runs offline in this project. ROUGE-L and SPICE are not included either.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

from .text import tokenize

Ngrams = Counter  # (word, ...) -> count


def _ngrams(words: Sequence[str], n: int) -> Ngrams:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _check(hypotheses: Sequence[str],
           references: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[list[str]]]]:
    if isinstance(hypotheses, str) or any(not isinstance(h, str) for h in hypotheses):
        raise TypeError("hypotheses must be a list of strings, one caption per video")
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} reference lists; expected one each "
                         "per video")
    if not hypotheses:
        raise ValueError("no captions to score: hypotheses is empty")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs or any(not isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}] must be a non-empty list of strings (the reference captions of video "
                             f"{i})")
    return [tokenize(h) for h in hypotheses], [[tokenize(r) for r in refs] for refs in references]


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..``n`` (0..1) of one hypothesis per video against its references."""
    hyps, refs = _check(hypotheses, references)
    tiny, small = 1e-15, 1e-9
    correct, guess = [0] * n, [0] * n
    hyp_len = ref_len = 0
    for words, ref_words in zip(hyps, refs, strict=True):
        max_counts: dict[tuple, int] = {}
        for ref in ref_words:
            for gram, count in _ngrams(ref, n).items():
                max_counts[gram] = max(max_counts.get(gram, 0), count)
        hyp_len += len(words)
        ref_len += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]  # closest, ties: shorter
        for gram, count in _ngrams(words, n).items():
            correct[len(gram) - 1] += min(max_counts.get(gram, 0), count)
        for k in range(n):
            guess[k] += max(0, len(words) - k)
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (hyp_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D of the set (pycocoevalcap scale: x10, so good captions score above 1)."""
    hyps, refs = _check(hypotheses, references)
    ref_grams = [[_ngrams(r, n) for r in rs] for rs in refs]
    doc_freq: Counter = Counter()
    for grams in ref_grams:
        doc_freq.update(set().union(*grams))  # in how many videos' references each n-gram appears
    log_videos = math.log(len(hyps))

    def vector(grams: Ngrams) -> tuple[list[dict], list[float], int]:
        vec, norm = [defaultdict(float) for _ in range(n)], [0.0] * n
        for gram, tf in grams.items():
            k = len(gram) - 1
            vec[k][gram] = tf * (log_videos - math.log(max(1.0, doc_freq[gram])))
            norm[k] += vec[k][gram] ** 2
        # pycocoevalcap's "length" counts the bigrams (words - 1); kept for identical scores
        length = sum(tf for gram, tf in grams.items() if len(gram) == 2)
        return vec, [math.sqrt(x) for x in norm], length

    total = 0.0
    for words, grams in zip(hyps, ref_grams, strict=True):
        vec, norm, length = vector(_ngrams(words, n))
        score = [0.0] * n
        for ref in grams:
            vec_ref, norm_ref, length_ref = vector(ref)
            penalty = math.exp(-((length - length_ref) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(min(w, vec_ref[k].get(g, 0.0)) * vec_ref[k].get(g, 0.0) for g, w in vec[k].items())  # clipped
                if norm[k] != 0 and norm_ref[k] != 0:
                    val /= norm[k] * norm_ref[k]
                score[k] += val * penalty
        total += sum(score) / n / len(grams) * 10.0
    return total / len(hyps)


def caption_report(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """``bleu1`` .. ``bleu4`` (0..1), ``cider`` (CIDEr-D, x10 scale) and ``num_videos``.

    No METEOR: it needs Java (pycocoevalcap) or a WordNet download (NLTK), see the module docstring."""
    b = bleu(hypotheses, references, n=4)
    return dict(bleu1=b[0], bleu2=b[1], bleu3=b[2], bleu4=b[3], cider=cider_d(hypotheses, references),
                num_videos=len(hypotheses))


__all__ = ["bleu", "cider_d", "caption_report"]
