"""Caption files (CSV, JSON) and the synthetic captioning dataset."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from cnnlstm.data.annotations.captions import load_captions
from cnnlstm.data.synth import SynthConfig
from cnnlstm.tasks.caption.synth import ACTIONS, COLORS, PAIRS, captions_for, plan_track, render_video
from cnnlstm.tasks.caption.text import tokenize


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"")
    return tmp_path


def test_csv_several_rows_per_video(folder):
    (folder / "caps.csv").write_text('video,caption,extra\nvideos/a.mp4,a man runs,1\nvideos/b.mp4,"a dog, barking",2\n'
                                     "videos/a.mp4,  someone   is running ,3\n")
    spec = load_captions(folder / "caps.csv")
    a, b = str(folder / "videos" / "a.mp4"), str(folder / "videos" / "b.mp4")
    assert [item.path for item in spec.videos.items] == [a, b]  # first-appearance order
    assert spec.captions == {a: ["a man runs", "someone is running"], b: ["a dog, barking"]}
    assert spec.videos.items[0].label is None and len(spec) == 2
    # `path,caption` header, and paths relative to root instead of the file's folder
    (folder / "lists").mkdir()
    (folder / "lists" / "caps.csv").write_text("path,caption\nvideos/b.mp4,x\n")
    assert list(load_captions(folder / "lists" / "caps.csv", root=folder).captions) == [b]


@pytest.mark.parametrize("content", [
    [{"video": "videos/a.mp4", "caption": "one"}, {"path": "videos/b.mp4", "caption": "two"},
     {"video": "videos/a.mp4", "caption": "three"}],
    {"videos/a.mp4": ["one", "three"], "videos/b.mp4": "two"},
    {"sentences": [{"video_id": "a", "caption": "one"}, {"video_id": "b", "caption": "two"},
                   {"video_id": "a", "caption": "three"}],
     "videos": [{"video_id": "a", "path": "videos/a.mp4"}, {"video_id": "b", "path": "videos/b.mp4"}]},
], ids=["list", "mapping", "msrvtt"])
def test_json_forms(folder, content):
    (folder / "caps.json").write_text(json.dumps(content))
    spec = load_captions(folder / "caps.json")
    assert spec.captions == {str(folder / "videos" / "a.mp4"): ["one", "three"],
                             str(folder / "videos" / "b.mp4"): ["two"]}


def test_msrvtt_without_paths_uses_video_id_mp4(folder):
    (folder / "caps.json").write_text(json.dumps({"sentences": [{"video_id": "a", "caption": "x"}]}))
    assert list(load_captions(folder / "caps.json",
                              root=folder / "videos").captions) == [str(folder / "videos" / "a.mp4")]


@pytest.mark.parametrize("name,text,match", [
    ("empty.csv", "\n  \n", "empty.csv: empty file"),
    ("nocaption.csv", "video,label\nvideos/a.mp4,x\n", r"nocaption.csv line 1: expected a header `video,caption`"),
    ("novideo.csv", "clip,caption\nvideos/a.mp4,x\n", r"novideo.csv line 1: expected a header `video,caption`"),
    ("blank.csv", "video,caption\nvideos/a.mp4,x\nvideos/b.mp4,  \n", r"blank.csv line 3: empty caption"),
    ("novid.csv", "video,caption\n,x\n", r"novid.csv line 2: empty or invalid video"),
    ("broken.json", '[{"video": "videos/a.mp4",', r"broken.json line 1: not valid JSON"),
    ("wrongkeys.json", '[{"file": "videos/a.mp4", "caption": "x"}]', r"wrongkeys.json entry 0: expected an object"),
    ("emptycap.json", '{"videos/a.mp4": ["x", ""]}', r"emptycap.json key 'videos/a.mp4' caption 1: empty caption"),
    ("nolist.json", '{"videos/a.mp4": []}', r"nolist.json key 'videos/a.mp4': expected a caption or a non-empty list"),
    ("unknown.json", '{"sentences": [{"video_id": "z", "caption": "x"}], "videos": [{"video_id": "a"}]}',
     r"sentences\[0\]: video_id 'z'"),
    ("number.json", "42", "expected a JSON list"),
    ("none.json", "[]", "no captions"),
])
def test_bad_files_name_the_file_and_row(folder, name, text, match):
    (folder / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_captions(folder / name)


def test_missing_videos(folder):
    (folder / "caps.csv").write_text("video,caption\nvideos/a.mp4,x\nvideos/gone.mp4,y\n")
    with pytest.raises(FileNotFoundError, match="1 of 2 videos are missing"):
        load_captions(folder / "caps.csv")
    assert len(load_captions(folder / "caps.csv", check_exists=False)) == 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_captions(folder / "nope.csv")


# --- the synthetic dataset ----------------------------------------------------------------------
def test_tracks_follow_the_actions_in_order():
    rng = np.random.default_rng(0)
    for first, second in PAIRS:
        track = plan_track(rng, 21, first, second)  # frame 10 ends the first action
        assert (track.x - track.r).min() > 0 and (track.x + track.r).max() < 1
        assert (track.y - track.r).min() > 0 and (track.y + track.r).max() < 1
        for action, (a, b) in ((first, (0, 10)), (second, (10, 20))):
            change = {"x": track.x[b] - track.x[a], "y": track.y[b] - track.y[a], "r": np.log(track.r[b] / track.r[a])}
            axis, sign = {"moves left": ("x", -1), "moves right": ("x", 1), "moves up": ("y", -1),
                          "moves down": ("y", 1),
                          "grows": ("r", 1), "shrinks": ("r", -1)}[action]
            assert sign * change[axis] > 0.15, (first, second, action)
            assert all(abs(v) < 1e-9 for k, v in change.items() if k != axis), (first, second, action)


def test_rendered_object_has_the_named_colour():
    config = SynthConfig(task="caption", size=32, min_frames=8, max_frames=8)
    seen = set()
    for index in range(12):
        frames, info = render_video(config, "train", index, ("grows", "moves left"))  # (T, H, W, 3)
        first = frames[0].astype(float)
        background = np.median(first.reshape(-1, 3), axis=0)
        mask = np.abs(first - background).sum(-1) > 60  # object pixels
        assert mask.sum() > 4
        colour = np.median(first[mask], axis=0)
        nearest = min(COLORS, key=lambda name: np.abs(np.asarray(COLORS[name]) - colour).sum())
        assert nearest == info["color"], (index, colour, info)
        seen.add(info["color"])
    assert len(seen) >= 3


def test_synth_via_the_cli_writes_files_load_captions_reads(tmp_path):
    pytest.importorskip("av")
    from cnnlstm.cli import main

    out = tmp_path / "caps"
    assert main(["synth", str(out), "--task", "caption", "--videos-per-class", "2", "--test-per-class", "1", "--size",
                 "32",
                 "--quiet"]) == 0
    train, test = load_captions(out / "train.csv"), load_captions(out / "test.csv")
    assert (len(train), len(test)) == (12, 6)
    assert all(len(c) == 3 for c in train.captions.values())
    names = zip(range(12), [".mp4", ".avi", ".mkv", ".webm"] * 3, strict=True)
    assert {os.path.basename(p) for p in train.captions} == {f"train_{i:04d}{ext}" for i, ext in names}
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and meta["task"] == "caption"
    video = meta["videos"][0]
    path = str(out / video["path"])
    assert train.captions[path] == captions_for(video["color"], video["shape"], *video["actions"])
    with open(out / "train.csv", newline="") as f:
        assert next(csv.reader(f)) == ["video", "caption"]
    words = sorted({w for caps in (*train.captions.values(),
                                   *test.captions.values()) for c in caps for w in tokenize(c)})
    assert words == meta["vocabulary"]
    assert "then" in words and set(COLORS) & set(words)
    # a second run in the same folder replaces the first; a foreign folder is refused
    assert main(["synth", str(out), "--task", "caption", "--videos-per-class", "1", "--test-per-class", "1", "--size",
                 "32",
                 "--quiet"]) == 0
    assert len(list((out / "videos").iterdir())) == 12
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "train.csv").write_text("mine")
    from cnnlstm.data.synth import synthesize

    with pytest.raises(FileExistsError, match="choose an empty"):
        synthesize(tmp_path / "foreign", SynthConfig(task="caption", videos_per_class=1, test_per_class=0))


def test_actions_and_pairs():
    assert len(PAIRS) == 30 and all(a != b for a, b in PAIRS)
    assert len(ACTIONS) == 6
    assert captions_for("red", "square", "moves left", "shrinks")[0] == "a red square moves left then shrinks"
