"""Segment annotations: reading CSV/JSON, per-frame targets, labels -> segments and back."""
from __future__ import annotations

import json
import os

import pytest
import torch

from cnnlstm.data.annotations.formats import VideoList
from cnnlstm.data.annotations.segments import Segment, load_segments
from cnnlstm.tasks.segment.segments import (
    clean_labels,
    frame_targets,
    labels_to_segments,
    mode_filter,
    segments_to_frames,
)


@pytest.fixture
def videos(tmp_path):
    """Two (empty) video files in tmp/videos; load_segments only checks that they exist."""
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"")
    return tmp_path


def write(path, text):
    path.write_text(text)
    return path


def test_csv_in_seconds_relative_to_the_file(videos):
    spec = load_segments(write(videos / "train.csv", "video,start,end,label\nvideos/a.mp4,0.5,1.5,wave\n"
                               "videos/a.mp4,2,3,jump\nvideos/b.mp4,0,1,wave\n"))
    a, b = os.path.join(videos, "videos", "a.mp4"), os.path.join(videos, "videos", "b.mp4")
    assert spec.classes == ["background", "jump", "wave"]  # background first, then sorted
    assert isinstance(spec.videos, VideoList) and [i.path for i in spec.videos.items] == [a, b]
    assert all(i.label is None for i in spec.videos.items)
    assert spec.segments[a] == [Segment(0.5, 1.5, "wave"), Segment(2.0, 3.0, "jump")]  # file order kept
    assert spec.segments[b] == [Segment(0.0, 1.0, "wave")]


def test_root_and_frame_units_and_path_column(videos, tmp_path):
    sub = tmp_path / "lists"
    sub.mkdir()
    spec = load_segments(write(sub / "s.csv", "path,start_frame,end_frame,label,extra\na.mp4,3,9,wave,x\n"),
                         root=videos / "videos")
    path = os.path.join(videos, "videos", "a.mp4")
    assert spec.segments == {path: [Segment(3.0, 9.0, "wave", "frame")]}


def test_json_list_and_mapping(videos):
    listed = load_segments(write(videos / "l.json", json.dumps(
        [{"video": "videos/a.mp4", "start": 0, "end": 1, "label": "x"},
         {"video": "videos/b.mp4", "start_frame": 2, "end_frame": 5, "label": "y"}])))
    assert listed.classes == ["background", "x", "y"]
    assert listed.segments[os.path.join(videos, "videos", "b.mp4")] == [Segment(2, 5, "y", "frame")]
    mapping = load_segments(write(videos / "m.json", json.dumps(
        {"videos/a.mp4": [{"start": 0, "end": 1, "label": "x"}], "videos/b.mp4": []})))
    assert mapping.segments[os.path.join(videos, "videos", "b.mp4")] == []  # all background
    assert len(mapping.videos) == 2


def test_given_classes_fix_the_order_and_reject_unknown_labels(videos):
    f = write(videos / "s.csv", "video,start,end,label\nvideos/a.mp4,0,1,wave\nvideos/b.mp4,0,1,jump\n")
    assert load_segments(f, classes=["wave", "jump"]).classes == ["background", "wave", "jump"]
    assert load_segments(f, classes=["background", "wave", "jump"]).classes == ["background", "wave", "jump"]
    with pytest.raises(ValueError, match=r"s.csv line 3: label 'jump' is not in the given classes"):
        load_segments(f, classes=["wave"])
    with pytest.raises(ValueError, match="must come first"):
        load_segments(f, classes=["wave", "background", "jump"])


@pytest.mark.parametrize("text,match", [
    ("video,start,end,label\nvideos/a.mp4,2,1,wave\n", r"line 2: end must be greater than start"),
    ("video,start,end,label\nvideos/a.mp4,1,1,wave\n", r"line 2: end must be greater than start"),
    ("video,start,end,label\nvideos/a.mp4,-1,1,wave\n", r"line 2: start must be >= 0"),
    ("video,start,end,label\nvideos/a.mp4,x,1,wave\n", r"line 2: `start` must be a number"),
    ("video,start,end,label\nvideos/a.mp4,0,1,\n", r"line 2: empty label"),
    ("video,start,label\nvideos/a.mp4,0,wave\n", r"line 1: expected a header `video,start,end,label`"),
    ("path,label\nvideos/a.mp4,wave\n", r"line 1: expected a header"),
    ("video,start,end,label\n", r"no segments after the header"),
    ("", r"line 1: empty file"),
    ("  \n\n", r"line 1: empty file"),
])
def test_csv_errors_name_the_file_and_line(videos, text, match):
    with pytest.raises(ValueError, match=r"s\.csv.*" + match if "line" in match else match):
        load_segments(write(videos / "s.csv", text))


@pytest.mark.parametrize("data,match", [
    ('[{"video": "videos/a.mp4", "start": 0, "end": 1}]', r"entry 0: missing \['label'\]"),
    ('[{"video": "videos/a.mp4", "start": 3, "end": 1, "label": "x"}]', r"entry 0: end must be greater"),
    ('[{"start": 0, "end": 1, "label": "x"}]', r"entry 0: missing or empty `video`"),
    ('{"videos/a.mp4": [{"start": 0, "end_frame": 1, "label": "x"}]}', r"entry 0: give either"),
    ('{"videos/a.mp4": {"start": 0}}', r"expected a list of segments"),
    ('[{"video": "a",\n "start": }]', r"line 2: not valid JSON"),
    ("[]", r"no videos listed"),
    ("3", r"expected a JSON list"),
])
def test_json_errors(videos, data, match):
    with pytest.raises(ValueError, match=match):
        load_segments(write(videos / "s.json", data))


def test_missing_videos_are_reported_together(videos):
    f = write(videos / "s.csv", "video,start,end,label\nnope1.mp4,0,1,x\nnope2.mp4,0,1,x\n")
    with pytest.raises(FileNotFoundError, match="2 of 2 videos are missing"):
        load_segments(f)
    assert len(load_segments(f, check_exists=False).videos) == 2


def test_frame_targets_use_the_frame_centre():
    index = {"background": 0, "wave": 1, "jump": 2}
    # fps 2: frame i covers [i/2, (i+1)/2), centre (i + 0.5)/2 = 0.25, 0.75, 1.25, 1.75, 2.25
    segs = [Segment(0.5, 1.5, "wave")]  # holds the centres 0.75 and 1.25: frames 1, 2
    assert frame_targets(segs, torch.arange(5), 2.0, index).tolist() == [0, 1, 1, 0, 0]
    # a segment that covers less than half of frame 1 ([0.6, 1.0)) misses its centre 0.75
    assert frame_targets([Segment(0.8, 1.0, "wave")], torch.arange(5), 2.0, index).tolist() == [0, 0, 0, 0, 0]
    # sampled frames keep their own times: frames 0, 2, 4 -> centres 0.25, 1.25, 2.25
    assert frame_targets(segs, torch.tensor([0, 2, 4]), 2.0, index).tolist() == [0, 1, 0]
    # frame units: start <= i < end; overlapping segments: the later one wins
    segs = [Segment(1, 4, "wave", "frame"), Segment(3, 5, "jump", "frame")]
    out = frame_targets(segs, torch.arange(6), 25.0, index)
    assert out.dtype == torch.long and out.tolist() == [0, 1, 1, 2, 2, 0]
    with pytest.raises(ValueError, match="'run' is not a known class"):
        frame_targets([Segment(0, 1, "run")], torch.arange(2), 1.0, index)


def test_labels_to_segments_in_frames_and_seconds():
    labels = torch.tensor([0, 1, 1, 1, 0, 2, 2, 0])
    assert labels_to_segments(labels) == [
        {"label": 1, "start": 1.0, "end": 4.0, "score": 1.0},
        {"label": 2, "start": 5.0, "end": 7.0, "score": 1.0},
    ]
    assert [s["label"] for s in labels_to_segments(labels, background=None)] == [0, 1, 0, 2, 0]
    probs = torch.full((8, 3), 0.1)
    probs[1:4, 1] = torch.tensor([0.5, 0.7, 0.9])  # mean 0.7
    segs = labels_to_segments(labels, probs)
    assert segs[0]["score"] == pytest.approx(0.7) and segs[1]["score"] == pytest.approx(0.1)
    # sampled every 0.5 s starting at 10 s: run 1 = frames 1..3 -> [10.5, 11.5 + 0.5)
    times = 10 + 0.5 * torch.arange(8)
    segs = labels_to_segments(labels, times=times)
    assert (segs[0]["start"], segs[0]["end"]) == (10.5, 12.0)
    assert labels_to_segments(torch.tensor([3]),
                              times=torch.tensor([2.0])) == [{"label": 3, "start": 2.0, "end": 2.0, "score": 1.0}]
    assert labels_to_segments(torch.tensor([], dtype=torch.long)) == []


def test_smoothing_and_minimum_length():
    noisy = torch.tensor([1, 1, 2, 1, 1, 3, 3, 3, 1, 3, 3])
    # window 3: the lone 2 (neighbours 1, 1) and the lone 1 at index 8 (neighbours 3, 3) flip
    assert mode_filter(noisy, 3).tolist() == [1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3]
    # on a tie the frame keeps its own label: [1, 2] at the end of the window-3 filter
    assert mode_filter(torch.tensor([1, 2]), 3).tolist() == [1, 2]
    segs = labels_to_segments(noisy, smooth=3, background=None)
    assert [(s["label"], s["start"], s["end"]) for s in segs] == [(1, 0, 5), (3, 5, 11)]
    # min_length 3: runs (1,2) (2,1) (1,2) (3,3) (1,1) (3,2): shortest first -> merged into the longer neighbour
    segs = labels_to_segments(noisy, min_length=3, background=None)
    assert [(s["label"], s["start"], s["end"]) for s in segs] == [(1, 0, 5), (3, 5, 11)]
    # a short run between equal neighbours: the earlier one wins a tie of lengths
    segs = labels_to_segments(torch.tensor([1, 1, 0, 2, 2]), min_length=2, background=None)
    assert [(s["label"], s["start"], s["end"]) for s in segs] == [(1, 0, 3), (2, 3, 5)]
    with pytest.raises(ValueError, match="odd window"):
        labels_to_segments(noisy, smooth=2)


def test_clean_labels_are_the_labels_segments_are_cut_from():
    noisy = torch.tensor([1, 1, 2, 1, 1, 3, 3, 3, 1, 3, 3])
    assert clean_labels(noisy).tolist() == noisy.tolist()  # defaults: unchanged
    assert clean_labels(noisy, smooth=3).tolist() == [1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3]
    assert clean_labels(torch.tensor([1, 1, 0, 2, 2]), min_length=2).tolist() == [1, 1, 1, 2, 2]
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        labels = torch.randint(0, 4, (int(torch.randint(1, 40, (1,), generator=g)),), generator=g)
        for smooth, min_length in ((1, 1), (3, 1), (5, 2), (1, 3)):
            segs = labels_to_segments(labels, smooth=smooth, min_length=min_length, background=None)
            expected = segments_to_frames(segs, labels.numel(), background=0)
            assert torch.equal(clean_labels(labels, smooth=smooth, min_length=min_length), expected)
    with pytest.raises(ValueError, match="min_length"):
        clean_labels(noisy, min_length=0)


def test_round_trip_labels_segments_labels():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        labels = torch.randint(0, 4, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g)
        labels = labels.repeat_interleave(torch.randint(1, 4, labels.shape, generator=g))  # runs
        for background in (0, None):
            segs = labels_to_segments(labels, background=background)
            assert torch.equal(segments_to_frames(segs, labels.numel(), background=0), labels)
