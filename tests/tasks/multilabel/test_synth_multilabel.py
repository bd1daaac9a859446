"""The synthetic multi-label dataset: written through the CLI, read back with load_multilabel, and
each label visible in the pixels (where the object is, how big, whether it shows)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cnnlstm.cli import main
from cnnlstm.data.synth import SynthConfig
from cnnlstm.data.video.decode import VideoReader
from cnnlstm.tasks.multilabel.labels import load_multilabel
from cnnlstm.tasks.multilabel.synth import ACTIONS, KINDS, draw_motions, motion_track, render_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlsynth")
    assert main(["synth", str(out), "--task", "multilabel", "--videos-per-class", "1", "--test-per-class", "1",
                 "--size", "32", "--quiet"]) == 0
    return out


def test_files_splits_and_labels(dataset):
    out = dataset
    assert (out / "classes.txt").read_text().split() == list(ACTIONS) == sorted(ACTIONS)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and meta["task"] == "multilabel" and "blink" in (out / "README.txt").read_text()
    train, test = load_multilabel(out / "train.csv"), load_multilabel(out / "test.csv", classes=list(ACTIONS))
    assert train.classes == test.classes == list(ACTIONS)
    assert len(train) == len(test) == len(ACTIONS)
    assert {Path(i.path).suffix for i in train.videos.items} == {".mp4", ".avi", ".mkv", ".webm"}
    written = {str(out / v["path"]): v for v in meta["videos"]}
    for spec in (train, test):
        for i, item in enumerate(spec.videos.items):
            labels = spec.labels[item.path]
            assert labels == written[item.path]["labels"] and ACTIONS[i % len(ACTIONS)] in labels
            assert 1 <= len(labels) <= len(KINDS)
            with VideoReader(item.path) as reader:
                assert reader.get_frames([0, len(reader) - 1]).shape == (2, 3, 32, 32)
                assert len(reader) == written[item.path]["frames"]
    counts = Counter(label for labels in train.labels.values() for label in labels)
    assert set(counts) == set(ACTIONS)


def test_one_option_per_kind_and_every_action_can_be_forced():
    for seed in range(100):
        for action in ACTIONS:
            motions = draw_motions(np.random.default_rng(seed), action)
            assert set(motions) == set(KINDS) and action in motions.values()
            assert all(motions[kind] in options for kind, options in KINDS.items())


def test_tracks_do_what_the_labels_say_and_stay_in_the_frame():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        motions = draw_motions(rng, ACTIONS[seed % len(ACTIONS)])
        T = int(rng.integers(24, 49))
        track = motion_track(rng, motions, T)
        assert len(track) == T
        assert (track.x - track.r).min() > 0 and (track.x + track.r).max() < 1
        assert (track.y - track.r).min() > 0 and (track.y + track.r).max() < 1
        for values, grows, shrinks in ((track.x, "move_right", "move_left"), (track.y, "move_down", "move_up"),
                                       (track.r, "grow", "shrink")):
            change = values[-1] - values[0]
            expected = {grows: 1, shrinks: -1}.get(next((m for m in motions.values() if m in (grows, shrinks)),
                                                        None), 0)
            assert np.sign(round(change, 9)) == expected, (seed, motions)
        off = track.alpha == 0
        assert off.any() == (motions["visibility"] == "blink") and track.alpha[0] == 1
        if off.any():  # runs of at least 5 frames: a 16-frame sample of up to 48 frames sees each
            runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, off.astype(int), -1]) != 0))
            assert runs[:-1].min() >= 5


def test_the_labels_are_visible_in_the_rendered_frames():
    config = SynthConfig(task="multilabel", size=64)
    for index in range(14):
        frames, labels = render_video(config, "train", index)  # (T, H, W, 3)
        background = np.median(frames.reshape(len(frames), -1, 3), axis=1)  # (T, 3): the object covers < 20%
        mask = np.abs(frames.astype(np.float32) - background[:, None, None]).sum(-1) > 90  # (T, H, W)
        area = mask.sum((1, 2))  # (T,)
        shown = area > 0
        assert shown.all() != ("blink" in labels), (index, labels)
        ys, xs = np.mgrid[:64, :64]
        cx = (mask * xs).sum((1, 2))[shown] / area[shown]
        cy = (mask * ys).sum((1, 2))[shown] / area[shown]
        for values, up, down in ((cx, "move_right", "move_left"), (cy, "move_down", "move_up"),
                                 (area[shown], "grow", "shrink")):
            change = (values[-1] - values[0]) / max(abs(values[0]), 1)
            assert (change > 0.2) == (up in labels) and (change < -0.2) == (down in labels), (index, labels, change)
