"""``cnnlstm serve`` against a real uvicorn server on 127.0.0.1: the API and its upload-safety layer.

The run directory is built directly (tiny backbone, 32 px, 6 frames); test videos are written at
test time. Limits are set small in the fixture so each rejection costs kilobytes.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx")

from video_factory import audio_only, long_duration, make_frames, random_bytes, truncate  # noqa: E402

from cnnlstm.data.video.encode import write_video  # noqa: E402

LABELS = ["left", "right", "still"]
MAX_UPLOAD_MB = 0.25  # 256 KiB: every test video fits, the oversize bodies do not
LIMIT = int(MAX_UPLOAD_MB * 2**20)


def make_run(root: Path, *, model: str = "cnn_lstm", task: str = "classify", bias: list[float] | None = None) -> Path:
    """A finished run directory of an untrained tiny model: config.yaml, labels.json, model.safetensors.
    ``bias`` (K,): a head that ignores its input and answers these logits."""
    import torch

    from cnnlstm.config import TrainConfig, dump_yaml
    from cnnlstm.engine.checkpoint import save_weights
    from cnnlstm.run import build_model

    run = root / f"run-{model}-{task}"
    run.mkdir(parents=True)
    cfg = TrainConfig(model=model, backbone="test_tiny", size=32, frames=6, hidden_size=16, out=str(run), task=task)
    (run / "config.yaml").write_text(dump_yaml(cfg))
    (run / "labels.json").write_text(json.dumps(LABELS))
    net = build_model(cfg, len(LABELS))
    if bias is not None:
        with torch.no_grad():
            net.head.fc.weight.zero_()
            net.head.fc.bias.copy_(torch.tensor(bias))
    save_weights(net, run / "model.safetensors")
    return run


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 at a free port, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # noqa: BLE001 - a failed start exits the thread; __enter__ reports it
            self.error = exc

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start ({self.error!r}; see the log above)")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.host, self.port, self.url = "127.0.0.1", port, f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    good = Path(write_video(d / "good.mp4", make_frames(12, 48, 64)))
    out = {
        "good": good,
        "webm": Path(write_video(d / "good.webm", make_frames(8, 32, 32))),
        "long": Path(write_video(d / "long.mkv", make_frames(30, 32, 32), fps=10)),  # 3 s > max_duration_s
        "big": Path(write_video(d / "big.mp4", make_frames(2, 96, 128))),  # 12288 px > max_pixels
        "bomb": Path(long_duration(d / "bomb.mkv", hours=5.0)),
        "garbage": Path(random_bytes(d / "garbage.mp4", 4096)),
        "truncated": Path(truncate(good, d / "truncated.mp4", keep=0.3)),
        "audio": Path(audio_only(d / "audio.mkv")),
        "text": d / "notes.txt",
        "playlist": d / "playlist.mp4",
    }
    out["text"].write_text("not a video\n")
    out["playlist"].write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from cnnlstm.deploy.serve.app import create_app

    root = tmp_path_factory.mktemp("serve")
    app = create_app(make_run(root), max_upload_mb=MAX_UPLOAD_MB, max_duration_s=2.0, max_pixels=100 * 100,
                     max_concurrent=1, queue_timeout=0.0, timeout=60, device="cpu", upload_dir=root / "uploads")
    with ServerThread(app) as srv:
        srv.client = httpx.Client(base_url=srv.url, timeout=60)
        yield srv
        srv.client.close()


def uploads_left(server) -> list[str]:
    return os.listdir(server.app.state.upload_dir)


def post_file(server, path: Path, name: str | None = None, content_type: str = "video/mp4") -> httpx.Response:
    with open(path, "rb") as f:
        return server.client.post("/predict", files={"file": (name or path.name, f, content_type)})


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert "Traceback" not in body["detail"]
    if error is not None:
        assert body["error"] == error, body
    return body


def test_health_and_models(server):
    assert server.client.get("/health").json() == {"status": "ok"}
    info = server.client.get("/models").json()
    assert info["task"] == "classify" and info["labels"] == LABELS
    assert info["frames"] == 6 and info["size"] == 32 and info["model"] == "cnn_lstm"


@pytest.mark.parametrize("kind", ["good", "webm"])
def test_predict_good_video(server, videos, kind):
    response = post_file(server, videos[kind])
    assert response.status_code == 200, response.text
    row = response.json()
    assert row["filename"] == videos[kind].name and "path" not in row
    assert row["label"] in LABELS and 0 < row["score"] <= 1
    assert [label for label, _ in row["topk"]][0] == row["label"]
    assert sum(p for _, p in row["topk"]) <= 1 + 1e-5
    assert len(row["frame_indices"]) == len(row["frame_times"]) == 6
    assert row["frame_times"] == sorted(row["frame_times"]) and 0 <= row["frame_times"][0] < row["duration"]
    assert uploads_left(server) == []


def test_a_multi_label_run_answers_every_label_above_its_threshold(tmp_path_factory, videos):
    from cnnlstm.deploy.serve.app import create_app

    root = tmp_path_factory.mktemp("serve-multilabel")
    run = make_run(root, task="multilabel", bias=[3.0, -3.0, 1.0])  # left 95.3%, right 4.7%, still 73.1%
    with pytest.raises(ValueError, match="threshold"):
        create_app(run, threshold=-0.1)
    app = create_app(run, max_upload_mb=MAX_UPLOAD_MB, max_concurrent=1, timeout=60, device="cpu",
                     upload_dir=root / "uploads", threshold=0.7)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        assert client.get("/models").json()["task"] == "multilabel"
        with open(videos["good"], "rb") as f:
            response = client.post("/predict", files={"file": ("good.mp4", f, "video/mp4")})
    assert response.status_code == 200, response.text
    row = response.json()
    assert row["labels"] == [["left", pytest.approx(0.952574, abs=1e-6)], ["still", pytest.approx(0.731059, abs=1e-6)]]
    assert row["threshold"] == 0.7 and row["label"] == "left"
    assert [label for label, _ in row["topk"]] == ["left", "still", "right"]


def test_client_filename_is_not_used_on_disk(server, videos):
    name = "../../evil name\u202e.mp4"  # path traversal and a right-to-left override (a format character)
    response = post_file(server, videos["good"], name=name)
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "evil name.mp4"  # basename, control and format characters dropped
    assert not (Path(server.app.state.upload_dir).parent.parent / "evil name.mp4").exists()
    assert uploads_left(server) == []


@pytest.mark.parametrize("kind, status, error", [
    ("garbage", 415, "unsupported_format"),  # random bytes named .mp4: not a container by its first bytes
    ("playlist", 415, "unsupported_format"),  # an HLS playlist named .mp4 never reaches FFmpeg
    ("text", 415, "unsupported_format"),  # by extension, before the body is read
    ("audio", 422, "no_video"),
    ("truncated", 422, "corrupt"),
    ("long", 422, "limit"),
    ("bomb", 422, "limit"),
    ("big", 422, "limit"),
])
def test_bad_uploads_are_rejected_cleanly(server, videos, kind, status, error):
    body = assert_error(post_file(server, videos[kind]), status, error)
    assert str(server.app.state.upload_dir) not in body["detail"]  # no server-side path leaks
    if kind in ("long", "bomb"):
        assert "duration" in body["detail"]
    if kind == "big":
        assert "pixels" in body["detail"]
    assert uploads_left(server) == []


def test_real_video_with_a_disallowed_extension(server, videos):
    assert_error(post_file(server, videos["good"], name="clip.gif", content_type="image/gif"), 415,
                 "unsupported_format")
    assert_error(post_file(server, videos["good"], name="clip"), 415, "unsupported_format")


def test_empty_file_and_missing_field(server, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_error(post_file(server, empty), 400, "empty_file")
    assert_error(server.client.post("/predict", data={"video": "x"}, files={"other": ("a.mp4", b"x")}), 400, "no_file")
    assert_error(server.client.post("/predict", content=b"{}", headers={"content-type": "application/json"}), 400)
    assert uploads_left(server) == []


def test_too_big_with_content_length(server):
    body = assert_error(server.client.post("/predict", files={"file": ("big.mp4", b"\0" * (LIMIT + 1024))}), 413,
                        "too_large")
    assert "MiB" in body["detail"]
    assert uploads_left(server) == []


def test_too_big_chunked_without_content_length(server):
    """httpx sends a generator body chunked (no Content-Length); the server stops it at the limit."""
    sent = 0
    total = 64 * LIMIT  # 16 MiB that the server must not wait for

    def body():
        nonlocal sent
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        chunk = b"\0\0\0\x18ftypisom" + b"\0" * (64 * 1024 - 12)
        while sent < total:
            sent += len(chunk)
            yield chunk
        yield b"\r\n" + boundary + b"--\r\n"

    response = server.client.post("/predict", content=body(), headers={"content-type": "multipart/form-data; "
                                                                       "boundary=b0undary"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "too_large")
    assert sent < total / 2, f"the client had to send {sent} of {total} bytes before the 413"
    assert uploads_left(server) == []


def test_413_arrives_while_the_body_is_still_incomplete(server):
    """A raw chunked upload that passes the limit and then stalls: the answer must come without the rest."""
    boundary = "xyz"
    head = (f"POST /predict HTTP/1.1\r\nHost: {server.host}\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'.encode()
    payload = part + b"\0" * (LIMIT + 4096)  # over the limit, and the multipart never closes
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head)
        for i in range(0, len(payload), 16384):
            piece = payload[i:i + 16384]
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        response = b""
        while b"\r\n\r\n" not in response:  # raises socket.timeout if the server waits for more body
            data = sock.recv(65536)
            if not data:
                break
            response += data
    assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_content_length_over_the_limit_is_rejected_before_any_body(server):
    head = (f"POST /predict HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {50 * 2**30}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head)  # and no body at all
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")


def test_busy_server_answers_503_with_retry_after(server, videos):
    slots = server.app.state.slots
    assert slots.acquire(blocking=False)  # hold the only prediction slot (max_concurrent=1, queue_timeout=0)
    try:
        response = post_file(server, videos["good"])
    finally:
        slots.release()
    assert_error(response, 503, "busy")
    assert int(response.headers["retry-after"]) >= 1
    assert uploads_left(server) == []


class GatedPredictor:
    """The real Predictor behind a gate: a prediction starts, says so, and waits until the test opens
    the gate, so the server holds its only slot for as long as the test needs (no sleeps, no race)."""

    def __init__(self, real):
        self.real, self.entered, self.gate = real, threading.Event(), threading.Event()

    def predict(self, paths):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.real.predict(paths)


def test_concurrent_uploads_beyond_the_slots_get_503_with_retry_after(server, videos):
    data = videos["good"].read_bytes()
    state = server.app.state
    gated = GatedPredictor(state.predictor)

    def upload(i: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return client.post("/predict", files={"file": (f"clip{i}.mp4", data, "video/mp4")})

    real, state.predictor = state.predictor, gated
    try:
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(upload, 0)
            assert gated.entered.wait(60), "the first upload never reached the predictor"
            # the only slot (max_concurrent=1, queue_timeout=0) is held: every other upload is refused
            others = [f.result(60) for f in [pool.submit(upload, i) for i in range(1, 6)]]
            gated.gate.set()
            served = first.result(60)
    finally:
        gated.gate.set()
        state.predictor = real
    assert served.status_code == 200 and served.json()["label"] in LABELS, served.text
    for r in others:
        assert_error(r, 503, "busy")
        assert int(r.headers["retry-after"]) >= 1
    assert uploads_left(server) == []


def test_unexpected_error_is_a_clean_500(server, videos):
    class Broken:
        def predict(self, paths):
            raise RuntimeError(f"boom in {paths[0]}")

    state = server.app.state
    real, state.predictor = state.predictor, Broken()
    try:
        body = assert_error(post_file(server, videos["good"]), 500, "internal")
    finally:
        state.predictor = real
    assert "boom" not in body["detail"] and "upload-" not in body["detail"]
    assert uploads_left(server) == []


def test_page_and_static_files(server):
    page = server.client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="file"', 'id="status"', 'id="timeline"', 'id="topk"', 'id="label"', 'id="error"'):
        assert element in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = server.client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "http" not in server.client.get("/static/app.js").text.replace("HTTP", "")  # nothing external loads
    assert_error(server.client.get("/nope"), 404, "not_found")
    assert_error(server.client.get("/predict"), 405)


def test_cli_registers_serve():
    from cnnlstm.cli import build_parser

    args = build_parser().parse_args(["serve", "RUN", "--port", "0", "--max-upload-mb", "5", "--max-concurrent", "3"])
    assert (args.run, args.host, args.port, args.max_upload_mb, args.max_concurrent) == ("RUN", "127.0.0.1", 0, 5, 3)
    assert args.func.__name__ == "cmd_serve"


def test_cli_missing_run_dir_is_a_clear_error(tmp_path, capsys):
    from cnnlstm.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_own_upload_dir_is_removed_at_shutdown_and_after_a_failed_start(tmp_path, monkeypatch):
    import tempfile

    from cnnlstm.deploy.serve.app import create_app

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with ServerThread(create_app(make_run(tmp_path), device="cpu")) as srv:
        assert Path(srv.app.state.upload_dir).parent == tmp_path / "tmp"
        assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
    assert os.listdir(tmp_path / "tmp") == []

    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(RuntimeError, match="did not start"):
        with ServerThread(create_app(tmp_path / "not-a-run", device="cpu")):
            pass
    assert os.listdir(tmp_path / "tmp") == []
