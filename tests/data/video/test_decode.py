"""Decoding: exact frames, random access == sequential, formats, orientation, resize, streaming, pickling.

Error handling, limits, isolation and leaks are in test_decode_errors.py. Every video is written
at test time (see video_factory.py). Letters: T frames, C channels, H/W height/width.
"""
from __future__ import annotations

import pickle
import warnings

import av
import numpy as np
import pytest
import torch
import video_factory as vf

from cnnlstm.data.video import _pyav, decode
from cnnlstm.data.video.decode import FrameIndexError, Limits, VideoReader, probe, read_frames

TORCHCODEC_OK, TORCHCODEC_WHY = decode.torchcodec_status()
needs_torchcodec = pytest.mark.skipif(not TORCHCODEC_OK, reason=f"torchcodec unusable here: {TORCHCODEC_WHY}")


def as_tchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, C) -> (T, C, H, W)


def sequential(path: str) -> torch.Tensor:
    """Plain PyAV decoding, first to last: the ground truth for indexing."""
    with av.open(path) as container:
        arrays = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return as_tchw(np.stack(arrays))  # (T, C, H, W)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return vf.make_frames(40)  # (T, H, W, 3)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, frames) -> dict[str, str]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "lossless": vf.lossless(root / "lossless.mkv", frames),
        "bframes_mkv": vf.bframes(root / "bframes.mkv", frames),
        "bframes_mp4": vf.bframes(root / "bframes.mp4", frames),
        "lossy_mp4": vf.write(root / "lossy.mp4", frames, options={"g": "8", "bf": "2", "sc_threshold": "0"}),
        # MPEG-TS seeks by bisecting timestamps and often lands past the keyframe: the reader retries
        "lossy_ts": vf.write(root / "lossy.ts", frames, options={"g": "6", "bf": "2", "sc_threshold": "0"}),
    }


def test_exact_frames_vs_lossless_reference(videos, frames):
    with VideoReader(videos["lossless"]) as reader:
        info = reader.info
        assert (info.num_frames, info.width, info.height, info.rotation) == (40, 64, 48, 0)
        assert info.fps == pytest.approx(25) and info.duration == pytest.approx(1.6)
        assert info.codec == "h264" and info.pix_fmt == "gbrp" and "matroska" in info.container
        indices = [39, 3, 3, 0, 20, 21, 5]
        out = reader.get_frames(indices)
        assert out.dtype == torch.uint8 and out.shape == (7, 3, 48, 64)  # (T, C, H, W)
        assert torch.equal(out, as_tchw(frames)[indices])
        assert torch.equal(reader.get_frames(torch.arange(40)), as_tchw(frames))
        assert reader.corrupt_frames == 0


@pytest.mark.parametrize("name", ["bframes_mkv", "bframes_mp4", "lossy_mp4"])
def test_random_access_equals_sequential_with_bframes(videos, frames, name):
    path = videos[name]
    truth = sequential(path)  # (T, C, H, W)
    if name.startswith("bframes"):
        assert torch.equal(truth, as_tchw(frames))  # lossless: sequential is the reference itself
    info = probe(path)
    assert info.num_frames == len(truth) == 40
    assert info.keyframe_interval == pytest.approx(6 if name.startswith("bframes") else 8, abs=1)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(1))[:25]
    with VideoReader(path) as reader:
        assert torch.equal(reader.get_frames(order), truth[order])
        assert torch.equal(reader.get_frames([39, 0, 38, 1]), truth[[39, 0, 38, 1]])


@pytest.mark.parametrize("name", ["bframes_mp4", "lossy_ts"])
@pytest.mark.parametrize("seek_cost", [0, 10**9], ids=["seek", "forward"])
def test_seek_policy_is_exact(videos, monkeypatch, seek_cost, name):
    path = videos[name]
    truth = sequential(path)
    seeks = []
    original = _pyav.PyAVVideo._seek_before
    monkeypatch.setattr(_pyav, "SEEK_COST_FRAMES", seek_cost)
    monkeypatch.setattr(_pyav.PyAVVideo, "_seek_before", lambda self, *a,
                        **k: (seeks.append(a), original(self, *a, **k))[1])
    indices = [2, 13, 14, 30, 37, 39]  # forward only: seeks happen only when they skip frames
    with VideoReader(path, threads=1) as reader:
        assert torch.equal(reader.get_frames(indices), truth[indices])
        assert (len(seeks) > 0) == (seek_cost == 0)
        assert torch.equal(reader.get_frames([25, 7, 8, 1]), truth[[25, 7, 8, 1]])  # backwards: always seeks


def test_resize_during_decode(videos, frames):
    ref = as_tchw(frames).float()
    with VideoReader(videos["lossless"]) as reader:
        short = reader.get_frames([0, 5], size=24)
        assert short.shape == (2, 3, 24, 32)  # shorter side 48 -> 24, aspect kept
        exact = reader.get_frames([5], size=(30, 20))
        assert exact.shape == (1, 3, 30, 20) and exact.dtype == torch.uint8
        expected = torch.nn.functional.interpolate(ref[[0, 5]], size=(24, 32), mode="area")
        assert (short.float() - expected).abs().mean() < 6
        for bad in (0, (10,), (10, 0), 2.5, "big"):
            with pytest.raises(ValueError, match="size"):
                reader.get_frames([0], size=bad)


def test_rotation_90_is_display_oriented(tmp_path, frames):
    path = vf.rotated(tmp_path / "rot.mp4", frames[:6], degrees=90)
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    expected = torch.rot90(as_tchw(frames[:6]), 1, dims=(2, 3))  # counter-clockwise, as FFmpeg displays it
    with VideoReader(path) as reader:
        out = reader.get_frames([0, 5, 2])
        assert out.shape == (3, 3, 64, 48)
        assert torch.equal(out, expected[[0, 5, 2]])
        assert reader.get_frames([1], size=(32, 24)).shape == (1, 3, 32, 24)  # size is in display orientation
        assert reader.get_frames([1], size=24).shape == (1, 3, 32, 24)


def test_odd_size_is_exact(tmp_path):
    odd = vf.make_frames(5, height=25, width=33)
    path = vf.lossless(tmp_path / "odd.mkv", odd)
    out = read_frames(path, [4, 0])
    assert out.shape == (2, 3, 25, 33) and torch.equal(out, as_tchw(odd)[[4, 0]])
    assert read_frames(vf.write(tmp_path / "odd444.mkv", odd, pix_fmt="yuv444p"), [0]).shape == (1, 3, 25, 33)


def test_ten_bit(tmp_path, frames):
    path = vf.ten_bit(tmp_path / "ten.mkv", frames[:4])
    with VideoReader(path) as reader:
        assert reader.info.pix_fmt == "yuv444p10le"
        out = reader.get_frames(range(4))
    assert out.dtype == torch.uint8
    assert (out.int() - as_tchw(frames[:4]).int()).abs().max() <= 3


def test_grayscale_becomes_rgb(tmp_path, frames):
    path = vf.gray(tmp_path / "gray.mkv", frames[:3])
    with VideoReader(path) as reader:
        assert reader.info.pix_fmt == "gray"
        out = reader.get_frames([0, 2])
    assert out.shape == (2, 3, 48, 64)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    luma = (as_tchw(frames[[0, 2]]).float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert (out[:, 0].float() - luma).abs().mean() < 3


def test_full_range_mjpeg_keeps_white_and_black(tmp_path):
    image = np.full((2, 48, 64, 3), 255, np.uint8)
    image[:, :, :32] = 0
    path = vf.mjpeg_full_range(tmp_path / "mjpeg.avi", image)
    with VideoReader(path) as reader:
        assert reader.info.pix_fmt.startswith("yuvj") and reader.info.codec == "mjpeg"
        out = reader.get_frames([0, 1])
    assert out[:, :, :, 40:].min() >= 250  # white stays ~255 (limited range would give 235)
    assert out[:, :, :, :24].max() <= 5  # black stays ~0 (limited range would give 16)


def test_variable_frame_rate(tmp_path, frames):
    pts_ms = [0, 40, 80, 200, 210, 220, 500, 540, 1000, 1010]
    path = vf.vfr(tmp_path / "vfr.mkv", frames[:10], pts_ms)
    info = probe(path)
    assert info.num_frames == 10
    assert 1.01 < info.duration < 1.1  # last pts plus one frame, whatever the header's 25 fps says
    assert info.fps == pytest.approx(10 / info.duration)
    assert torch.equal(read_frames(path, [9, 3, 4]), as_tchw(frames[[9, 3, 4]]))


def test_one_frame_video(tmp_path, frames):
    path = vf.lossless(tmp_path / "one.mkv", frames[:1])
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 1 and reader.info.keyframe_interval is None
        assert reader.info.fps == pytest.approx(25)
        assert torch.equal(reader.get_frames([0, 0]), as_tchw(frames[[0, 0]]))


def test_index_errors_name_num_frames(videos):
    with VideoReader(videos["lossless"]) as reader:
        for bad in ([40], [-1], [0, 100]):
            with pytest.raises(FrameIndexError, match=r"num_frames=40") as err:
                reader.get_frames(bad)
            assert isinstance(err.value, IndexError) and isinstance(err.value, ValueError)
        with pytest.raises(TypeError):
            reader.get_frames([1.5])
        with pytest.raises(TypeError):
            reader.get_frames(torch.tensor([0.0]))
        assert reader.get_frames([]).shape == (0, 3, 48, 64)


def test_iter_chunks_covers_all_frames_in_order(videos, frames):
    with VideoReader(videos["bframes_mkv"]) as reader:
        chunks = list(reader.iter_chunks(7))
        assert [start for start, _ in chunks] == [0, 7, 14, 21, 28, 35]
        assert [len(c) for _, c in chunks] == [7, 7, 7, 7, 7, 5]
        assert torch.equal(torch.cat([c for _, c in chunks]), as_tchw(frames))
        strided = list(reader.iter_chunks(4, step=3, size=24))
        assert [start for start, _ in strided] == [0, 12, 24, 36]
        assert sum(len(c) for _, c in strided) == len(range(0, 40, 3))
        assert strided[0][1].shape[-2:] == (24, 32)
        with pytest.raises(ValueError, match="chunk_size"):
            next(reader.iter_chunks(0))


def test_pickled_reader_reopens(videos, frames):
    reader = VideoReader(videos["bframes_mkv"], threads=1)
    reader.get_frames([3])  # opens the decoder
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._impl is None and clone.info == reader.info  # no open container crossed over
    assert torch.equal(clone.get_frames([10, 2]), as_tchw(frames)[[10, 2]])
    reader.close()
    clone.close()
    assert torch.equal(reader.get_frames([1]), as_tchw(frames)[[1]])  # reopens after close


def test_reader_used_before_fork_works_in_dataloader_workers(videos, frames):
    reader = VideoReader(videos["bframes_mkv"], threads=2)
    reader.get_frames([0])  # an open container with decoder threads, inherited by forked workers

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return reader.get_frames([i * 9, i * 9 + 1])

    loader = torch.utils.data.DataLoader(
        Clips(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60
    )
    got = torch.stack(list(loader))  # (4, 2, C, H, W)
    expected = as_tchw(frames)[torch.tensor([[0, 1], [9, 10], [18, 19], [27, 28]])]
    assert torch.equal(got, expected)
    reader.close()


@needs_torchcodec
def test_torchcodec_matches_pyav(videos, tmp_path, frames):
    for name in ("bframes_mp4", "lossy_mp4"):
        with VideoReader(videos[name], backend="torchcodec") as tc, VideoReader(videos[name]) as pa:
            assert tc.backend == "torchcodec" and tc.info.num_frames == pa.info.num_frames
            indices = [39, 2, 17, 17, 0]
            assert torch.equal(tc.get_frames(indices), pa.get_frames(indices))
            assert tc.get_frames([1], size=24).shape == (1, 3, 24, 32)
    rotated = vf.rotated(tmp_path / "rot.mp4", frames[:4])
    with VideoReader(rotated, backend="torchcodec") as tc:
        assert (tc.info.rotation, tc.info.width, tc.info.height) == (90, 48, 64)
        assert torch.equal(tc.get_frames([3]), read_frames(rotated, [3]))
    assert VideoReader(videos["lossless"], backend="auto").backend == "torchcodec"


def test_unusable_torchcodec_falls_back_with_a_warning(videos, monkeypatch):
    monkeypatch.setattr(decode, "torchcodec_status", lambda: (False, "no FFmpeg libraries (test)"))
    with pytest.warns(UserWarning, match="no FFmpeg libraries"):
        reader = VideoReader(videos["lossless"], backend="torchcodec")
    assert reader.backend == "pyav"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert VideoReader(videos["lossless"], backend="auto").backend == "pyav"  # auto falls back quietly
    with pytest.raises(ValueError, match="backend must be one of"):
        VideoReader(videos["lossless"], backend="decord")


def test_limits_validate():
    with pytest.raises(ValueError, match="max_pixels"):
        Limits(max_pixels=0)
    assert Limits(max_pixels=None).max_pixels is None
