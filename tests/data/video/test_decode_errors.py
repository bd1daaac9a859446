"""Bad input: typed errors that name the file, limits at probe time, corruption, isolation, leaks.

Every video is written at test time (see video_factory.py).
"""
from __future__ import annotations

import gc
import os

import pytest
import torch
import video_factory as vf

from cnnlstm.data.video import probe as probe_module
from cnnlstm.data.video.decode import FrameIndexError, Limits, VideoReader, probe, read_frames
from cnnlstm.data.video.errors import (
    CorruptVideoError,
    DecodeCrashError,
    DecodeTimeoutError,
    EmptyVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    UnsupportedFormatError,
    VideoError,
    VideoLimitError,
    VideoOpenError,
)
from cnnlstm.data.video.isolate import run_isolated


@pytest.fixture(scope="module")
def frames():
    return vf.make_frames(40)


@pytest.fixture(scope="module")
def h264(tmp_path_factory, frames) -> str:
    """A lossy H.264 mkv with P/B-frames: what a bit flip should damage visibly."""
    return vf.write(tmp_path_factory.mktemp("h264") / "h264.mkv", frames, options={"g": "10", "sc_threshold": "0"})


def expect_error(path, error: type[VideoError], match: str | None = None, **kwargs) -> VideoError:
    with pytest.raises(error, match=match) as caught:
        probe(path, **kwargs)
    assert caught.value.path == os.fspath(path) and os.fspath(path) in str(caught.value)
    with pytest.raises(error):  # the reader raises the same, at construction
        VideoReader(path, **kwargs)
    return caught.value


def test_missing_empty_and_unreadable_files(tmp_path):
    expect_error(tmp_path / "missing.mp4", VideoOpenError, "no such file")
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_error(tmp_path / "empty.mp4", VideoOpenError, "empty")
    expect_error(tmp_path, VideoOpenError, "not a regular file")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.mkv"
        locked.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(100))
        locked.chmod(0)
        expect_error(locked, VideoOpenError)


def test_garbage_and_playlists_are_unsupported_formats(tmp_path):
    expect_error(vf.random_bytes(tmp_path / "noise.mp4"), UnsupportedFormatError, "not a container")
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
    expect_error(tmp_path / "list.m3u8", UnsupportedFormatError, "playlist")


def test_truncated_files(tmp_path, frames):
    # index (moov) at the end: cutting the file loses it -> the mp4 cannot be opened
    tail_index = vf.mp4(tmp_path / "moov_end.mp4", frames, faststart=False)
    expect_error(vf.truncate(tail_index, tmp_path / "cut_end.mp4"), CorruptVideoError, "truncated or damaged")
    # the head cut off: nothing left says what the file is
    expect_error(vf.truncate(tail_index, tmp_path / "cut_head.mp4", head=True), UnsupportedFormatError)
    # index at the start (faststart): the index promises 40 frames, the payload holds fewer
    head_index = vf.mp4(tmp_path / "moov_start.mp4", frames, faststart=True)
    cut = vf.truncate(head_index, tmp_path / "cut_payload.mp4")
    info = probe(cut)
    assert 10 < info.num_frames < 40 and info.corrupt_frames >= 1  # the partial last packet is dropped
    with VideoReader(cut) as reader:
        out = reader.get_frames([0, info.num_frames - 1])
        assert out.shape == (2, 3, 48, 64) and reader.corrupt_frames == 0  # what remains decodes cleanly
    with pytest.raises(CorruptVideoError, match="truncated"):
        VideoReader(cut, strict=True)
    # Matroska cut short: the demuxer stops at the last whole block; nothing to conceal
    mkv = vf.truncate(vf.lossless(tmp_path / "full.mkv", frames), tmp_path / "cut.mkv")
    assert 0 < probe(mkv).num_frames < 40 and probe(mkv).duration < 1.6


def test_bit_flipped_payload_is_counted_or_raises(tmp_path, h264):
    flipped = vf.bit_flip(h264, tmp_path / "flipped.mkv")
    with VideoReader(flipped) as reader:
        out = reader.get_frames(range(reader.info.num_frames))
        assert out.shape[0] == reader.info.num_frames
        assert reader.corrupt_frames > 0  # concealed, but not silent
    with pytest.raises(CorruptVideoError):
        with VideoReader(flipped, strict=True) as reader:
            reader.get_frames(range(reader.info.num_frames))
    with VideoReader(h264, strict=True) as reader:  # strict on a clean file is quiet
        reader.get_frames(range(40))
        assert reader.corrupt_frames == 0


def test_unknown_codec(tmp_path, frames):
    expect_error(vf.unknown_codec(tmp_path / "unknown.mkv", frames[:3]), UnsupportedCodecError, "no decoder")


def test_audio_only_has_no_video_stream(tmp_path):
    expect_error(vf.audio_only(tmp_path / "audio.mka"), NoVideoStreamError, "streams: audio")


def test_zero_frame_video_track_is_empty(tmp_path):
    expect_error(vf.zero_frame_video(tmp_path / "zero.mkv"), EmptyVideoError, "no packets")


def test_limits_are_checked_at_probe_time(tmp_path, frames):
    small = vf.lossless(tmp_path / "small.mkv", frames[:24])
    error = expect_error(small, VideoLimitError, "max_pixels", limits=Limits(max_pixels=100))
    assert "3072" in str(error)  # names the value: 64 * 48
    expect_error(small, VideoLimitError, "max_duration_s", limits=Limits(max_duration_s=0.5))
    expect_error(small, VideoLimitError, "max_frames", limits=Limits(max_frames=10))  # counted, not from the header
    expect_error(vf.zero_frame_video(tmp_path / "two.mkv"), VideoLimitError, "max_streams",
                 limits=Limits(max_streams=1))
    assert probe(small, limits=None).num_frames == 24


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to measure peak memory")
def test_genuine_resolution_and_duration_bombs(tmp_path):
    huge = vf.huge_resolution(tmp_path / "huge.mkv", side=8192)
    assert os.path.getsize(huge) < 2_000_000  # tiny file, 64 M pixels per frame
    expect_error(huge, VideoLimitError, "pixels = 6.7")
    # rejected before any decoding: FFmpeg's own probing decode (find_stream_info) is capped too
    outcome, grown_mb = run_isolated(vf.probe_peak_memory, huge, timeout=120, path=huge)
    assert outcome == "VideoLimitError" and grown_mb < 64  # one decoded frame would be ~170 MB
    long = vf.long_duration(tmp_path / "long.mkv", hours=5)
    assert os.path.getsize(long) < 20_000
    expect_error(long, VideoLimitError, "max_duration_s")
    assert probe(long, limits=Limits(max_duration_s=None)).num_frames == 3


def test_errors_are_typed_in_the_isolated_worker(tmp_path, frames):
    path = vf.lossless(tmp_path / "ok.mkv", frames[:5])
    out = run_isolated(read_frames, path, [4, 0], timeout=120, path=path)
    assert torch.equal(out, read_frames(path, [4, 0]))
    with pytest.raises(CorruptVideoError, match="raised in the worker"):
        run_isolated(vf.raise_corrupt, path, timeout=120, path=path)
    with pytest.raises(FrameIndexError, match="num_frames=5"):  # other exceptions keep their type
        run_isolated(read_frames, path, [9], timeout=120, path=path)


def test_isolated_worker_crash_and_timeout(tmp_path):
    path = str(tmp_path / "victim.mp4")
    with pytest.raises(DecodeCrashError, match="SIGSEGV") as crash:
        run_isolated(vf.crash, timeout=120, path=path)
    assert crash.value.path == path
    with pytest.raises(DecodeTimeoutError, match="longer than 3 s"):
        run_isolated(vf.hang, 60, timeout=3, path=path)
    with pytest.raises(DecodeCrashError, match="out of memory"):
        run_isolated(vf.allocate, 4096, timeout=120, path=path, max_memory_mb=256)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    """Current resident memory (not the high-water mark, which earlier tests may have set)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count file descriptors")
def test_no_leaks_over_many_open_read_close_cycles(tmp_path, frames, monkeypatch):
    monkeypatch.setattr(probe_module, "_CACHE_SIZE", 0)  # probe every time too
    paths = [vf.bframes(tmp_path / f"v{i}.mkv", frames[:12]) for i in range(2)]

    def cycle(n: int) -> None:
        for i in range(n):
            with VideoReader(paths[i % 2], threads=1) as reader:
                reader.get_frames([i % 12, 11, 0])
        gc.collect()

    cycle(30)  # warm up allocator pools and lazy imports
    fds, rss = _open_fds(), _rss_mb()
    cycle(150)
    assert _open_fds() == fds
    assert _rss_mb() - rss < 20
