from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
import torch

from cnnlstm.data.sampling import (
    SamplerConfig,
    ShortVideoPolicy,
    fps_indices,
    random_clip_indices,
    sample_indices,
    sample_timed_windows,
    sample_windows,
    sliding_window_indices,
    uniform_indices,
    window_starts,
)

LENGTHS = [1, 2, 3, 7, 8, 9, 16, 17, 100, 301]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_range(idx: torch.Tensor, n: int) -> None:
    assert idx.dtype == torch.long
    assert int(idx.min()) >= 0 and int(idx.max()) < n, (idx, n)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("short", ["pad", "keep"])
@pytest.mark.parametrize("n", LENGTHS)
def test_uniform_and_clip_in_range_and_monotone(n, short, train):
    for fn, kwargs in ((uniform_indices, {}), (random_clip_indices, {"stride": 2})):
        idx = fn(n, 8, train=train, generator=_gen(n), short=short, **kwargs)
        _check_range(idx, n)
        assert (idx[1:] >= idx[:-1]).all(), (fn.__name__, idx)
        if short == "pad" or n >= 8 * 2:
            assert idx.shape == (8,)


@pytest.mark.parametrize("n", [8, 9, 30, 301])
def test_uniform_eval_is_deterministic_centred_and_strictly_increasing(n):
    a, b = uniform_indices(n, 8), uniform_indices(n, 8, generator=_gen(1))
    assert torch.equal(a, b)
    assert (a[1:] > a[:-1]).all()
    assert uniform_indices(30, 10).tolist() == list(range(1, 30, 3))  # middle of each 3-frame segment


def test_uniform_train_jitters_within_segments():
    n, t = 100, 8
    start = torch.arange(t) * n // t
    end = (torch.arange(t) + 1) * n // t
    draws = torch.stack([uniform_indices(n, t, train=True, generator=_gen(s)) for s in range(20)])  # (20, T)
    assert ((draws >= start) & (draws < end)).all()
    assert len({tuple(d.tolist()) for d in draws}) > 10
    assert torch.equal(uniform_indices(n, t, train=True, generator=_gen(3)), draws[3])


def test_random_clip_is_contiguous_random_in_train_centred_in_eval():
    starts = {int(random_clip_indices(100, 8, stride=2, generator=_gen(s))[0]) for s in range(20)}
    assert len(starts) > 5 and max(starts) <= 100 - 15
    idx = random_clip_indices(100, 8, stride=2, train=False)
    assert torch.equal(idx.diff(), torch.full((7,), 2))
    assert int(idx[0]) == (100 - 15) // 2


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("fn", [uniform_indices, random_clip_indices, sliding_window_indices])
def test_short_video_policies(fn, n):
    pad = fn(n, 8, short="pad").flatten()
    loop = fn(n, 8, short=ShortVideoPolicy.LOOP).flatten()
    keep = fn(n, 8, short="keep").flatten()
    assert pad.tolist() == list(range(n)) + [n - 1] * (8 - n)
    assert loop.tolist() == [i % n for i in range(8)]
    assert keep.tolist() == list(range(n))


def test_default_short_policy_is_pad():
    assert uniform_indices(3, 8).tolist() == [0, 1, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("bad", [0, -4])
def test_bad_num_frames_raises_naming_value(bad):
    with pytest.raises(ValueError, match=str(bad)):
        uniform_indices(bad, 8)
    with pytest.raises(ValueError, match="short"):
        uniform_indices(10, 8, short="stretch")


@pytest.mark.parametrize("n,window,stride,hop", [(10, 4, 1, None), (10, 4, 1, 3), (100, 16, 1, 8), (17, 16, 1, None),
                                                 (50, 5, 2, None), (50, 5, 3, 7), (16, 16, 1, None)])
def test_sliding_windows_cover_every_frame(n, window, stride, hop):
    w = sliding_window_indices(n, window, stride=stride, hop=hop)  # (N, window)
    assert w.ndim == 2 and w.shape[1] == window
    _check_range(w, n)
    assert int(w[-1, -1]) == n - 1  # last window aligned to the end
    if stride == 1:
        assert set(w.flatten().tolist()) == set(range(n))
    else:  # no frame is further than stride - 1 from a sampled frame
        gaps = torch.unique(w).diff()
        assert int(gaps.max()) <= stride


def test_fps_resampling():
    assert fps_indices(30, 30, 10).tolist() == list(range(0, 30, 3))
    assert fps_indices(31, 30.0, 10.0).tolist() == list(range(0, 31, 3))
    assert fps_indices(4, 10, 20).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # upsampling repeats, keeps the timeline
    _check_range(fps_indices(30, Fraction(30000, 1001), 10), 30)
    capped = fps_indices(3000, 30, 10, max_frames=16)
    assert capped.shape == (16,) and (capped.diff() > 0).all() and int(capped.max()) < 3000
    assert int(capped[-1]) > 2700  # thinning still spans the whole video
    assert fps_indices(30, 30, 10, max_frames=100).shape == (10,)
    with pytest.raises(ValueError, match="target_fps"):
        fps_indices(30, 30, 0)


def test_sampler_config_dispatch():
    assert torch.equal(sample_indices(SamplerConfig(num_frames=8), 100, train=False), uniform_indices(100, 8))
    cfg = SamplerConfig(kind="random_clip", num_frames=4, stride=3)
    assert torch.equal(sample_indices(cfg, 100, train=True, generator=_gen(0)),
                       random_clip_indices(100, 4, stride=3, generator=_gen(0)))
    fps_cfg = SamplerConfig(kind="fps", target_fps=10)
    assert sample_indices(fps_cfg, 60, fps=30, train=False).tolist() == list(range(0, 60, 3))
    sliding = SamplerConfig(kind="sliding", num_frames=4)
    with pytest.raises(ValueError, match="sample_windows"):
        sample_indices(sliding, 10, train=False)
    assert sample_windows(sliding, 10).shape == (3, 4)
    assert sample_windows(SamplerConfig(num_frames=4), 10).shape == (1, 4)
    with pytest.raises(ValueError, match="kind"):
        SamplerConfig(kind="dense")
    with pytest.raises(ValueError, match="target_fps"):
        SamplerConfig(kind="fps")


VIEW_SAMPLERS = {
    "uniform": SamplerConfig(kind="uniform", num_frames=8),
    "random_clip": SamplerConfig(kind="random_clip", num_frames=8, stride=2),
    "fps": SamplerConfig(kind="fps", target_fps=5),  # 6 source frames per output frame: up to 6 distinct views
    "fps_thinned": SamplerConfig(kind="fps", target_fps=30, max_frames=8),
}


@pytest.mark.parametrize("kind", VIEW_SAMPLERS)
@pytest.mark.parametrize("views", [2, 3, 5])
def test_eval_views_sample_different_frames(kind, views):
    """Multi-view testing (position (v + 0.5) / V) gives V different clips, not V copies of one."""
    base = VIEW_SAMPLERS[kind]
    clips = [sample_indices(dataclasses.replace(base, position=(v + 0.5) / views), 120, fps=30, train=False)
             for v in range(views)]
    for clip in clips:
        _check_range(clip, 120)
    assert len({tuple(c.tolist()) for c in clips}) == views, [c.tolist() for c in clips]


def test_the_default_view_is_unchanged():
    assert random_clip_indices(100, 4, stride=3, train=False).tolist() == [45, 48, 51, 54]  # centred: (100 - 10) // 2
    assert random_clip_indices(100, 4, stride=3, train=False, position=0.0).tolist() == [0, 3, 6, 9]
    assert random_clip_indices(100, 4, stride=3, train=False, position=0.99).tolist() == [89, 92, 95, 98]
    assert fps_indices(30, 30, 10, position=0.5).tolist() == list(range(0, 30, 3))
    assert fps_indices(30, 30, 10, position=0.5 + 1 / 3).tolist() == list(range(1, 30, 3))
    assert fps_indices(30, 30, 10, position=0.5 - 1 / 3).tolist() == list(range(2, 30, 3))
    with pytest.raises(ValueError, match=r"position must be in \[0, 1\)"):
        SamplerConfig(kind="random_clip", position=1.0)


@pytest.mark.parametrize("n", [1, 5, 49, 50, 51, 99, 100, 101, 250])
@pytest.mark.parametrize("span, hop", [(50, 50), (50, 25), (50, 30), (10, 50), (1, 1)])
def test_window_starts_cover_the_video_with_the_documented_count(n, span, hop):
    starts = window_starts(n, span, hop)
    if span >= n:
        assert starts.tolist() == [0]
        return
    assert len(starts) == -(-(n - span) // hop) + 1  # ceil((n - span) / hop) + 1
    assert starts[0] == 0 and int(starts[-1]) + span == n, "the last window ends at the last frame"
    assert bool((starts.diff() > 0).all()) and bool((starts.diff() <= hop).all())
    if hop <= span:  # no frame between windows is left out
        covered = torch.zeros(n, dtype=torch.bool)
        for a in starts.tolist():
            covered[a:a + span] = True
        assert bool(covered.all())


def test_timed_windows_sample_each_window_like_an_eval_clip():
    cfg = SamplerConfig(num_frames=8)
    starts, indices, span = sample_timed_windows(cfg, 1000, 25.0, window=2.0, stride=1.5)  # 40 s
    assert span == 50 and indices.shape == (len(starts), 8)
    assert len(starts) == -(-(1000 - 50) // 38) + 1  # ceil((40 s - 2 s) / 1.5 s) + 1; 1.5 s is 38 frames at 25 fps
    for a, row in zip(starts.tolist(), indices, strict=True):
        assert torch.equal(row, a + uniform_indices(50, 8)), "each window is a 50-frame video sampled by cfg"
    clip = SamplerConfig(kind="random_clip", num_frames=4, stride=2)
    _, indices, _ = sample_timed_windows(clip, 300, 30.0, window=1.0)
    assert torch.equal(indices[1] - indices[0], torch.full((4,), 30)) and indices[0].tolist() == [11, 13, 15, 17]
    starts, indices, span = sample_timed_windows(cfg, 30, 25.0, window=10.0)  # shorter than one window
    assert starts.tolist() == [0] and span == 30 and indices.shape == (1, 8)
    for bad in (dict(window=0), dict(window=2.0, stride=-1), dict(window=float("nan"))):
        with pytest.raises(ValueError, match="positive number of seconds"):
            sample_timed_windows(cfg, 100, 25.0, **bad)
