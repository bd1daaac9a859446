"""Windowed prediction (``predict --window``): rows over the whole video, merged segments, a video
label, JSON/CSV/plot, for clip, bidirectional, per-frame and caption runs; windows equal the model
run on the same frames clip by clip. Runs have random weights; videos are written by the tests.

Letters: N windows, T frames per window, K classes.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import video_factory as vf

from cnnlstm.cli import main
from cnnlstm.config import TrainConfig, dump_yaml
from cnnlstm.data.sampling import sample_timed_windows
from cnnlstm.data.transforms import eval_transform
from cnnlstm.data.video.decode import VideoReader
from cnnlstm.engine.checkpoint import save_weights
from cnnlstm.inference import predict
from cnnlstm.run import build_model, load_run
from cnnlstm.tasks.caption.text import Vocabulary
from cnnlstm.tasks.segment.segments import labels_to_segments
from cnnlstm.tasks.segment.task import DEFAULT_CLEANING
from cnnlstm.windows import format_windows

CLASSES = ["walk", "run", "jump"]  # K = 3 = top-k: each window row holds the whole distribution
FPS, SECONDS = 10, 24


def make_run(folder: Path, model: str, task: str = "classify", labels: list[str] = CLASSES) -> Path:
    """A run directory with random weights: 6 frames of 32 px per clip, the test_tiny CNN."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model=model, task=task, backbone="test_tiny", size=32, hidden_size=16, frames=6, beam_size=2,
                      max_caption_len=6)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(labels))
    torch.manual_seed(0)
    save_weights(build_model(cfg, len(labels)), folder / "model.safetensors")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    vocab = Vocabulary.build(["a red square moves left", "a blue circle grows then shrinks"])
    caption = make_run(root / "caption", "caption_lstm", "caption", list(vocab.tokens))
    vocab.save(caption / "vocab.json")
    return {"cnn_lstm": make_run(root / "cnn_lstm", "cnn_lstm"),
            "bi_cnn_lstm": make_run(root / "bi", "bi_cnn_lstm"),
            "segment": make_run(root / "seg", "seq2seq_cnn_lstm", "segment", ["background", *CLASSES]),
            "caption": caption}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """24 s at 10 fps, 40x48 px, every frame different."""
    path = tmp_path_factory.mktemp("videos") / "long.mp4"
    return Path(vf.write(path, vf.make_frames(FPS * SECONDS, 40, 48), fps=FPS, options={"g": "20", "bf": "2"}))


def merged(windows: list[dict]) -> list[tuple]:
    """Runs of consecutive windows with the same label: (label, start, end, count)."""
    out: list[list] = []
    for w in windows:
        if out and out[-1][0] == w["label"]:
            out[-1][2:] = [w["end"], out[-1][3] + 1]
        else:
            out.append([w["label"], w["start"], w["end"], 1])
    return [tuple(r) for r in out]


def test_windows_cover_the_video_merge_into_segments_and_write_json_csv_plot(runs, video, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 40)
    out_csv, plot = tmp_path / "w.csv", tmp_path / "timeline.png"
    code = main(["predict", str(runs["cnn_lstm"]), str(video), str(bad), "--window", "2", "--stride", "1.5", "--json",
                 "--csv", str(out_csv), "--plot", str(plot), "--topk", "3"])
    assert code == 1, "a bad video makes the exit code 1"
    row, bad_row = json.loads(capsys.readouterr().out)
    assert bad_row["path"] == str(bad) and bad_row["reason"] == "format" and "error" in bad_row

    windows = row["windows"]
    assert row["num_windows"] == len(windows) == 16  # ceil((24 s - 2 s) / 1.5 s) + 1
    starts, ends = [w["start"] for w in windows], [w["end"] for w in windows]
    assert starts[0] == 0 and ends[-1] == pytest.approx(row["duration"]) == pytest.approx(SECONDS)
    assert all(b > a for a, b in zip(starts, starts[1:], strict=False)), "increasing times"
    assert all(e - s == pytest.approx(2.0) for s, e in zip(starts, ends, strict=True))
    assert all(b - a <= 1.5 + 1e-9 for a, b in zip(starts, starts[1:], strict=False)), "no gap between windows"
    assert row["frames_per_window"] == 6 and row["window"] == 2.0 and row["stride"] == 1.5

    assert [(s["label"], s["start"], s["end"], s["windows"]) for s in row["segments"]] == merged(windows)
    probs = torch.tensor([[dict(w["topk"])[c] for c in CLASSES] for w in windows])  # (N, K)
    mean = probs.mean(0)
    assert row["label"] == CLASSES[int(mean.argmax())] and row["score"] == pytest.approx(float(mean.max()), abs=1e-6)

    with open(out_csv, newline="") as f:
        lines = list(csv.DictReader(f))
    assert [(r["path"], float(r["start"]), r["label"]) for r in lines] == [(str(video), s, w["label"])
                                                                          for s, w in zip(starts, windows, strict=True)]
    assert lines[0]["topk"].count(":") == 3
    assert Path(row["plot"]).is_file() and Path(row["plot"]).stat().st_size > 5000


def test_windows_equal_the_model_on_the_same_frames_clip_by_clip(runs, video):
    """A bidirectional model (it cannot stream) over overlapping windows: each window's probabilities
    are those of the model on that window's frames, decoded and transformed here one clip at a time."""
    [row] = predict(runs["bi_cnn_lstm"], [video], window=3, stride=1, topk=3, batch_size=4)
    loaded = load_run(runs["bi_cnn_lstm"], device="cpu")
    with VideoReader(video) as reader:
        frames = reader.get_frames(range(reader.info.num_frames))  # (F, C, H, W): every frame
        starts, indices, span = sample_timed_windows(loaded.sampler(), reader.info.num_frames, reader.info.fps, 3, 1)
    assert len(row["windows"]) == len(starts) == 22 and span == 30
    transform = eval_transform(loaded.data_cfg)
    with torch.inference_mode():
        for w, start, idx in zip(row["windows"], starts, indices, strict=True):
            expected = loaded.model(transform(frames[idx])[None]).logits.softmax(-1)[0]  # (K,)
            got = torch.tensor([dict(w["topk"])[c] for c in CLASSES])
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
            assert w["start"] == pytest.approx(float(start) / FPS) and w["end"] == pytest.approx(w["start"] + 3)


def test_per_frame_run_labels_every_sampled_frame_and_cuts_segments_over_the_video(runs, video, capsys):
    assert main(["predict", str(runs["segment"]), str(video), "--window", "4", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    windows = row["windows"]
    assert len(windows) == 6 and windows[-1]["end"] == pytest.approx(SECONDS)
    times = [t for w in windows for t in w["frame_times"]]
    labels = [lab for w in windows for lab in w["frame_labels"]]
    assert len(times) == 6 * 6 and times == sorted(times) and all(w["start"] <= w["frame_times"][0] for w in windows)
    classes = ["background", *CLASSES]
    expected = labels_to_segments(torch.tensor([classes.index(c) for c in labels]), times=torch.tensor(times),
                                  smooth=DEFAULT_CLEANING["smooth"], min_length=DEFAULT_CLEANING["min_segment"])
    got = row["segments"]
    assert [(s["label"], s["start"], s["end"]) for s in got] == \
        [(classes[e["label"]], pytest.approx(e["start"]), pytest.approx(min(e["end"], SECONDS))) for e in expected]
    assert all(0 <= s["start"] < s["end"] <= SECONDS for s in got)
    assert row["label"] in classes

    assert "6 windows of 4 s every 4 s over 24.0 s" in "\n".join(format_windows(row)), "what predict prints"


def test_caption_run_captions_each_window(runs, video):
    [row] = predict(runs["caption"], [video], window=6)
    assert len(row["windows"]) == 4 and all(isinstance(w["caption"], str) for w in row["windows"])
    captions = [w["caption"] for w in row["windows"]]
    assert row["caption"] == row["label"] == max(dict.fromkeys(captions), key=captions.count)
    assert [s["label"] for s in row["segments"]] == [r[0] for r in merged(row["windows"])]


def test_a_long_video_without_window_gets_a_note_and_bad_arguments_are_refused(runs, video, tmp_path, capsys):
    short = Path(vf.write(tmp_path / "short.mp4", vf.make_frames(20, 40, 48), fps=FPS))
    assert main(["predict", str(runs["cnn_lstm"]), str(video), str(short)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "note:" in line]
    assert len(notes) == 1, "the long video gets a note, the 2 s one does not"
    assert "note: sampled 6 frames from 24 s: one frame every 4.0 s" in notes[0] and "--window" in notes[0]

    with pytest.raises(ValueError, match="stride=1 needs window"):
        predict(runs["cnn_lstm"], [video], stride=1)
    with pytest.raises(ValueError, match="window must be a positive number of seconds; got 0"):
        predict(runs["cnn_lstm"], [video], window=0)
    assert main(["predict", str(runs["cnn_lstm"]), str(video), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "--csv need --window" in capsys.readouterr().err
