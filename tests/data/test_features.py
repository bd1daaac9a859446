"""Feature cache: exact features, model from features == model from clips, keys, invalidation,
corruption, bad videos, rank sharding, concurrent processes, random views."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil

import pytest
import torch

from cnnlstm import create_encoder, create_model
from cnnlstm.data.datasets import VideoDataset, make_loader
from cnnlstm.data.features import CachedFeatureDataset, FeatureCache, extract_features
from cnnlstm.data.sampling import SamplerConfig
from cnnlstm.data.synth import SynthConfig, synthesize
from cnnlstm.data.transforms import DataConfig, eval_transform, train_transform

N = 12  # 6 classes x 2 videos
SIZE = 32


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SynthConfig(videos_per_class=2, test_per_class=0, size=SIZE, min_frames=8, max_frames=12))
    return out


@pytest.fixture
def data(synth, tmp_path):
    """A private copy of the videos (tests rewrite and break them)."""
    shutil.copytree(synth, tmp_path / "data")
    return tmp_path / "data"


def make_encoder(seed: int = 0, pool: str = "avg"):
    torch.manual_seed(seed)
    encoder = create_encoder("test_tiny", pool=pool).freeze()
    encoder.pool.requires_grad_(False)
    return encoder


def make_dataset(data, *, frames: int = 4, train: bool = False, input_size: int = SIZE, **kwargs):
    cfg = DataConfig(input_size=input_size)
    transform = train_transform(cfg) if train else eval_transform(cfg)
    return VideoDataset(data / "train.csv", sampler=SamplerConfig(num_frames=frames), transform=transform,
                        train=train, **kwargs)


def make_cache(data, encoder=None, dataset=None, **kwargs):
    return FeatureCache(data / "cache", encoder=encoder or make_encoder(), dataset=dataset or make_dataset(data),
                        **kwargs)


def entries(cache: FeatureCache) -> list:
    return sorted(cache.dir.glob("*/*.safetensors"))


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_cached_features_equal_the_encoder_output(data, channels_last):
    cache = make_cache(data)
    stats = extract_features(cache, batch_size=5, progress=False, channels_last=channels_last)
    assert stats["extracted"] == N and stats["cached_before"] == 0 and stats["skipped"] == []
    assert stats["frames_per_s"] > 0 and cache.missing() == [] and len(entries(cache)) == N
    encoder = cache.encoder.eval()
    for i in range(N):
        item = cache.dataset[i]
        with torch.inference_mode():
            direct = encoder(item["clip"][None])[0][0]  # (T, D)
        entry = cache.get(item["path"])
        assert entry["features"].shape == (4, encoder.num_features) and entry["features"].dtype == torch.float32
        assert torch.equal(entry["frame_indices"], item["frame_indices"])
        if channels_last:  # other conv kernels: equal up to float rounding
            torch.testing.assert_close(entry["features"], direct, rtol=1e-5, atol=1e-6)
        else:  # bitwise, whatever the batch size
            assert torch.equal(entry["features"], direct)


def test_model_from_cached_features_matches_model_from_clips(data):
    torch.manual_seed(0)
    model = create_model("cnn_lstm", num_classes=6, backbone="test_tiny", hidden_size=16, num_layers=1).eval()
    model.encoder.freeze()
    dataset = make_dataset(data)
    cache = FeatureCache(data / "cache", encoder=model.encoder, dataset=dataset)
    extract_features(cache, progress=False, channels_last=False)
    features = CachedFeatureDataset(cache)
    assert len(features) == N and features.classes == dataset.classes
    with torch.inference_mode():
        for clips, feats in zip(make_loader(dataset, batch_size=5), make_loader(features, batch_size=5), strict=True):
            assert feats.clips.shape == (len(clips), 4, model.num_features)  # (B, T, D)
            assert torch.equal(feats.labels, clips.labels) and feats.skipped == []
            assert [m["path"] for m in feats.meta] == [m["path"] for m in clips.meta]
            expected = model(clips.clips, clips.lengths).logits  # (B, K)
            torch.testing.assert_close(model(feats.clips, feats.lengths).logits, expected, rtol=0, atol=0)


def test_second_extraction_extracts_nothing_and_model_is_untouched(data):
    cache = make_cache(data)
    extract_features(cache, progress=False)
    assert cache.encoder.stages["stem"][0].weight.is_contiguous()  # the caller's encoder kept its layout
    stats = extract_features(cache, progress=False)
    assert stats["extracted"] == 0 and stats["cached_before"] == N
    assert make_cache(data).dir == cache.dir  # the same settings find the same folder


def _perturbed_encoder():
    encoder = make_encoder()
    with torch.no_grad():
        encoder.stages["layer1"][0].weight[0, 0, 0, 0] += 1e-3
    return encoder


CHANGES = {
    "transform": lambda d: dict(dataset=make_dataset(d, input_size=24)),
    "frames": lambda d: dict(dataset=make_dataset(d, frames=5)),
    "decode_size": lambda d: dict(dataset=make_dataset(d, decode_size=24)),
    "weights": lambda d: dict(encoder=_perturbed_encoder()),
    "buffers": lambda d: dict(encoder=make_encoder().apply(
        lambda m: m.running_mean.add_(0.1) if isinstance(m, torch.nn.BatchNorm2d) else None)),
    "pool": lambda d: dict(encoder=make_encoder(pool="attention")),
    "dtype": lambda d: dict(dtype=torch.float16),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_key_part_picks_its_own_folder(data, change):
    base = make_cache(data)
    other = make_cache(data, **CHANGES[change](data))
    assert other.dir != base.dir and other.dir.parent == base.dir.parent
    assert (other.dir / "key.json").is_file() and other.missing() == list(range(N))


@pytest.mark.parametrize("how", ["touch", "rewrite"])
def test_a_changed_video_invalidates_only_its_entry(data, how):
    cache = make_cache(data)
    extract_features(cache, progress=False)
    path = cache.dataset.videos.items[3].path
    if how == "touch":
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        shutil.copyfile(cache.dataset.videos.items[4].path, path)
    assert cache.missing() == [3] and cache.get(path) is None
    assert extract_features(cache, progress=False)["extracted"] == 1 and cache.missing() == []


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip", "garbage"])
def test_a_corrupt_entry_reads_as_missing_and_is_extracted_again(data, damage):
    cache = make_cache(data)
    extract_features(cache, progress=False)
    path = cache.dataset.videos.items[2].path
    entry = cache.entry_path(path)
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "flip":  # same size, one feature byte changed: only the checksum sees it
        entry.write_bytes(raw[:-40] + bytes([raw[-40] ^ 0xFF]) + raw[-39:])
    else:
        entry.write_bytes(b"\xff" * len(raw))
    if damage != "flip":
        assert cache.missing() == [2]  # the header check needs no full read
    with pytest.warns(UserWarning, match="bad feature-cache entry"):
        assert cache.get(path) is None
    assert not entry.exists()
    assert extract_features(cache, progress=False)["extracted"] == 1
    assert cache.get(path) is not None and cache.missing() == []


def test_a_bad_video_is_skipped_counted_and_served_as_an_error_record(data):
    dataset = make_dataset(data)
    bad = dataset.videos.items[5].path
    with open(bad, "wb") as f:
        f.write(os.urandom(2000))
    cache = make_cache(data, dataset=dataset)
    stats = extract_features(cache, batch_size=4, progress=False)
    assert stats["extracted"] == N - 1 and [s["path"] for s in stats["skipped"]] == [bad]
    assert cache.missing() == [5]
    features = CachedFeatureDataset(cache)
    record = features[5]
    assert record["error"] == "missing" and record["path"] == bad and "extract_features" in record["message"]
    batches = list(make_loader(features, batch_size=N))
    assert len(batches[0]) == N - 1 and [s["path"] for s in batches[0].skipped] == [bad]


def test_ranks_extract_disjoint_shards_that_fill_the_cache(data):
    cache = make_cache(data)
    first = extract_features(cache, rank=0, world_size=2, progress=False)
    assert first["extracted"] == N // 2 and cache.missing() == list(range(1, N, 2))
    second = extract_features(cache, rank=1, world_size=2, progress=False)
    assert second["extracted"] == N // 2 and cache.missing() == []
    with pytest.raises(ValueError, match="rank"):
        extract_features(cache, rank=2, world_size=2)


def _extract_in_process(root, data, encoder) -> None:
    torch.set_num_threads(1)
    cache = FeatureCache(root, encoder=encoder, dataset=make_dataset(data))
    extract_features(cache, batch_size=2, progress=False)


def test_two_processes_filling_one_cache_leave_it_complete(data):
    encoder = make_encoder()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_extract_in_process, args=(data / "cache", data, encoder)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = make_cache(data, encoder=encoder)
    assert cache.missing() == [] and len(entries(cache)) == N
    assert all(cache.get(item.path) is not None for item in cache.dataset.videos.items)
    assert list(cache.dir.rglob("*.tmp")) == []


def test_views_store_different_random_clips_and_cycle_by_epoch(data):
    dataset = make_dataset(data, frames=4, train=True)
    cache = make_cache(data, dataset=dataset, views=2)
    stats = extract_features(cache, progress=False, view=None)
    assert stats["extracted"] == 2 * N and dataset.epoch == 0 and len(entries(cache)) == 2 * N
    path = dataset.videos.items[0].path
    v0, v1 = cache.get(path, 0), cache.get(path, 1)
    assert not torch.equal(v0["features"], v1["features"])
    dataset.set_epoch(1)
    assert torch.equal(dataset[0]["frame_indices"], v1["frame_indices"])  # view k = epoch k's clip
    features = CachedFeatureDataset(cache)
    for epoch, view in [(0, v0), (1, v1), (2, v0)]:
        features.set_epoch(epoch)
        assert torch.equal(features[0]["clip"], view["features"])
    with pytest.raises(ValueError, match="view"):
        cache.get(path, 2)


def test_misuse_is_refused_with_a_clear_error(data):
    dataset = make_dataset(data)
    with pytest.raises(ValueError, match="freeze"):
        FeatureCache(data / "cache", encoder=create_encoder("test_tiny"), dataset=dataset)
    model = create_model("cnn_lstm", num_classes=6, backbone="test_tiny")
    with pytest.raises(TypeError, match="model.encoder"):
        FeatureCache(data / "cache", encoder=model, dataset=dataset)
    with pytest.raises(ValueError, match="train dataset"):
        make_cache(data, views=2)
    with pytest.warns(UserWarning, match="same sampled and augmented"):
        make_cache(data, dataset=make_dataset(data, train=True))
    dataset.transform = lambda clip, generator=None: clip.float()
    with pytest.raises(ValueError, match="memory address"):
        make_cache(data, dataset=dataset)
    cache = make_cache(data)
    with pytest.raises(RuntimeError, match="pickled without its encoder"):  # what DataLoader workers get
        extract_features(pickle.loads(pickle.dumps(cache)))
    path = cache.dataset.videos.items[0].path
    with pytest.raises(ValueError, match="features"):
        cache.put(path, torch.zeros(4, 7), torch.arange(4))
    with pytest.raises(ValueError, match="overflow"):
        make_cache(data, dtype=torch.float16).put(path, torch.full((4, 32), 1e6), torch.arange(4))


def test_float16_storage_is_close_and_returned_as_float32(data):
    cache = make_cache(data, dtype=torch.float16)
    extract_features(cache, progress=False, channels_last=False)
    reference = make_cache(data)
    extract_features(reference, progress=False, channels_last=False)
    item = CachedFeatureDataset(cache)[0]
    assert item["clip"].dtype == torch.float32
    assert cache.get(item["path"])["features"].dtype == torch.float16
    torch.testing.assert_close(item["clip"], reference.get(item["path"])["features"], rtol=2**-10, atol=1e-4)


def test_extraction_under_the_training_autocast_stores_what_the_autocast_encoder_computes(data):
    """``amp`` = the dtype training autocasts to: the features a cache-less training epoch would see."""
    cache = make_cache(data, amp=torch.bfloat16)
    assert cache.dir != make_cache(data).dir and cache.key["amp"] == "bfloat16"  # its own folder
    extract_features(cache, batch_size=5, progress=False, channels_last=False)
    encoder = cache.encoder.eval()
    for i in (0, N - 1):
        item = cache.dataset[i]
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            direct = encoder(item["clip"][None])[0][0]  # (T, D), bf16
        torch.testing.assert_close(cache.get(item["path"])["features"], direct.float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="amp must be"):
        make_cache(data, amp=torch.float64)


def test_a_failing_write_is_raised_by_extract_features(data, monkeypatch):
    cache = make_cache(data)

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(cache, "put_item", broken)  # the writes run in the writer thread
    with pytest.raises(OSError, match="No space left"):
        extract_features(cache, progress=False)


def test_cached_features_stay_in_memory_after_the_first_epoch(data):
    cache = make_cache(data)
    extract_features(cache, progress=False)
    features = CachedFeatureDataset(cache)
    first = [features[i]["clip"] for i in range(N)]
    shutil.rmtree(cache.dir)  # later epochs no longer read the files
    assert all(torch.equal(features[i]["clip"], first[i]) for i in range(N))
    assert make_loader(features, batch_size=4, workers=2).num_workers == 0  # workers would start empty
    small = CachedFeatureDataset(make_cache(data), memory_mb=0)  # nothing held: read from disk each time
    assert small[0]["error"] == "missing"
