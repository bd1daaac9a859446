"""FrameWorker: one isolated process streams the frames a plan needs, in order, in chunks.

Real files written by the test; a stalled or crashing worker is a real process that sleeps or
dies (the ``prepare`` callables of video_factory run inside it). Letters: N frames, C, H, W.
"""
from __future__ import annotations

import functools

import pytest
import torch
import video_factory as vf

from cnnlstm.data.transforms import DataConfig, EvalResize
from cnnlstm.data.video.decode import VideoReader
from cnnlstm.data.video.errors import DecodeCrashError, DecodeTimeoutError, UnsupportedFormatError
from cnnlstm.data.video.sequential import FrameWorker


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("seq")
    bad = root / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    return {"bframes": vf.bframes(root / "b.mp4", vf.make_frames(60, 48, 64)),
            "small": vf.write(root / "s.mkv", vf.make_frames(20, 40, 56, seed=1)), "bad": str(bad)}


@pytest.fixture(scope="module")
def worker():
    with FrameWorker(timeout=120) as w:
        yield w


def test_chunks_equal_random_access_decoding_and_prepare_runs_in_the_worker(worker, videos):
    wanted = [0, 1, 5, 17, 18, 19, 40, 59]
    info = worker.open(videos["bframes"])
    assert (info.num_frames, info.width, info.height) == (60, 64, 48)
    chunks = list(worker.frames(wanted, chunk=3))
    assert [c[0].tolist() for c in chunks] == [[0, 1, 5], [17, 18, 19], [40, 59]]
    got = torch.cat([c[1] for c in chunks])  # (N, C, H, W)
    with VideoReader(videos["bframes"]) as reader:
        assert torch.equal(got, reader.get_frames(wanted)), "B-frames: a sequential pass == random access"
        cfg = DataConfig(input_size=24)  # resize_size 27: shorter side 48 -> 27
        resized = [f for _, f in worker.frames(wanted, chunk=4, prepare=EvalResize(cfg))]
        assert torch.equal(torch.cat(resized), EvalResize(cfg)(reader.get_frames(wanted)))
    assert resized[0].shape[-2:] == (27, 36) and worker.corrupt_frames == 0


def test_a_bad_video_raises_its_typed_error_and_the_worker_goes_on(worker, videos):
    with pytest.raises(UnsupportedFormatError, match="bad.mp4"):
        worker.open(videos["bad"])
    assert worker.open(videos["small"]).num_frames == 20
    with pytest.raises(ValueError, match="sorted and unique"):
        next(worker.frames([3, 1]))
    assert sum(len(i) for i, _ in worker.frames(range(20), chunk=7)) == 20


def test_leaving_early_kills_the_mid_stream_worker_and_the_next_open_starts_another(worker, videos):
    worker.open(videos["bframes"])
    first = worker._process
    for _ in worker.frames(range(60), chunk=2):
        break  # the worker is blocked sending the next chunk
    assert not first.is_alive()
    worker.open(videos["small"])
    assert worker._process is not first and len(list(worker.frames([0, 19]))) == 1


@pytest.mark.parametrize("prepare, error, message", [
    (functools.partial(vf.slow_frames, seconds=60), DecodeTimeoutError, "no frames for 1 s"),
    (vf.crash_on_frames, DecodeCrashError, "SIGSEGV"),
], ids=["stall", "crash"])
def test_a_stalled_or_crashed_worker_costs_one_video_not_the_caller(worker, videos, prepare, error, message):
    worker.open(videos["small"])  # a running worker: the timeout below measures the chunk, not a start-up
    worker.timeout = 1.0
    try:
        with pytest.raises(error, match=message) as raised:
            list(worker.frames([0, 1, 2], prepare=prepare))
    finally:
        worker.timeout = 120
    assert raised.value.path.endswith("s.mkv") and worker._process is None
    assert worker.open(videos["small"]).num_frames == 20, "a fresh worker after the failure"
    assert [len(f) for _, f in worker.frames([4])] == [1]


def test_a_long_stream_outlives_the_workers_backstop_alarm_which_counts_per_chunk(worker, videos):
    """The worker's alarm (an orphan's backstop) is re-armed for every chunk: 6 chunks of 1 s each
    stream fine under a 3 s alarm (a whole hour of video is one request)."""
    worker.open(videos["small"])
    worker.timeout, worker.alarm_margin = 3.0, 0.0
    try:
        chunks = list(worker.frames(range(6), chunk=1, prepare=functools.partial(vf.slow_frames, seconds=1.0)))
    finally:
        worker.timeout, worker.alarm_margin = 120.0, 60.0
    assert [int(i) for i, _ in chunks] == list(range(6))
