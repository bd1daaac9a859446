"""``cnnlstm serve --source ...``: N sources labelled in the server process, read back over real HTTP."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from test_serve import ServerThread, make_run  # noqa: E402
from video_factory import lossless, make_frames  # noqa: E402

from cnnlstm.deploy.serve.app import create_app  # noqa: E402


def test_the_server_labels_several_sources_and_serves_their_newest_answers(tmp_path):
    run = make_run(tmp_path)
    cams = [lossless(tmp_path / f"cam{i}.mkv", make_frames(n, 32, 32, seed=i)) for i, n in enumerate((7, 5))]
    with ServerThread(create_app(run, device="cpu", sources=cams, stream_options={"max_lag": 1.0})) as server:
        deadline = time.monotonic() + 60
        while True:
            body = httpx.get(f"{server.url}/streams", timeout=10).json()
            if not body["running"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(s["source"], s["frames"]) for s in body["sources"]] == [(cams[0], 7), (cams[1], 5)]
        assert all(s["latest"]["label"] in ("left", "right", "still") for s in body["sources"])
        assert body["sources"][1]["latest"]["frame"] == 4  # the newest frame of each file
        one = httpx.get(f"{server.url}/streams/1", timeout=10).json()
        assert one["source"] == cams[1] and one["frames"] == 5
        missing = httpx.get(f"{server.url}/streams/2", timeout=10)
        assert missing.status_code == 404 and "0..1" in missing.json()["detail"]


def test_a_server_without_sources_says_how_to_add_them(tmp_path):
    with ServerThread(create_app(make_run(tmp_path), device="cpu")) as server:
        response = httpx.get(f"{server.url}/streams", timeout=10)
        assert response.status_code == 404 and "--source" in response.json()["detail"]
