from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from batching import BucketBatchSampler, collate_features, padding_fraction
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from cnnlstm.data.collate import ClipBatch, collate_clips

LENGTHS = (3, 5, 2)


def _clips(lengths=LENGTHS, dtype=torch.uint8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(1, 256, (t, 3, 8, 8), generator=g).to(dtype) for t in lengths]  # (T_i, C, H, W), no zeros


def test_collate_shapes_lengths_mask_and_zero_padding():
    clips = _clips()
    batch = collate_clips([{"clip": c, "label": i, "path": f"v{i}.mp4"} for i, c in enumerate(clips)])
    assert isinstance(batch, ClipBatch) and len(batch) == 3
    assert batch.clips.shape == (3, 5, 3, 8, 8) and batch.clips.dtype == torch.uint8
    assert batch.lengths.tolist() == list(LENGTHS) and batch.lengths.dtype == torch.long
    assert batch.mask.dtype == torch.bool
    assert batch.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5, [True] * 2 + [False] * 3]
    for i, c in enumerate(clips):
        assert torch.equal(batch.clips[i, : len(c)], c)
    assert (batch.clips[~batch.mask] == 0).all()
    assert batch.labels.tolist() == [0, 1, 2] and batch.labels.dtype == torch.long
    assert batch.meta == [{"path": "v0.mp4"}, {"path": "v1.mp4"}, {"path": "v2.mp4"}]


def test_per_frame_labels_are_padded_with_ignore_index():
    clips = _clips(dtype=torch.float32)
    samples = [{"clip": c, "label": torch.full((len(c),), i)} for i, c in enumerate(clips)]
    batch = collate_clips(samples)
    assert batch.clips.dtype == torch.float32
    assert batch.labels.shape == (3, 5)
    assert batch.labels.tolist() == [[0, 0, 0, -100, -100], [1] * 5, [2, 2, -100, -100, -100]]
    assert torch.equal(batch.labels != -100, batch.mask)


def test_features_and_any_trailing_dims():
    feats = [torch.randn(t, 16) for t in (4, 1, 6)]  # (T_i, D)
    batch = collate_features([{"features": f, "label": torch.tensor(1)} for f in feats])
    assert batch.clips.shape == (3, 6, 16) and batch.lengths.tolist() == [4, 1, 6]
    assert torch.equal(batch.clips[0, :4], feats[0]) and (batch.clips[1, 1:] == 0).all()
    assert batch.labels.shape == (3,)
    assert collate_clips([{"clip": f} for f in feats]).labels is None


def test_dataclass_and_namedtuple_samples():
    @dataclass
    class Sample:
        clip: torch.Tensor
        label: int
        video_id: str

    class Pair(NamedTuple):
        clip: torch.Tensor
        label: int

    clips = _clips()
    batch = collate_clips([Sample(c, 1, "a") for c in clips])
    assert batch.meta == [{"video_id": "a"}] * 3
    assert batch.clips.data_ptr() != clips[0].data_ptr()
    assert collate_clips([Pair(c, 2) for c in clips]).labels.tolist() == [2, 2, 2]


def test_collate_errors_say_what_was_wrong():
    clips = _clips()
    with pytest.raises(ValueError, match="every dim but T"):
        collate_clips([{"clip": clips[0]}, {"clip": torch.zeros(2, 3, 9, 8, dtype=torch.uint8)}])
    with pytest.raises(ValueError, match=r"samples \[1\] have no 'label'"):
        collate_clips([{"clip": clips[0], "label": 1}, {"clip": clips[1]}])
    with pytest.raises(ValueError, match="T >= 1"):
        collate_clips([{"clip": clips[0][:0]}])
    with pytest.raises(ValueError, match="empty"):
        collate_clips([])


def test_batch_to_and_dataloader_with_workers():
    data = [{"clip": c, "label": i} for i, c in enumerate(_clips((3, 5, 2, 4)))]
    loader = DataLoader(data, batch_size=2, collate_fn=collate_clips, num_workers=1)
    batches = list(loader)
    assert [b.clips.shape[:2] for b in batches] == [(2, 5), (2, 4)]
    batches[0].skipped = [{"path": "bad.mp4"}]
    moved = batches[0].to("cpu", non_blocking=True)
    assert isinstance(moved, ClipBatch) and torch.equal(moved.mask, batches[0].mask)
    assert moved.skipped == [{"path": "bad.mp4"}]  # extra attributes survive .to() / .pin_memory()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs CUDA")
def test_pin_memory():
    loader = DataLoader([{"clip": c} for c in _clips()], batch_size=3, collate_fn=collate_clips, pin_memory=True)
    batch = next(iter(loader))
    assert batch.clips.is_pinned() and batch.mask.is_pinned()
    assert batch.to("cuda", non_blocking=True).clips.is_cuda


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n", [0, 1, 7, 100, 257])
def test_bucket_sampler_yields_every_index_once(n, shuffle):
    lengths = torch.randint(1, 100, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    sampler = BucketBatchSampler(lengths, batch_size=8, shuffle=shuffle, bucket_size_multiplier=4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(1 <= len(b) <= 8 for b in batches)


def test_bucket_sampler_drop_last():
    sampler = BucketBatchSampler(list(range(1, 102)), batch_size=10, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10 and all(len(b) == 10 for b in batches)


def test_bucket_sampler_is_deterministic_per_seed_and_epoch():
    lengths = torch.randint(1, 300, (500,), generator=torch.Generator().manual_seed(1)).tolist()

    def run(seed: int, epoch: int) -> list[list[int]]:
        sampler = BucketBatchSampler(lengths, batch_size=16, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert run(0, 3) == run(0, 3)
    assert run(0, 3) != run(0, 4)
    assert run(0, 3) != run(1, 3)


def test_bucketing_cuts_padding_versus_random_batches():
    g = torch.Generator().manual_seed(0)
    lengths = torch.exp(torch.randn(2000, generator=g) + 3).clamp(1, 600).long().tolist()  # log-normal, long tail
    random_batches = list(BatchSampler(RandomSampler(range(2000), generator=g), batch_size=16, drop_last=False))
    bucketed = list(BucketBatchSampler(lengths, batch_size=16))
    random_pad, bucket_pad = padding_fraction(lengths, random_batches), padding_fraction(lengths, bucketed)
    assert bucket_pad < 0.5 * random_pad, (bucket_pad, random_pad)
    assert padding_fraction([4, 4, 4, 4], [[0, 1], [2, 3]]) == 0.0
    assert padding_fraction([1, 3], [[0, 1]]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("drop_last", [False, True])
def test_bucket_sampler_splits_across_replicas(drop_last):
    lengths = torch.randint(1, 50, (203,), generator=torch.Generator().manual_seed(2)).tolist()
    per_rank = []
    for rank in range(3):
        sampler = BucketBatchSampler(lengths, batch_size=8, num_replicas=3, rank=rank, drop_last=drop_last, seed=5)
        sampler.set_epoch(2)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler)
    assert len({len(b) for b in per_rank}) == 1, "every rank needs the same number of batches"
    sets = [{i for b in batches for i in b} for batches in per_rank]
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    if drop_last:
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
        assert len(seen) == len(set(seen))
    else:  # padded by repeating batches, like DistributedSampler: every index is seen at least once
        assert set(seen) == set(range(203))
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(lengths, batch_size=8, num_replicas=2, rank=2)
