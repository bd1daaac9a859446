"""Multi-label annotation files: CSV `path,labels` (';'-separated), JSON, single-label SPECs; classes
from the labels, a classes.txt beside the file or the training set; clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlstm.data.annotations.formats import VideoItem
from cnnlstm.tasks.multilabel.labels import MultiLabelTargets, load_multilabel


def touch(folder: Path, *names: str) -> None:
    """Empty files with video names: the readers only check that the files exist."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_csv_labels_split_on_semicolons_empty_means_none_and_repeats_merge(tmp_path):
    touch(tmp_path, "a.mp4", "b.mkv", "c.avi")
    (tmp_path / "train.csv").write_text("path,labels,notes\na.mp4, run ; jump ,x\nb.mkv,,empty\n"
                                        "c.avi,walk,\na.mp4,wave;run,again\n")
    spec = load_multilabel(tmp_path / "train.csv")
    a, b, c = (str(tmp_path / n) for n in ("a.mp4", "b.mkv", "c.avi"))
    assert [i.path for i in spec.videos.items] == [a, b, c]  # file order, one item per video
    assert spec.labels == {a: ["jump", "run", "wave"], b: [], c: ["walk"]}
    assert spec.classes == ["jump", "run", "walk", "wave"]  # sorted union
    assert any("merged" in w for w in spec.videos.warnings)
    targets = MultiLabelTargets(spec.labels, spec.classes)
    assert targets(VideoItem(a, None), torch.arange(4), 25.0).tolist() == [1.0, 1.0, 0.0, 1.0]
    assert targets(VideoItem(b, None), torch.arange(4), 25.0).tolist() == [0.0] * 4  # no action: all negative


def test_classes_txt_beside_the_file_fixes_order_and_may_hold_unseen_classes(tmp_path):
    touch(tmp_path, "v/a.mp4")
    (tmp_path / "classes.txt").write_text("wave\nrun\nsit\n")
    (tmp_path / "train.csv").write_text("video,label\nv/a.mp4,run;wave\n")  # `video` and `label` work too
    spec = load_multilabel(tmp_path / "train.csv")
    assert spec.classes == ["wave", "run", "sit"]
    assert MultiLabelTargets(spec.labels, spec.classes).targets[str(tmp_path / "v/a.mp4")].tolist() == [1, 1, 0]
    (tmp_path / "bad.csv").write_text("path,labels\nv/a.mp4,run;fly\n")
    with pytest.raises(ValueError, match=r"1 labels are not in the 3 classes: \['fly'\].*classes.txt"):
        load_multilabel(tmp_path / "bad.csv")


def test_a_validation_file_takes_the_training_classes(tmp_path):
    touch(tmp_path, "a.mp4")
    (tmp_path / "val.csv").write_text("path,labels\na.mp4,run\n")
    assert load_multilabel(tmp_path / "val.csv", classes=["run", "walk"]).classes == ["run", "walk"]
    with pytest.raises(ValueError, match=r"\['run'\]"):
        load_multilabel(tmp_path / "val.csv", classes=["walk"])


@pytest.mark.parametrize("payload", [
    {"a.mp4": ["run", "jump"], "sub/b.mp4": "walk;run", "c.mp4": []},
    [{"path": "a.mp4", "labels": ["run", "jump"]}, {"video": "sub/b.mp4", "labels": ["walk", "run"]},
     {"path": "c.mp4", "labels": []}],
])
def test_json_as_a_mapping_or_a_list_of_objects(tmp_path, payload):
    touch(tmp_path, "a.mp4", "sub/b.mp4", "c.mp4")
    (tmp_path / "labels.json").write_text(json.dumps(payload))
    spec = load_multilabel(tmp_path / "labels.json")
    assert spec.labels == {str(tmp_path / "a.mp4"): ["jump", "run"], str(tmp_path / "sub/b.mp4"): ["run", "walk"],
                           str(tmp_path / "c.mp4"): []}
    assert spec.classes == ["jump", "run", "walk"]


def test_paths_are_relative_to_root_when_given(tmp_path):
    touch(tmp_path / "media", "a.mp4")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "train.csv").write_text("path,labels\na.mp4,run\n")
    spec = load_multilabel(tmp_path / "ann" / "train.csv", root=tmp_path / "media")
    assert list(spec.labels) == [str(tmp_path / "media" / "a.mp4")]


def test_a_single_label_spec_reads_as_one_label_per_video(tmp_path):
    touch(tmp_path / "videos", "run/a.mp4", "run/b.mp4", "walk/c.mp4")
    spec = load_multilabel(tmp_path / "videos")
    assert spec.classes == ["run", "walk"]
    assert spec.labels[str(tmp_path / "videos" / "walk" / "c.mp4")] == ["walk"]
    touch(tmp_path / "loose", "x.mp4")
    with pytest.raises(ValueError, match="no label.*path,labels"):
        load_multilabel(tmp_path / "loose")


def test_errors_name_the_file_the_line_and_the_fix(tmp_path):
    touch(tmp_path, "a.mp4")
    (tmp_path / "missing.csv").write_text("path,labels\na.mp4,run\ngone.mp4,walk\n")
    with pytest.raises(FileNotFoundError, match=r"(?s)missing.csv: 1 of 2 videos are missing.*gone.mp4"):
        load_multilabel(tmp_path / "missing.csv")
    (tmp_path / "nolabel.csv").write_text("path,tags\na.mp4,run\n")  # not a multi-label header: a path list
    with pytest.raises(ValueError, match="no label"):
        load_multilabel(tmp_path / "nolabel.csv")
    (tmp_path / "bad.json").write_text(json.dumps([{"path": "a.mp4", "labels": 3}]))
    with pytest.raises(ValueError, match=r"bad.json entry 0: labels must be a list of names or a ';'-separated"):
        load_multilabel(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text(json.dumps([{"path": "a.mp4"}]))
    with pytest.raises(ValueError, match=r'obj.json entry 0: expected an object \{"path": \.\.\., "labels"'):
        load_multilabel(tmp_path / "obj.json")
    (tmp_path / "empty.csv").write_text("path,labels\n,run\n")
    with pytest.raises(ValueError, match="empty.csv line 2: empty or invalid video path"):
        load_multilabel(tmp_path / "empty.csv")
