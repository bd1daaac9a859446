"""Under torchrun, rank 0 downloads the pretrained weights while the other ranks wait: one download, not N.

Two real processes join a gloo group on 127.0.0.1 and fetch from a real HTTP server in this process,
which counts the requests. The served file is named with its own sha256 prefix, as torchvision's are.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch.multiprocessing as mp

BODY = bytes(range(256)) * 200  # the same in the spawned processes, which import this module again
NAME = f"resnet18-{hashlib.sha256(BODY).hexdigest()[:8]}.pth"


def _rank(rank: int, world: int, port: int, torch_home: str, url: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), TORCH_HOME=torch_home, CNNLSTM_WEIGHTS_URL=url, CNNLSTM_OFFLINE="0")
    from cnnlstm.config import TrainConfig
    from cnnlstm.engine import distributed
    from cnnlstm.engine.distributed import fetch_weights_first
    from cnnlstm.models import weights

    weights.torchvision_weights_url = lambda arch: f"https://download.pytorch.org/models/{NAME}"  # the served file
    info = distributed.setup("cpu")
    fetch_weights_first(TrainConfig(backbone="resnet18", weights="imagenet", model="cnn_lstm"), info)
    path = weights.default_weights_file("resnet18")[0]
    Path(out, f"rank{rank}").write_text(f"{path.is_file()} {path.read_bytes() == BODY}")  # after the barrier
    distributed.cleanup(info)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_zero_downloads_once_and_the_other_ranks_find_the_file(tmp_path):
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/weights/"
        mp.spawn(_rank, args=(2, _free_port(), str(tmp_path / "torch"), url, str(tmp_path)), nprocs=2, join=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert requests == [f"/weights/{NAME}"], "one download for all ranks"
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "True True"
