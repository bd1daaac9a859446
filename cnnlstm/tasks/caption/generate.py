"""Caption generation over a captioning model: greedy and beam search.

The model provides ``encode(x, lengths) -> (memory (B, T, M), mask (B, T))``,
``init_decoder(memory, mask) -> state`` and ``decode_step(tokens (B,), state, memory, mask) ->
(logits (B, V), attention (B, T), state)``, where the state is a tuple of batch-first tensors (see
:mod:`cnnlstm.models.caption`). The video is encoded once per search; beams are folded into the
batch (B*K rows), so one decode step serves every video and beam at once.

Each search returns one dict per video: ``tokens`` (list of ids, without ``<bos>``/``<eos>``),
``score`` and ``attention`` (N, T), the weights used to produce each output token, where N is the
number of generated tokens: ``len(tokens) + 1`` when the caption ended with ``<eos>`` (its row
included), ``len(tokens)`` when it stopped at ``max_len``.

Scores are sums of log-probabilities of the N generated tokens (``<eos>`` included). Beam search
divides them by the GNMT length penalty ``((5 + N) / 6) ** length_penalty`` (Wu et al. 2016), so
``length_penalty=0`` ranks by the plain sum; greedy search reports the plain sum. With
``beam_size=1, length_penalty=0`` beam search is greedy search (same tokens and score).

Letters: B videos, K beams, T frames, M memory size, V vocabulary size, N generated tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...models._seq import check_lengths


def _check(max_len: int, beam_size: int = 1) -> None:
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer (the most tokens to generate); got {max_len!r}")
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer; got {beam_size!r}")


def _results(tokens: Tensor, steps: Tensor, ended: Tensor, scores: Tensor, attention: Tensor) -> list[dict]:
    """tokens (B, N), steps (B,) generated counts, ended (B,) bool, scores (B,), attention (B, N, T)."""
    out = []
    for b in range(tokens.shape[0]):
        n = int(steps[b])
        words = n - int(ended[b])  # the <eos> is not a word
        out.append(dict(tokens=tokens[b, :words].tolist(), score=float(scores[b]), attention=attention[b, :n].cpu()))
    return out


@torch.no_grad()
def greedy_search(model: nn.Module, x: Tensor, lengths: Tensor | None = None, *, max_len: int = 20,
                  bos: int = 1, eos: int = 2) -> list[dict]:
    """The most likely next token at every step, until ``<eos>`` or ``max_len`` tokens."""
    _check(max_len)
    lengths = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
    memory, mask = model.encode(x, lengths)  # (B, T, M), (B, T)
    state = model.init_decoder(memory, mask)
    B, T = mask.shape
    tokens = torch.full((B,), bos, dtype=torch.long, device=x.device)  # (B,)
    scores = torch.zeros(B, device=x.device)  # (B,) float32 sums
    ended = torch.zeros(B, dtype=torch.bool, device=x.device)  # (B,)
    steps = torch.zeros(B, dtype=torch.long, device=x.device)  # (B,) tokens generated
    out_tokens, out_attention = [], []
    for _ in range(max_len):
        logits, weights, state = model.decode_step(tokens, state, memory, mask)  # (B, V), (B, T)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        best, tokens = logp.max(-1)  # (B,), (B,)
        live = ~ended
        scores = scores + torch.where(live, best, torch.zeros_like(best))
        steps = steps + live.long()
        out_tokens.append(tokens)
        out_attention.append(weights)
        ended = ended | (live & (tokens == eos))
        if bool(ended.all()):
            break
    return _results(torch.stack(out_tokens, 1), steps, ended, scores, torch.stack(out_attention, 1))


def _penalty(n: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT length penalty ((5 + n) / 6) ** alpha."""
    return ((5.0 + n) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model: nn.Module, x: Tensor, lengths: Tensor | None = None, *, beam_size: int = 3,
                length_penalty: float = 1.0, max_len: int = 20, bos: int = 1, eos: int = 2) -> list[dict]:
    """Keep the ``beam_size`` best unfinished captions per video; return each video's best
    finished (or, at ``max_len``, unfinished) caption by length-normalised score.

    As in Hugging Face's beam search, each step ranks the 2K best continuations of the K beams;
    an ``<eos>`` among the first K of them finishes a caption (kept if it beats the video's best
    finished one so far), and the K best other continuations become the new beams. A video is
    done when no beam can still beat its best finished caption, whatever its length up to
    ``max_len`` (an exact bound for ``length_penalty >= 0``).
    """
    _check(max_len, beam_size)
    lengths = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
    memory, mask = model.encode(x, lengths)  # (B, T, M), (B, T)
    B, T = mask.shape
    K, device = beam_size, x.device
    memory = memory.repeat_interleave(K, 0)  # (B*K, T, M): beam k of video b is row b*K + k
    mask = mask.repeat_interleave(K, 0)  # (B*K, T)
    state = model.init_decoder(memory, mask)
    tokens = torch.full((B * K,), bos, dtype=torch.long, device=device)  # (B*K,)
    beam_scores = torch.full((B, K), float("-inf"), device=device)  # (B, K) sum of log-probs
    beam_scores[:, 0] = 0.0  # all beams start equal: expand only the first at step 0
    history = torch.zeros(B, K, 0, dtype=torch.long, device=device)  # (B, K, n)
    attn_history = memory.new_zeros(B, K, 0, T)  # (B, K, n, T)
    best_score = torch.full((B,), float("-inf"), device=device)  # (B,) normalised, finished captions
    best_tokens = torch.zeros(B, max_len, dtype=torch.long, device=device)  # (B, max_len), <eos> included
    best_attn = memory.new_zeros(B, max_len, T)  # (B, max_len, T)
    best_steps = torch.zeros(B, dtype=torch.long, device=device)  # (B,)
    rows = torch.arange(B, device=device)[:, None]  # (B, 1)
    for step in range(max_len):
        logits, weights, state = model.decode_step(tokens, state, memory, mask)  # (B*K, V), (B*K, T)
        V = logits.shape[-1]
        logp = torch.log_softmax(logits.float(), dim=-1).view(B, K, V)  # (B, K, V)
        candidates = (beam_scores.unsqueeze(-1) + logp).view(B, K * V)  # (B, K*V)
        top_scores, top_index = candidates.topk(min(2 * K, K * V), dim=1)  # (B, 2K) best first
        top_beam, top_token = top_index // V, top_index % V  # (B, 2K)
        n = step + 1  # tokens generated, this one included
        # a finished caption counts when its <eos> is among the K best continuations
        is_eos = top_token == eos  # (B, 2K)
        rank = torch.arange(top_index.shape[1], device=device).expand_as(top_index)  # (B, 2K)
        finished = torch.where(is_eos & (rank < K), top_scores / _penalty(n, length_penalty), float("-inf"))  # (B, 2K)
        cand_best, cand_pos = finished.max(1)  # (B,)
        better = cand_best > best_score  # (B,)
        if bool(better.any()):
            src_beam = top_beam[rows[:, 0], cand_pos]  # (B,)
            new_tokens = torch.cat([history[rows[:, 0], src_beam], torch.full((B, 1), eos, device=device)], 1)  # (B, n)
            src_weights = weights.view(B, K, T)[rows[:, 0], src_beam]  # (B, T)
            new_attn = torch.cat([attn_history[rows[:, 0], src_beam], src_weights.unsqueeze(1)], 1)  # (B, n, T)
            best_tokens[better, :n] = new_tokens[better]
            best_attn[better, :n] = new_attn[better]
            best_steps[better] = n
            best_score = torch.where(better, cand_best, best_score)
        # the K best continuations that are not <eos> become the beams (stable: keeps the ranking)
        keep = torch.sort(is_eos.long() * (2 * K) + rank, dim=1).indices[:, :K]  # (B, K)
        beam_scores = top_scores.gather(1, keep)  # (B, K)
        src = top_beam.gather(1, keep)  # (B, K) beam each new beam continues
        tokens = top_token.gather(1, keep)  # (B, K)
        history = torch.cat([history[rows, src], tokens.unsqueeze(-1)], 2)  # (B, K, n)
        attn_history = torch.cat([attn_history[rows, src], weights.view(B, K, 1, T)[rows, src]], 2)  # (B, K, n, T)
        flat = (rows * K + src).flatten()  # (B*K,) rows of the state to continue from
        state = tuple(s.index_select(0, flat) for s in state)
        tokens = tokens.flatten()  # (B*K,)
        # done when the best beam, at the most favourable length, cannot beat the best finished
        top_alive = beam_scores.max(1).values  # (B,)
        top_penalty = max(_penalty(min(n + 1, max_len), length_penalty), _penalty(max_len, length_penalty))
        if bool((best_score >= top_alive / top_penalty).all()):
            break
    else:  # max_len reached: unfinished beams compete too, at length max_len
        alive = beam_scores / _penalty(max_len, length_penalty)  # (B, K)
        alive_best, alive_k = alive.max(1)  # (B,)
        better = alive_best > best_score  # (B,)
        best_tokens[better] = history[rows[:, 0], alive_k][better]
        best_attn[better] = attn_history[rows[:, 0], alive_k][better]
        best_steps[better] = max_len
        best_score = torch.where(better, alive_best, best_score)
        ended = ~better
        return _results(best_tokens, best_steps, ended, best_score, best_attn)
    return _results(best_tokens, best_steps, torch.ones(B, dtype=torch.bool, device=device), best_score, best_attn)


def generate(model: nn.Module, x: Tensor, lengths: Tensor | None = None, *, beam_size: int = 1,
             length_penalty: float = 1.0,
             max_len: int = 20, bos: int = 1, eos: int = 2) -> list[dict]:
    """Greedy search when ``beam_size`` is 1, else beam search; one dict per video (see those)."""
    if beam_size == 1:
        return greedy_search(model, x, lengths, max_len=max_len, bos=bos, eos=eos)
    return beam_search(model, x, lengths, beam_size=beam_size, length_penalty=length_penalty, max_len=max_len, bos=bos,
                       eos=eos)


__all__ = ["greedy_search", "beam_search", "generate"]
