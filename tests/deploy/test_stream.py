"""cnnlstm.deploy.stream: causal streaming over real files, folders and HTTP (real PyAV, real servers).

Letters: T frames, C channels, H/W height/width, K classes.
"""
from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import video_factory as vf

from cnnlstm.cli import main
from cnnlstm.config import TrainConfig, dump_yaml
from cnnlstm.data.transforms import eval_transform
from cnnlstm.data.video.decode import VideoReader
from cnnlstm.data.video.errors import UnsupportedFormatError, VideoOpenError
from cnnlstm.data.video.live import open_source
from cnnlstm.deploy.stream import stream
from cnnlstm.engine.checkpoint import save_weights
from cnnlstm.run import build_model, load_run

CLASSES = ["walk", "run", "jump"]  # K = 3 = top-k, so each frame dict holds the whole distribution


def make_run(folder: Path, model: str = "cnn_lstm", *, task: str = "classify",
             bias: list[float] | None = None) -> Path:
    """A run directory with random weights: config.yaml, labels.json, model.safetensors. ``bias``
    (K,): a head that ignores its input and answers these logits."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model=model, backbone="test_tiny", size=32, hidden_size=16, task=task)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(CLASSES))
    net = build_model(cfg, len(CLASSES))
    if bias is not None:
        with torch.no_grad():
            net.head.fc.weight.zero_()
            net.head.fc.bias.copy_(torch.tensor(bias))
    save_weights(net, folder / "model.safetensors")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {name: make_run(root / name, name) for name in ("cnn_lstm", "seq2seq_cnn_lstm")}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """12 lossless frames, 40x48 at 25 fps (the transform resizes and crops them to 32x32)."""
    return Path(vf.lossless(tmp_path_factory.mktemp("videos") / "clip.mkv", vf.make_frames(12, 40, 48)))


def frames_of(events: list[dict]) -> list[dict]:
    return [e for e in events if "event" not in e]


def probs(event: dict) -> torch.Tensor:
    """The frame dict's distribution (K,) in class order."""
    p = dict(event["topk"])
    return torch.tensor([p[c] for c in CLASSES])


def reference(run: Path, path: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """The run's model and the whole video decoded by VideoReader and transformed: (1, T, C, S, S)."""
    loaded = load_run(run, device="cpu")
    with VideoReader(str(path)) as reader:
        frames = reader.get_frames(list(range(reader.info.num_frames)))  # (T, C, H, W)
    return loaded.model, eval_transform(loaded.data_cfg)(frames)[None]


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().softmax(-1)


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    """The same frames as yuv420p H.264 in mp4, with B-frames (decode order != presentation order)."""
    return Path(vf.write(tmp_path_factory.mktemp("h264") / "clip.mp4", vf.make_frames(12, 40, 48), options={"bf": "2"}))


@pytest.mark.parametrize("kind", ["lossless", "h264"])
@torch.inference_mode()
def test_a_clip_model_stepping_through_a_file_equals_running_it_on_the_clip(runs, video, h264, kind):
    video = video if kind == "lossless" else h264  # the h264 case also checks the colour conversion against VideoReader
    model, clip = reference(runs["cnn_lstm"], video)
    events = list(stream(runs["cnn_lstm"], video, device="cpu"))
    assert [e["frame"] for e in events] == list(range(12))
    assert [e["time"] for e in events] == pytest.approx([i / 25 for i in range(12)])
    torch.testing.assert_close(probs(events[-1]), softmax(model(clip).logits[0]), atol=1e-4, rtol=0)
    for t in (0, 4):  # every step answers for the stream so far
        torch.testing.assert_close(probs(events[t]), softmax(model(clip[:, : t + 1]).logits[0]), atol=1e-4, rtol=0)
    first = events[0]
    assert set(first) == {"source", "frame", "time", "label", "score", "topk", "fps", "reset"}
    assert first["source"] == str(video)
    assert first["label"] == first["topk"][0][0] and first["score"] == first["topk"][0][1]
    assert not any(e["reset"] for e in events) and all(e["fps"] > 0 for e in events)


@torch.inference_mode()
def test_a_per_frame_model_labels_each_frame_as_on_the_whole_clip(runs, video):
    model, clip = reference(runs["seq2seq_cnn_lstm"], video)
    per_frame = softmax(model(clip).logits[0])  # (T, K)
    events = list(stream(runs["seq2seq_cnn_lstm"], video, device="cpu"))
    assert len(events) == 12
    torch.testing.assert_close(torch.stack([probs(e) for e in events]), per_frame, atol=1e-4, rtol=0)


@torch.inference_mode()
def test_a_multi_label_run_streams_a_sigmoid_per_class_and_every_label_above_the_threshold(tmp_path, video):
    run = make_run(tmp_path / "ml", task="multilabel")
    model, clip = reference(run, video)
    events = list(stream(run, video, threshold=0.5))
    for t in (0, 11):
        expected = model(clip[:, : t + 1]).logits[0].float().sigmoid()  # (K,): classes do not compete
        torch.testing.assert_close(probs(events[t]), expected, atol=1e-4, rtol=0)
        assert events[t]["labels"] == [[c, p] for c, p in events[t]["topk"] if p >= 0.5]
        assert events[t]["label"] == events[t]["topk"][0][0] and events[t]["threshold"] == 0.5
    assert set(events[0]) == {"source", "frame", "time", "label", "score", "labels", "threshold", "topk", "fps",
                              "reset"}
    assert all(len(e["labels"]) == 3 for e in stream(run, video, threshold=0.0, max_frames=2))
    with pytest.raises(ValueError, match="threshold"):
        stream(run, video, threshold=1.5)


def test_the_cli_prints_every_label_of_a_multi_label_run(tmp_path, video, capsys):
    run = make_run(tmp_path / "ml", task="multilabel", bias=[4.0, -4.0, 3.0])  # walk 98.2%, run 1.8%, jump 95.3%
    assert main(["stream", str(run), str(video), "--max-frames", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("walk 98.2%, jump 95.3%" in line and "run" not in line for line in lines)
    assert main(["stream", str(run), str(video), "--max-frames", "1", "--threshold", "0.99"]) == 0
    assert "(no label at or above 99%)" in capsys.readouterr().out
    assert main(["stream", str(run), str(video), "--max-frames", "1", "--json"]) == 0
    event = json.loads(capsys.readouterr().out)
    assert [label for label, _ in event["labels"]] == ["walk", "jump"] and event["label"] == "walk"


@torch.inference_mode()
def test_every_and_fps_skip_frames_and_the_model_sees_only_the_processed_ones(runs, video):
    model, clip = reference(runs["cnn_lstm"], video)
    events = list(stream(runs["cnn_lstm"], video, every=3))
    assert [e["frame"] for e in events] == [0, 3, 6, 9]
    torch.testing.assert_close(probs(events[-1]), softmax(model(clip[:, [0, 3, 6, 9]]).logits[0]), atol=1e-4, rtol=0)
    events = list(stream(runs["cnn_lstm"], video,
                         fps=10))  # 25 fps source, 0.48 s: at most 10 per second of stream time
    assert [e["frame"] for e in events] == [0, 3, 5, 8, 10]
    assert all(e["time"] >= i / 10 - 1e-6 for i, e in enumerate(events))  # the i-th processed frame is not early
    both = list(stream(runs["cnn_lstm"], video, every=2, fps=10, max_frames=3))
    assert [e["frame"] for e in both] == [0, 4, 6]


@torch.inference_mode()
def test_reset_every_restarts_the_state(runs, video):
    model, clip = reference(runs["cnn_lstm"], video)
    events = list(stream(runs["cnn_lstm"], video, reset_every=4))
    assert [e["frame"] for e in events if e["reset"]] == [4, 8]
    torch.testing.assert_close(probs(events[5]), softmax(model(clip[:, 4:6]).logits[0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(probs(events[11]), softmax(model(clip[:, 8:12]).logits[0]), atol=1e-4, rtol=0)


def test_a_scene_cut_resets_the_state(runs, tmp_path):
    frames = vf.make_frames(10, 32, 32)
    frames[5:] = 255 - frames[5:]  # a hard cut at frame 5
    path = vf.lossless(tmp_path / "cut.mkv", frames)
    events = list(stream(runs["cnn_lstm"], path, reset_on_cut=0.25))
    assert [e["frame"] for e in events if e["reset"]] == [5]
    assert not any(e["reset"] for e in stream(runs["cnn_lstm"], path))  # off by default


@pytest.mark.parametrize("model", ["bi_cnn_lstm", "temporal_transformer"])
def test_non_causal_models_are_refused_with_the_streamable_list(tmp_path, model, video):
    run = make_run(tmp_path / model, model)
    with pytest.raises(ValueError, match=rf"'{model}' is not causal.*streamable models: .*cnn_lstm.*seq2seq_cnn_lstm"):
        stream(run, video)  # raised at the call, before any source is opened


def test_bad_arguments_are_refused(runs, video):
    for kwargs in ({"every": 0}, {"fps": 0.0}, {"reset_every": -1}, {"reset_on_cut": 2.0}, {"reconnect": -1},
                   {"max_frames": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            stream(runs["cnn_lstm"], video, **kwargs)


@torch.inference_mode()
def test_a_folder_streams_its_videos_in_order_with_a_fresh_state_each(runs, tmp_path):
    folder = tmp_path / "cams"
    folder.mkdir()
    vf.lossless(folder / "b.mkv", vf.make_frames(4, 32, 32, seed=1))
    vf.lossless(folder / "a.mkv", vf.make_frames(3, 32, 32, seed=2))
    (folder / "c.mp4").write_bytes(b"not a video" * 100)  # a bad file is an error event, then the folder goes on
    (folder / "d.mkv").symlink_to(folder / "a.mkv")
    (folder / "notes.txt").write_text("not a video")
    events = list(stream(runs["cnn_lstm"], folder))
    assert [(Path(e["source"]).name, e.get("event", e.get("frame"))) for e in events] == (
        [("a.mkv", i) for i in range(3)] + [("b.mkv", i) for i in range(4)] + [("c.mp4", "error")]
        + [("d.mkv", i) for i in range(3)])
    torch.testing.assert_close(torch.stack([probs(e) for e in events[-3:]]),
                               torch.stack([probs(e) for e in events[:3]]))
    alone = list(stream(runs["cnn_lstm"], folder / "b.mkv"))
    torch.testing.assert_close(torch.stack([probs(e) for e in events[3:7]]), torch.stack([probs(e) for e in alone]))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [e["event"] for e in stream(runs["cnn_lstm"], empty)] == ["error"]


def test_garbage_and_truncated_files_end_with_an_error_event(runs, tmp_path, video):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    mp4 = vf.write(tmp_path / "whole.mp4", vf.make_frames(12, 32, 32))  # the index (moov) is at the end
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(Path(mp4).read_bytes()[: os.path.getsize(mp4) // 2])
    for path, reason in ((garbage, "format"), (truncated, "corrupt"), (tmp_path / "missing.mkv", "open")):
        events = list(stream(runs["cnn_lstm"], path))
        assert [e.get("event") for e in events] == ["error"], path
        assert events[0]["reason"] == reason and str(path) in events[0]["message"]


def test_open_source_names_what_is_wrong(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="ftp.*rtsp"):
        open_source("ftp://127.0.0.1/video.mp4")
    with pytest.raises(VideoOpenError, match="no such capture device"):
        open_source("/dev/video-that-does-not-exist")
    with pytest.raises(VideoOpenError, match="is a folder"):
        open_source(tmp_path)


# --- HTTP sources: a real server on 127.0.0.1 ---------------------------------------------------------

class _Server:
    """ThreadingHTTPServer in a thread, serving ``data`` with a chosen behaviour after ``part`` of it."""

    def __init__(self, data: bytes, *, part: float = 1.0, then: str = "close"):
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "video/x-matroska")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: int(len(data) * part)])
                self.wfile.flush()
                if then == "stall":
                    outer.release.wait(30)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mkv"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(data: bytes, **kw) -> str:
        servers.append(_Server(data, **kw))
        return servers[-1].url

    yield start
    for s in servers:
        s.close()


def test_an_http_source_streams_like_the_file(runs, video, serve):
    url = serve(video.read_bytes())
    events = list(stream(runs["cnn_lstm"], url, read_timeout=5))
    local = list(stream(runs["cnn_lstm"], video))
    assert [e.get("event") for e in events] == [None] * 12  # a whole file over http ends normally
    assert events[0]["source"] == url
    torch.testing.assert_close(torch.stack([probs(e) for e in events]), torch.stack([probs(e) for e in local]))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return Path(vf.write(tmp_path_factory.mktemp("long") / "long.mkv", vf.make_frames(60, 32, 32), options={"g": "5"}))


def test_a_stalled_http_source_ends_with_an_error_event_after_the_read_timeout(runs, long_video, serve):
    url = serve(long_video.read_bytes(), part=0.6, then="stall")
    start = time.monotonic()
    events = list(stream(runs["cnn_lstm"], url, open_timeout=2, read_timeout=0.5, reconnect=1))
    elapsed = time.monotonic() - start
    kinds = [e.get("event") for e in events]
    assert kinds[-1] == "error" and events[-1]["reason"] == "timeout" and "stalled" in events[-1]["message"]
    assert kinds.count("reconnect") == 1 and kinds.count("error") == 1
    frames = [e["frame"] for e in frames_of(events)]
    assert 0 < len(frames) < 60 and frames == sorted(set(frames))  # the reopened file resumes after the last frame seen
    assert elapsed < 6, f"a stall must end within the timeouts, took {elapsed:.1f} s"


def test_a_dropped_http_source_ends_with_an_error_event(runs, long_video, serve):
    url = serve(long_video.read_bytes(), part=0.5, then="close")
    events = list(stream(runs["cnn_lstm"], url, read_timeout=2))
    assert frames_of(events) and events[-1]["event"] == "error" and events[-1]["reason"] == "stream"
    assert events[-1]["source"] == url


def test_an_unreachable_url_is_an_open_error(runs):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events = list(stream(runs["cnn_lstm"], f"http://127.0.0.1:{port}/live", open_timeout=2, read_timeout=1))
    assert [e["event"] for e in events] == ["error"] and events[0]["reason"] == "open"


# --- the command line -----------------------------------------------------------------------------------

def test_cli_json_lines_and_timeline_plot(runs, video, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "timeline.png"
    code = main(["stream", str(runs["cnn_lstm"]), str(video), "--json", "--every", "2", "--out", str(png), "--device",
                 "cpu"])
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["frame"] for r in rows] == [0, 2, 4, 6, 8, 10] and all(r["label"] in CLASSES for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_text_lines_and_exit_code_1_for_a_failed_source(runs, video, tmp_path, capsys):
    assert main(["stream", str(runs["cnn_lstm"]), str(video), "--max-frames", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("frame 1  t=0.04s  ") and lines[1].endswith(" fps")
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(b"\x00" * 1000)
    assert main(["stream", str(runs["cnn_lstm"]), str(garbage), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["event"] == "error"
