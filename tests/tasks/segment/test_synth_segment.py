"""The synthetic segmentation dataset: written through the CLI, read back with load_segments."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlstm.cli import main
from cnnlstm.data.annotations.segments import load_segments
from cnnlstm.data.synth import SynthConfig, synthesize
from cnnlstm.data.video.decode import VideoReader
from cnnlstm.tasks.segment.segments import frame_targets, labels_to_segments
from cnnlstm.tasks.segment.synth import ACTIONS, CLASSES, MIN_SEGMENT, plan_actions, render_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("segsynth")
    assert main(["synth", str(out), "--task", "segment", "--videos-per-class", "1", "--test-per-class", "1",
                 "--size", "32", "--quiet"]) == 0
    return out


def test_files_and_splits(dataset):
    out = dataset
    assert (out / "classes.txt").read_text().split() == list(CLASSES) and CLASSES[0] == "background"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and meta["task"] == "segment" and meta["generator"] == "cnnlstm.data.synth"
    assert "background" in (out / "README.txt").read_text()
    train, test = load_segments(out / "train.csv"), load_segments(out / "test.csv", classes=list(CLASSES))
    assert train.classes == test.classes == list(CLASSES)
    assert len(train.videos) == len(test.videos) == len(ACTIONS)
    assert not {i.path for i in train.videos.items} & {i.path for i in test.videos.items}
    assert {Path(i.path).suffix for i in train.videos.items} == {".mp4", ".avi", ".mkv", ".webm"}
    assert all(Path(i.path).parent == out / "videos" for i in train.videos.items)
    counts = Counter(s.label for segs in train.segments.values() for s in segs)
    assert set(counts) == set(ACTIONS)  # every action appears
    assert all(2 <= len(segs) <= 4 for segs in train.segments.values())


def test_frame_targets_of_decoded_frames_are_the_written_labels(dataset):
    out = dataset
    spec = {**load_segments(out / "train.csv").segments, **load_segments(out / "test.csv").segments}
    index = {name: i for i, name in enumerate(CLASSES)}
    meta = json.loads((out / "dataset.json").read_text())
    lengths = set()
    for video in meta["videos"]:
        path = str(out / video["path"])
        with VideoReader(path) as reader:
            frames = reader.get_frames(range(len(reader)))  # (T, 3, H, W)
            fps = reader.info.fps
        assert frames.shape == (video["frames"], 3, 32, 32), path
        assert fps == pytest.approx(12.0, rel=1e-3)  # measured (WebM: millisecond timestamps)
        labels = frame_targets(spec[path], torch.arange(len(frames)), fps, index)
        assert labels.tolist() == video["labels"], path
        lengths.add(len(frames))
        # the written segments are the runs of the labels
        runs = labels_to_segments(labels)
        assert [(CLASSES[r["label"]], r["start"], r["end"]) for r in runs] == \
            [(s["label"], s["start"], s["end"]) for s in video["segments"]]
    config = SynthConfig()
    assert len(lengths) > 1 and min(lengths) >= 2 * config.min_frames and max(lengths) <= 2 * config.max_frames


def test_decoded_frames_match_rendered_and_are_deterministic(dataset):
    out = dataset
    config = SynthConfig(task="segment", videos_per_class=1, test_per_class=1, size=32)
    frames, labels, segments = render_video(config, "train", 0)  # .mp4
    with VideoReader(out / "videos" / "train_0000.mp4") as reader:
        decoded = reader.get_frames(range(len(reader))).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 8
    again, labels_again, _ = render_video(config, "train", 0)
    assert np.array_equal(again, frames) and labels_again == labels  # deterministic


def test_planned_actions_stay_in_the_frame_and_last_long_enough():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        T = int(rng.integers(12, 97))
        track, labels, segments = plan_actions(rng, T, first=ACTIONS[seed % len(ACTIONS)])
        assert len(track) == len(labels) == T
        assert segments[0]["label"] == ACTIONS[seed % len(ACTIONS)]
        assert all(s["end"] - s["start"] >= MIN_SEGMENT for s in segments)
        assert all(a["label"] != b["label"] for a, b in zip(segments, segments[1:], strict=False))
        assert (track.x - track.r).min() > 0 and (track.x + track.r).max() < 1
        assert (track.y - track.r).min() > 0 and (track.y + track.r).max() < 1 and track.r.min() > 0.04
        # still frames repeat the previous state; action frames change it
        state = np.stack([track.x, track.y, track.r], 1)
        moved = np.abs(np.diff(state, axis=0)).sum(1) > 1e-9  # (T-1,)
        assert np.array_equal(moved, np.array(labels[1:]) != 0)


def test_rerun_replaces_and_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "d"
    synthesize(out, SynthConfig(videos_per_class=1, test_per_class=0, size=16, min_frames=6, max_frames=6))  # classify
    tiny = SynthConfig(task="segment", videos_per_class=1, test_per_class=0, size=16, min_frames=6, max_frames=6)
    summary = synthesize(out, tiny)  # replaces the classification output
    assert summary["train"] == len(ACTIONS) and summary["test"] == 0
    listed = json.loads((out / "dataset.json").read_text())["videos"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(Path(v["path"]).name for v in listed)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "train.csv").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by synthesize"):
        synthesize(foreign, tiny)
    assert (foreign / "train.csv").read_text() == "keep me"
