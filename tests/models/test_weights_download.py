"""Pretrained weights download on first use, against a real HTTP server on 127.0.0.1.

Every test points TORCH_HOME at tmp_path and CNNLSTM_WEIGHTS_URL at the local server. The served
files carry their own sha256 prefix in their name (as torchvision's do), so the tests replace the
arch -> torchvision URL lookup by one that names the served file.
"""
from __future__ import annotations

import hashlib
import io
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

from cnnlstm import create_encoder, create_model
from cnnlstm.models import weights
from cnnlstm.models.weights import (
    WeightsDownloadError,
    WeightsNotFoundError,
    cached_weights,
    default_weights_file,
    download_weights_file,
    sha256_prefix,
)

THREE_D = ["r3d_18", "mc3_18", "r2plus1d_18"]


@pytest.fixture
def server():
    """An HTTP server in a thread. ``routes[path] = (behaviour, body)``; ``requests`` lists every GET.

    Behaviours: "ok"; "drop" (full Content-Length, half the body, then the connection closes);
    "stall" (reads the request, sends nothing); "stall_body" (half the body, then nothing);
    "error" (HTTP 500). Unknown paths get a 404.
    """
    routes: dict[str, tuple[str, bytes]] = {}
    requests: list[str] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            kind, body = routes.get(self.path, ("missing", b""))
            if kind == "stall":
                release.wait(30)
                return
            if kind in ("missing", "error"):
                self.send_error(404 if kind == "missing" else 500)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if kind == "ok" else body[: len(body) // 2])
            self.wfile.flush()
            if kind == "stall_body":
                release.wait(30)
            # "drop": returning closes the socket with half the promised bytes sent

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}/weights/", routes=routes, requests=requests)
    release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path, server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CNNLSTM_WEIGHTS_URL", server.url)
    monkeypatch.delenv("CNNLSTM_OFFLINE", raising=False)
    monkeypatch.delenv("CNNLSTM_DOWNLOAD_TIMEOUT", raising=False)


def saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def serve_as(monkeypatch, server, arch: str, body: bytes, behaviour: str = "ok", tag: str | None = None) -> Path:
    """Serve ``body`` as ``arch``'s default weights file, named ``<arch>-<tag>.pth`` (tag: the body's
    real sha256 prefix unless given), and return where it belongs in the cache."""
    name = f"{arch}-{tag or hashlib.sha256(body).hexdigest()[:8]}.pth"
    lookup = weights.torchvision_weights_url
    monkeypatch.setattr(weights, "torchvision_weights_url",
                        lambda a: f"https://download.pytorch.org/models/{name}" if a == arch else lookup(a))
    server.routes[f"/weights/{name}"] = (behaviour, body)
    path, url = default_weights_file(arch)
    assert path.name == name and url == server.url + name
    return path


def cache_content(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


# --- downloads that work ----------------------------------------------------------------------------
def test_imagenet_weights_download_on_first_use_then_come_from_the_cache(server, monkeypatch, capsys):
    reference = torchvision.models.resnet18(weights=None)
    body = saved(reference.state_dict())
    path = serve_as(monkeypatch, server, "resnet18", body)

    enc = create_encoder("resnet18", weights="imagenet")
    assert cache_content(path) == [path.name] and path.read_bytes() == body
    assert server.requests == [f"/weights/{path.name}"]
    assert torch.equal(enc.stages["stem"][0].weight, reference.conv1.weight)
    assert torch.equal(enc.stages["layer4"][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    err = capsys.readouterr().err
    assert f"downloading {server.url}{path.name} to {path}" in err  # one line: from where, to where

    # the second time: no request and no re-hashing of the cached file
    monkeypatch.setattr(weights.hashlib, "sha256", lambda *a: pytest.fail("a cached file must not be re-hashed"))
    again = create_encoder("resnet18", weights="imagenet")
    assert len(server.requests) == 1 and "downloading" not in capsys.readouterr().err
    assert torch.equal(again.stages["layer3"][0].conv1.weight, reference.layer3[0].conv1.weight)


def test_kinetics_weights_download_for_a_3d_cnn(server, monkeypatch):
    state = torchvision.models.video.mc3_18(weights=None, num_classes=400).state_dict()  # Kinetics-shaped, 47 MB
    path = serve_as(monkeypatch, server, "mc3_18", saved(state))
    model = create_model("mc3_18", num_classes=5, weights="kinetics")
    assert cache_content(path) == [path.name] and len(server.requests) == 1
    assert torch.equal(model.encoder.stages["layer4"][1].conv2[0].weight, state["layer4.1.conv2.0.weight"])
    assert torch.equal(model.encoder.stages["stem"][0].weight, state["stem.0.weight"])
    assert model.head.fc.out_features == 5  # the Kinetics classifier is not loaded


def test_a_file_mirror_and_a_progress_bar(monkeypatch, tmp_path, capsys):
    body = b"weights" * 1000
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    (mirror / name).write_bytes(body)
    monkeypatch.setenv("CNNLSTM_WEIGHTS_URL", mirror.as_uri())  # no trailing slash: one is added
    monkeypatch.setattr(weights, "torchvision_weights_url", lambda a: f"https://download.pytorch.org/models/{name}")
    path, url = default_weights_file("resnet18")
    assert url == f"{mirror.as_uri()}/{name}"
    assert cached_weights("resnet18", progress=True) == path and path.read_bytes() == body
    err = capsys.readouterr().err
    assert "100%" in err and name in err  # tqdm's bar, on stderr


# --- downloads that fail leave nothing behind -------------------------------------------------------
def test_a_wrong_hash_is_refused(server, monkeypatch):
    body = saved({"w": torch.ones(3)})
    path = serve_as(monkeypatch, server, "resnet18", body, tag="00000000")
    with pytest.raises(WeightsDownloadError) as err:
        create_encoder("resnet18", weights="imagenet")
    message = str(err.value)
    assert f"{server.url}{path.name}" in message and str(path) in message
    assert f"sha256 is {hashlib.sha256(body).hexdigest()}" in message and "starts with 00000000" in message
    assert "Retry" in message and "CNNLSTM_WEIGHTS_URL" in message and "copy it to" in message
    assert cache_content(path) == []
    assert isinstance(err.value, WeightsNotFoundError)  # callers that catch the old error still do


def test_a_dropped_connection_is_an_error(server, monkeypatch):
    body = bytes(range(256)) * 4096  # 1 MiB
    path = serve_as(monkeypatch, server, "resnet18", body, behaviour="drop")
    with pytest.raises(WeightsDownloadError, match=r"the connection closed .*Nothing was saved"):
        cached_weights("resnet18")
    assert cache_content(path) == []


@pytest.mark.parametrize("behaviour", ["stall", "stall_body"])
def test_a_stalled_server_times_out(server, monkeypatch, behaviour):
    monkeypatch.setenv("CNNLSTM_DOWNLOAD_TIMEOUT", "1")
    path = serve_as(monkeypatch, server, "resnet18", b"x" * 100_000, behaviour=behaviour)
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match="the server sent nothing for 1 s") as err:
        cached_weights("resnet18")
    assert time.monotonic() - start < 5
    assert "CNNLSTM_DOWNLOAD_TIMEOUT" in str(err.value)
    assert cache_content(path) == []


def test_the_timeout_argument_wins_over_the_environment(server, monkeypatch):
    monkeypatch.setenv("CNNLSTM_DOWNLOAD_TIMEOUT", "60")
    path = serve_as(monkeypatch, server, "resnet18", b"x" * 1000, behaviour="stall")
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match="the server sent nothing for 0.5 s"):
        download_weights_file(server.url + path.name, path, timeout=0.5)
    assert time.monotonic() - start < 5 and cache_content(path) == []


@pytest.mark.parametrize("behaviour,reason", [("error", "HTTP 500"), ("missing", "HTTP 404")])
def test_a_server_error_is_an_error(server, monkeypatch, behaviour, reason):
    path = serve_as(monkeypatch, server, "resnet18", b"x", behaviour=behaviour)
    with pytest.raises(WeightsDownloadError, match=reason):
        cached_weights("resnet18")
    assert cache_content(path) == []


def test_an_unreachable_server_is_an_error(monkeypatch, server):
    path = serve_as(monkeypatch, server, "resnet18", b"x")
    monkeypatch.setenv("CNNLSTM_WEIGHTS_URL", "http://127.0.0.1:9/weights/")  # discard port: refused
    with pytest.raises(WeightsDownloadError, match="cannot reach the server"):
        cached_weights("resnet18")
    assert cache_content(path) == []


def test_an_interrupted_download_leaves_nothing(server, monkeypatch):
    path = serve_as(monkeypatch, server, "resnet18", b"x" * 100_000)

    def interrupt(fd):
        assert [p for p in cache_content(path) if p.endswith(".partial")], "the download goes to a temp file first"
        raise KeyboardInterrupt

    monkeypatch.setattr(weights.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        cached_weights("resnet18")
    assert cache_content(path) == []


# --- offline mode -------------------------------------------------------------------------------------
def test_offline_mode_does_not_download_and_says_what_to_fetch(server, monkeypatch):
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")
    path = serve_as(monkeypatch, server, "resnet18", saved({"w": torch.ones(1)}))
    with pytest.raises(WeightsNotFoundError) as err:
        create_encoder("resnet18", weights="imagenet")
    assert type(err.value) is WeightsNotFoundError  # not a failed download: none was tried
    message = str(err.value)
    assert path.name in message and str(path.parent) in message and f"{server.url}{path.name}" in message
    assert "CNNLSTM_OFFLINE=1" in message
    assert server.requests == [] and cache_content(path) == []


def test_the_offline_argument_wins_over_the_environment(server, monkeypatch):
    path = serve_as(monkeypatch, server, "resnet18", b"x" * 10)
    with pytest.raises(WeightsNotFoundError, match=r"downloads are off \(offline=True\)"):
        cached_weights("resnet18", offline=True)
    assert server.requests == []
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")
    assert cached_weights("resnet18", offline=False) == path and path.is_file()


def test_a_cached_file_is_used_offline_without_any_request(server, monkeypatch):
    monkeypatch.setenv("CNNLSTM_OFFLINE", "true")
    reference = torchvision.models.resnet18(weights=None)
    path, _ = default_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not touch the network"))
    enc = create_encoder("resnet18", weights="imagenet")
    assert torch.equal(enc.stages["layer1"][0].conv1.weight, reference.layer1[0].conv1.weight)


@pytest.mark.parametrize("arch", THREE_D)
def test_kinetics_offline_message_and_mirror_url(server, monkeypatch, arch):
    path, url = default_weights_file(arch)
    upstream = weights.torchvision_weights_url(arch)
    assert upstream.startswith("https://download.pytorch.org/models/") and upstream.endswith("/" + path.name)
    assert url == server.url + path.name  # the mirror replaces everything up to the file name
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=rf"Kinetics-400 weights for {arch}.*{path.name}.*{url}"):
        weights.cached_weights(arch, "Kinetics-400")
    monkeypatch.delenv("CNNLSTM_WEIGHTS_URL")
    assert default_weights_file(arch) == (path, upstream)
    assert server.requests == []


# --- names and settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "efficientnet_b0", *THREE_D])
def test_every_pretrained_file_name_carries_its_hash(arch):
    path, _ = default_weights_file(arch)
    assert len(sha256_prefix(path.name)) >= 8


def test_sha256_prefix_follows_torch_hub():
    assert sha256_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert sha256_prefix("efficientnet_b0_rwightman-7f5810bc.pth") == "7f5810bc"
    with pytest.raises(ValueError, match="does not carry a sha256 prefix"):
        sha256_prefix("resnet18.pth")


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("CNNLSTM_OFFLINE", "maybe", "CNNLSTM_OFFLINE must be 1/true"),
        ("CNNLSTM_DOWNLOAD_TIMEOUT", "soon", "CNNLSTM_DOWNLOAD_TIMEOUT must be a number"),
        ("CNNLSTM_DOWNLOAD_TIMEOUT", "0", "must be > 0"),
        ("CNNLSTM_WEIGHTS_URL", "mirror.local/weights", "CNNLSTM_WEIGHTS_URL must be an http"),
    ],
)
def test_bad_settings_are_refused_before_any_request(server, monkeypatch, name, value, match):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        cached_weights("resnet18")
    assert server.requests == []
