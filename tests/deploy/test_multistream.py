"""Many sources in one process, and live sources that never fall behind a slow model.

Real files written by the tests, a real MPEG-TS sender over UDP on 127.0.0.1, a real model (the
tiny CNN) made slow by a wrapper that sleeps in ``step``.
Letters: N streams, T frames, C channels, S crop side, K classes.
"""
from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import av
import pytest
import torch
import video_factory as vf
from test_stream import CLASSES, frames_of, make_run, probs

from cnnlstm.cli import main
from cnnlstm.deploy.stream import stream
from cnnlstm.deploy.streamer import BatchedState
from cnnlstm.models import create_model
from cnnlstm.run import load_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "cnn_lstm")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    """Three lossless videos of different sizes and lengths."""
    root = tmp_path_factory.mktemp("cams")
    shapes = ((9, 40, 48), (6, 32, 32), (12, 48, 40))
    return [Path(vf.lossless(root / f"cam{i}.mkv", vf.make_frames(t, h, w, seed=i)))
            for i, (t, h, w) in enumerate(shapes)]


def by_source(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in frames_of(events):
        out.setdefault(e["source"], []).append(e)
    return out


class SlowModel(torch.nn.Module):
    """A real model whose ``step`` takes at least ``delay`` seconds: slower than the camera."""

    streamable = True

    def __init__(self, model: torch.nn.Module, delay: float):
        super().__init__()
        self.model, self.delay, self.calls = model, delay, 0

    def init_state(self, *args, **kwargs):
        return self.model.init_state(*args, **kwargs)

    def step(self, x, state):
        self.calls += 1
        time.sleep(self.delay)
        return self.model.step(x, state)


def slow_run(run: Path, delay: float):
    loaded = load_run(run, device="cpu")
    return dataclasses.replace(loaded, model=SlowModel(loaded.model, delay))


@torch.inference_mode()
def test_several_sources_step_as_one_batch_and_each_equals_streaming_it_alone(run, videos):
    loaded = load_run(run, device="cpu")
    counting = SlowModel(loaded.model, 0.0)
    events = list(stream(dataclasses.replace(loaded, model=counting), videos))
    got = by_source(events)
    assert list(got) == [str(v) for v in videos]  # tagged with their source, in the given order
    assert [len(got[str(v)]) for v in videos] == [9, 6, 12]  # files: every frame
    assert counting.calls < 9 + 6 + 12  # batched: one step per tick, not one per frame
    for v in videos:
        alone = list(stream(run, v))
        assert [e["frame"] for e in got[str(v)]] == list(range(len(alone)))
        torch.testing.assert_close(torch.stack([probs(e) for e in got[str(v)]]),
                                   torch.stack([probs(e) for e in alone]), atol=1e-5, rtol=0)
    assert set(events[0]) == {"source", "frame", "time", "label", "score", "topk", "fps", "reset"}


def test_a_failing_source_does_not_stop_the_others_and_max_frames_is_per_source(run, videos, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 200)
    events = list(stream(run, [videos[0], garbage, videos[1]], max_frames=4))
    errors = [e for e in events if e.get("event") == "error"]
    assert [e["source"] for e in errors] == [str(garbage)] and errors[0]["reason"] == "format"
    got = by_source(events)
    assert {k: len(v) for k, v in got.items()} == {str(videos[0]): 4, str(videos[1]): 4}


def test_resets_are_per_source(run, videos):
    events = list(stream(run, videos[:2], reset_every=4))
    got = by_source(events)
    assert [e["frame"] for e in got[str(videos[0])] if e["reset"]] == [4, 8]
    assert [e["frame"] for e in got[str(videos[1])] if e["reset"]] == [4]


@pytest.mark.parametrize("model", ["cnn_lstm", "mean_pool", "deep_cnn_lstm"])
@torch.inference_mode()
def test_batched_state_steps_any_subset_of_streams_like_separate_streams(model):
    """Rows gathered for a tick and written back give what each stream alone gives."""
    net = create_model(model, num_classes=4, backbone="test_tiny").eval()
    frames = torch.randn(3, 5, 3, 32, 32)  # (N, T, C, S, S)
    state = BatchedState(net, 3, torch.device("cpu"))
    ticks = [[0, 1, 2], [0, 2], [1], [0, 1, 2], [2]]
    seen = [0, 0, 0]
    last = {}
    for rows in ticks:
        x = torch.stack([frames[r, seen[r]] for r in rows])  # (n, C, S, S)
        out, new = net.step(x, state.rows(rows))
        state.update(rows, new)
        for n, r in enumerate(rows):
            last[r] = out.logits[n]
            seen[r] += 1
    for r in range(3):
        alone = net(frames[r : r + 1, : seen[r]]).logits[0]  # (K,)
        torch.testing.assert_close(last[r], alone, atol=1e-5, rtol=1e-4)
    state.reset(1)
    fresh = net.init_state(1)
    for t, z in zip(state.rows([1])[0], fresh[0], strict=True):
        torch.testing.assert_close(t, z)


def test_a_file_played_in_real_time_skips_what_a_slow_model_cannot_take(run, tmp_path):
    path = vf.write(tmp_path / "cam.mp4", vf.make_frames(40, 32, 32), fps=25)  # 1.6 s
    events = frames_of(list(stream(slow_run(run, 0.1), path, realtime=True)))
    assert 8 <= len(events) <= 25, len(events)  # about one frame per model step, not all 40
    assert sum(e["skipped"] for e in events) + len(events) == 40  # every frame is processed or counted skipped
    assert max(e["lag_s"] for e in events) < 0.6  # one model step behind, never the whole backlog
    assert events[-1]["frame"] >= 36  # the last answer is about the end of the video
    every = frames_of(list(stream(slow_run(run, 0.02), path, realtime=False)))
    assert len(every) == 40 and "lag_s" not in every[0]  # off: every frame, as for files by default


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send_mpegts(port: int, seconds: float, fps: int = 25, delay: float = 0.5) -> None:
    """H.264 in MPEG-TS over UDP to 127.0.0.1 at the camera's pace (a keyframe every 0.5 s)."""
    time.sleep(delay)  # the receiver binds the port first
    frames = vf.make_frames(int(seconds * fps), 48, 64)
    with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps // 2)}
        start = time.monotonic()
        for i, image in enumerate(frames):
            time.sleep(max(0.0, start + i / fps - time.monotonic()))
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


def test_a_live_udp_source_stays_current_with_a_model_slower_than_the_camera(run):
    port = _free_udp_port()
    sender = threading.Thread(target=_send_mpegts, args=(port, 4.0), daemon=True)
    sender.start()
    events = list(stream(slow_run(run, 0.2), f"udp://127.0.0.1:{port}", open_timeout=5, read_timeout=1,
                         max_lag=0.5))
    sender.join(10)
    frames = frames_of(events)
    assert events[-1]["event"] == "error" and events[-1]["reason"] in ("timeout", "stream")  # the camera went away
    assert 8 <= len(frames) <= 40, len(frames)  # ~5 per second of a 25 fps camera
    assert sum(e["skipped"] for e in frames) >= 30  # and the rest counted as skipped, not queued
    steady = frames[1:-1]  # the first waits for the stream to open, the last for the demuxer to end
    assert max(e["lag_s"] for e in steady) <= 0.5 + 0.2 + 0.3, [e["lag_s"] for e in steady]  # max_lag + a step
    assert frames[-1]["time"] >= 3.0  # the newest answer is about the end of the 4 s, not second 0.8


def test_cli_several_sources_tag_their_lines(run, videos, capsys):
    assert main(["stream", str(run), str(videos[0]), str(videos[1]), "--max-frames", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split("]")[0] + "]" for line in lines) == sorted([f"[{videos[0]}]"] * 2 + [f"[{videos[1]}]"] * 2)
    assert main(["stream", str(run), str(videos[0]), str(videos[1]), "--json", "--max-frames", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["source"] for r in rows) == sorted([str(videos[0]), str(videos[1])])
    assert all(r["label"] in CLASSES for r in rows)
    assert main(["stream", str(run), str(videos[0]), str(videos[1]), "--out", "x.png"]) == 2
