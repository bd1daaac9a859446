"""Everyday mistakes through the real command line (a subprocess each): a short error that names the
file or key, no traceback, a non-zero exit (2: nothing ran, 1: some inputs failed); ``--debug`` shows
the traceback; a genuine bug still shows its traceback and asks to be reported (exit 3)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from run_factory import TINY_RUN, labelled_folder, make_run

from cnnlstm.cli import build_parser, main
from cnnlstm.config import resolve_config
from cnnlstm.errors import EXIT_BUG, EXIT_SOME_FAILED, EXIT_USAGE, is_expected, report
from cnnlstm.train import fit

TRAIN = ["--out", "OUT", "--backbone", "test_tiny", "--size", "32", "--frames", "4", "--epochs", "1", "--workers", "0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Videos, annotation files, recipes and runs (one trained for a real checkpoint), as a user has them."""
    w = tmp_path_factory.mktemp("world")
    labelled_folder(w / "data")
    rows = [f"data/{c}/{i}.mp4,{c}" for c in ("left", "right") for i in range(2)]
    (w / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (w / "missing.csv").write_text("path,label\ndata/left/0.mp4,left\ndata/left/nope.mp4,left\n")
    (w / "segs.csv").write_text("video,start,end,label\ndata/left/0.mp4,0,0.5,wave\n")
    (w / "empty").mkdir()
    shutil.copytree(w / "data" / "left", w / "loose")
    (w / "list.yaml").write_text("- lr\n- epochs\n")
    (w / "unknown.yaml").write_text("lr: 0.01\nbogus: 1\n")
    (w / "bad.yaml").write_text("lr: [0.01\n")
    (w / "bin.dat").write_bytes(os.urandom(3000))
    (w / "playlist.m3u8").write_text("#EXTM3U\n#EXTINF:1,\ndata/left/0.mp4\n#EXT-X-ENDLIST\n")
    cfg = resolve_config(None, {**TINY_RUN, "data": str(w / "train.csv"), "out": str(w / "run"), "epochs": 1,
                                "batch_size": 4, "cache": "off"})
    fit(cfg, log=lambda *_: None)  # a real run: checkpoints for --resume
    make_run(w / "birun", model="cnn_lstm_attention")  # bidirectional: cannot stream
    shutil.copytree(w / "run", w / "damaged", ignore=shutil.ignore_patterns("tb", "checkpoints"))
    data = (w / "run" / "model.safetensors").read_bytes()
    (w / "damaged" / "model.safetensors").write_bytes(data[: len(data) // 3])
    (w / "notrun").mkdir()
    (w / "notrun" / "notes.txt").write_text("not a run\n")
    return w


def cli(world: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    args = tuple(str(world / "out") if a == "OUT" else a for a in args)
    return subprocess.run([sys.executable, "-m", "cnnlstm.cli", *args], cwd=world, capture_output=True, text=True,
                          timeout=240, env={**os.environ, **(env or {})})


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

# The mistakes the issue saw end in a traceback: (id, arguments, exit code, what the message must name).
# Each runs as its own `python -m cnnlstm.cli` process; they run a few at a time (each starts torch).
SEEN = [
    ("train-data-missing", ["train", "--data", "nonexistent", *TRAIN], 2, ["--data nonexistent", "does not exist"]),
    ("train-epochs-abc", ["train", "--data", "train.csv", *TRAIN, "--epochs", "abc"], 2,
     ["--epochs", "'abc'", "integer"]),
    ("train-model-typo", ["train", "--data", "train.csv", *TRAIN, "--model", "cnn_lsmt"], 2,
     ["'cnn_lsmt'", "Did you mean 'cnn_lstm'"]),
    ("train-backbone-typo", ["train", "--data", "train.csv", *TRAIN, "--backbone", "resnet19"], 2,
     ["'resnet19'", "'resnet18'"]),
    ("train-frames-0", ["train", "--data", "train.csv", *TRAIN, "--frames", "0"], 2, ["frames", ">= 1", "got 0"]),
    ("train-csv-names-missing-video", ["train", "--data", "missing.csv", *TRAIN], 2,
     ["missing.csv", "nope.mp4", "1 of 2 videos are missing"]),
    ("train-empty-folder", ["train", "--data", "empty", *TRAIN], 2, ["empty", "no videos found"]),
    ("evaluate-not-a-run", ["evaluate", "notrun", "--data", "train.csv"], 2, ["notrun", "config.yaml"]),
    ("evaluate-damaged-weights", ["evaluate", "damaged", "--data", "train.csv"], 2,
     ["model.safetensors", "damaged"]),
    ("scan-binary-file", ["scan", "bin.dat"], 1, ["bin.dat", "format"]),
    ("export-tflite", ["export", "run", "--format", "tflite"], 2, ["'tflite'", "onnx"]),
    ("stream-missing-run", ["stream", "nope", "data/left/0.mp4"], 2, ["nope", "does not exist"]),
]

# More mistakes a newcomer makes, through the same CLI code in this process (main(argv), stderr captured).
MORE = [
    ("train-size-negative", ["train", "--data", "train.csv", *TRAIN, "--size", "-1"], 2, ["size", "got -1"]),
    ("train-lr-negative", ["train", "--data", "train.csv", *TRAIN, "--lr", "-1"], 2, ["--lr", "> 0", "-1"]),
    ("train-unlabelled-folder", ["train", "--data", "loose", *TRAIN], 2, ["loose", "no label", "class folders"]),
    ("train-val-missing", ["train", "--data", "train.csv", "--val", "nope.csv", *TRAIN], 2, ["--val nope.csv"]),
    ("train-segment-with-classification-csv", ["train", "--task", "segment", "--data", "train.csv", *TRAIN], 2,
     ["train.csv", "video,start,end,label", "path,label"]),
    ("train-device-cuda", ["train", "--data", "train.csv", *TRAIN, "--device", "cuda"], 2,
     ["'cuda'", "CUDA is not available", "--device cpu"], NO_CUDA),
    ("train-device-typo", ["train", "--data", "train.csv", *TRAIN, "--device", "gpu"], 2, ["'gpu'", "cuda"]),
    ("train-config-missing", ["train", "--config", "nope.yaml", "--data", "train.csv", *TRAIN], 2,
     ["nope.yaml", "does not exist"]),
    ("train-config-not-a-mapping", ["train", "--config", "list.yaml", "--data", "train.csv", *TRAIN], 2,
     ["list.yaml", "mapping", "got a list"]),
    ("train-config-unknown-key", ["train", "--config", "unknown.yaml", "--data", "train.csv", *TRAIN], 2,
     ["unknown.yaml", "bogus"]),
    ("train-config-bad-yaml", ["train", "--config", "bad.yaml", "--data", "train.csv", *TRAIN], 2,
     ["bad.yaml", "not valid YAML"]),
    ("train-weights-file-missing", ["train", "--data", "train.csv", *TRAIN, "--weights", "nope.safetensors"], 2,
     ["--weights nope.safetensors", "imagenet"]),
    ("train-sampler-fps-without-fps", ["train", "--data", "train.csv", *TRAIN, "--sampler", "fps"], 2, ["--fps"]),
    ("train-out-is-a-file", ["train", "--data", "train.csv", *TRAIN, "--out", "bin.dat"], 2, ["--out bin.dat"]),
    ("train-resume-another-model", ["train", "--data", "train.csv", *TRAIN, "--out", "run", "--hidden-size", "8",
                                    "--resume", "--model", "mean_pool"], 2, ["cannot resume", "model", "mean_pool"]),
    ("compare-model-typo", ["compare", "--data", "train.csv", "--val", "train.csv", "--models", "cnn_lstm,cnn_lsmt",
                            "--out", "OUT"], 2, ["'cnn_lsmt'"]),
    ("evaluate-missing-run", ["evaluate", "nope", "--data", "train.csv"], 2, ["nope", "does not exist"]),
    ("evaluate-data-of-wrong-kind", ["evaluate", "run", "--data", "segs.csv"], 2, ["segs.csv", "path,label"]),
    ("predict-missing-video-folder-playlist", ["predict", "run", "nope.mp4", "data", "playlist.m3u8"], 1,
     ["nope.mp4: ERROR", "no such file", "data: ERROR", "not a regular file", "playlist.m3u8: ERROR",
      "playlists are not read"]),
    ("predict-topk-0", ["predict", "run", "data/left/0.mp4", "--topk", "0"], 2, ["--topk", "got 0"]),
    ("stream-bidirectional-run", ["stream", "birun", "data/left/0.mp4"], 2,
     ["cnn_lstm_attention", "cannot stream", "cnnlstm predict"]),
    ("serve-missing-run", ["serve", "nope"], 2, ["nope"]),
    ("scan-playlist", ["scan", "playlist.m3u8"], 2, ["playlist.m3u8", "give the media files"]),
    ("scan-empty-folder", ["scan", "empty"], 2, ["empty", "no videos found"]),
]


def check_short_error(args: list[str], code: int, names: list[str], returned: int, out: str, err: str) -> None:
    text = err + out
    assert returned == code, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert all(name in text for name in names), (names, text[-3000:])
    if code == EXIT_USAGE:
        lines = err.strip().splitlines()
        assert lines[0].startswith(f"cnnlstm {args[0]}: error: "), err
        assert len(lines) <= 3, err


@pytest.fixture(scope="module")
def seen_results(world) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(cli, world, *args) for name, args, *_ in SEEN}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("args, code, names", [pytest.param(*m[1:4], id=m[0]) for m in SEEN])
def test_a_seen_mistake_is_one_short_error_without_a_traceback(seen_results, request, args, code, names):
    out = seen_results[request.node.callspec.id]
    check_short_error(args, code, names, out.returncode, out.stdout, out.stderr)


@pytest.mark.parametrize("args, code, names", [pytest.param(*m[1:4], id=m[0], marks=m[4:]) for m in MORE])
def test_more_mistakes_are_one_short_error_without_a_traceback(world, monkeypatch, capsys, args, code, names):
    monkeypatch.chdir(world)
    returned = main([str(world / "out") if a == "OUT" else a for a in args])
    captured = capsys.readouterr()
    check_short_error(args, code, names, returned, captured.out, captured.err)


def test_pretrained_weights_offline_name_the_file_and_the_switch(world, tmp_path, monkeypatch, capsys):
    """--offline sets CNNLSTM_OFFLINE=1 before the model is built: the missing ImageNet file is named, no download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CNNLSTM_OFFLINE")
    monkeypatch.chdir(world)
    code = main(["train", "--data", "train.csv", *TRAIN[2:], "--out", str(tmp_path / "out"), "--backbone", "resnet18",
                 "--weights", "imagenet", "--offline"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "Traceback" not in err, err
    assert "resnet18-" in err and "CNNLSTM_OFFLINE=1" in err and "downloading" not in err
    assert os.environ["CNNLSTM_OFFLINE"] == "1"  # inherited by torchrun's processes


def test_debug_shows_the_traceback(world, monkeypatch, capsys):
    args = ["train", "--data", "nonexistent", *TRAIN]
    out = cli(world, "--debug", *args)
    assert out.returncode == EXIT_USAGE
    assert "Traceback (most recent call last)" in out.stderr and "FileNotFoundError" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("cnnlstm train: error: --data nonexistent")
    monkeypatch.chdir(world)
    for argv, env in (([*args, "--debug"], "0"), (args, "1")):  # after the command, and CNNLSTM_DEBUG=1
        monkeypatch.setenv("CNNLSTM_DEBUG", env)
        assert main(argv) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "cnnlstm train: error: --data nonexistent" in err
    monkeypatch.setenv("CNNLSTM_DEBUG", "0")
    assert main(args) == EXIT_USAGE and "Traceback" not in capsys.readouterr().err


def test_serve_without_the_serve_extra_says_what_to_install(world, monkeypatch, capsys):
    for name in ("fastapi", "uvicorn", "python_multipart"):
        monkeypatch.setitem(sys.modules, name, None)  # not installed, as importlib sees it
    assert main(["serve", str(world / "run")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("cnnlstm serve: error:") and "pip install 'cnnlstm[serve]'" in err and "Traceback" not in err


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    import cnnlstm.apps.models

    def broken(args):
        return {}["missing"]

    monkeypatch.setattr(cnnlstm.apps.models, "cmd_models", broken)
    assert main(["models"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert "please report it with the command and this traceback" in err


def test_exit_codes_are_documented_in_help():
    text = " ".join(build_parser().format_help().split())
    for code in ("0 done", "1 ran, but some inputs failed", "2 nothing ran", "3 an unexpected error", "--debug"):
        assert code in text, code


def _library_value_error():
    return int("not a number")  # ValueError raised inside Python, not by a cnnlstm check


def test_expected_errors_are_decided_in_one_place(tmp_path, capsys):
    from cnnlstm.config import coerce
    from cnnlstm.data.video.errors import NoVideoStreamError

    with pytest.raises(ValueError) as ours:
        coerce("epochs", "abc")
    with pytest.raises(ValueError) as theirs:
        _library_value_error()
    with pytest.raises(FileNotFoundError) as missing:
        open(tmp_path / "nope")
    assert is_expected(ours.value) and is_expected(missing.value)
    assert is_expected(NoVideoStreamError("a.m4a", "no video stream"))
    assert not is_expected(theirs.value), "a ValueError from outside cnnlstm's checks is a bug, not a user mistake"
    assert not is_expected(RuntimeError("boom")) and not is_expected(KeyError("x"))
    assert report(missing.value, "cnnlstm x") == EXIT_USAGE
    assert capsys.readouterr().err == f"cnnlstm x: error: {tmp_path / 'nope'}: No such file or directory\n"
    assert report(theirs.value, "cnnlstm x") == EXIT_BUG and "Traceback" in capsys.readouterr().err
    assert EXIT_SOME_FAILED == 1


@pytest.mark.parametrize("args, names", [
    pytest.param(["train", "--data", "x", "--hiden-size", "3"], ["unrecognized arguments: --hiden-size 3",
                                                                  "did you mean --hidden-size"], id="option-typo"),
    pytest.param(["evaluate"], ["the following arguments are required: run, --data"], id="missing-argument"),
    pytest.param(["--nope"], ["unrecognized arguments: --nope"], id="top-level"),
])
def test_a_usage_mistake_is_one_error_line_and_where_to_look(capsys, args, names):
    """argparse's own errors: one line naming the mistake (and the closest options), then the --help to read."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == EXIT_USAGE
    prog = "cnnlstm" if args[0].startswith("-") else f"cnnlstm {args[0]}"
    assert err.splitlines() == [err.splitlines()[0], f"see `{prog} --help`"], err
    assert err.startswith(f"{prog}: error: ") and all(name in err for name in names), err
