"""The training set's fingerprint: paths, sizes and labels, cheap (stat only), with a clear diff."""
from __future__ import annotations

import shutil

import torch

from cnnlstm.data.annotations.formats import VideoItem
from cnnlstm.data.fingerprint import dataset_fingerprint, fingerprint_changes

CLASSES = ["a", "b"]


def _items(root, sizes, labels=None):
    items = []
    for i, size in enumerate(sizes):
        path = root / f"{i:02d}.mp4"
        path.write_bytes(b"x" * size)
        items.append(VideoItem(str(path), (labels or ["a"] * len(sizes))[i]))
    return items


def test_same_files_same_fingerprint_and_the_folder_can_move(tmp_path):
    (tmp_path / "one").mkdir()
    items = _items(tmp_path / "one", [10, 20, 30])
    a = dataset_fingerprint(items, CLASSES)
    assert a["num_videos"] == 3 and a["videos"].dtype == torch.long and a["videos"].shape == (3,)
    assert fingerprint_changes(a, dataset_fingerprint(items, CLASSES), items) is None
    shutil.move(tmp_path / "one", tmp_path / "moved")
    moved = [VideoItem(str(tmp_path / "moved" / f"{i:02d}.mp4"), "a") for i in range(3)]
    assert dataset_fingerprint(moved, CLASSES)["digest"] == a["digest"]


def test_same_count_and_classes_other_files_are_named(tmp_path):
    (tmp_path / "d").mkdir()
    items = _items(tmp_path / "d", [10] * 8)
    saved = dataset_fingerprint(items, CLASSES)
    (tmp_path / "d" / "03.mp4").write_bytes(b"y" * 11)  # another file under the same name: its size differs
    items[5] = VideoItem(items[5].path, "b")  # a label changed
    renamed = tmp_path / "d" / "other.mp4"
    shutil.copy(items[6].path, renamed)
    items[6] = VideoItem(str(renamed), "a")  # the same bytes under another path
    now = dataset_fingerprint(items, CLASSES)
    assert now["num_videos"] == saved["num_videos"] and now["classes"] == saved["classes"]
    message = fingerprint_changes(saved, now, items)
    assert message.startswith("3 of 8 videos differ in path, size or label")
    assert "#3 now 03.mp4 (11 bytes, label 'a')" in message
    assert "#5 now 05.mp4 (10 bytes, label 'b')" in message and "#6 now other.mp4" in message


def test_many_changes_are_cut_short_and_counts_and_classes_are_named(tmp_path):
    (tmp_path / "d").mkdir()
    saved = dataset_fingerprint(_items(tmp_path / "d", [10] * 9), CLASSES)
    items = _items(tmp_path / "d", [12] * 9)
    message = fingerprint_changes(saved, dataset_fingerprint(items, CLASSES), items, limit=2)
    assert message.count("#") == 2 and message.endswith("and 7 more")
    fewer = items[:7]
    message = fingerprint_changes(saved, dataset_fingerprint(fewer, ["a", "c"]), fewer)
    assert "classes ['a', 'b'] -> ['a', 'c']" in message and "9 videos -> 7" in message


def test_a_checkpoint_from_before_per_video_fingerprints_compares_count_and_classes(tmp_path):
    (tmp_path / "d").mkdir()
    items = _items(tmp_path / "d", [10, 10])
    now = dataset_fingerprint(items, CLASSES)
    assert fingerprint_changes({"num_videos": 2, "classes": CLASSES}, now, items) is None
    assert "2 videos -> 1" in fingerprint_changes(now, dataset_fingerprint(items[:1], CLASSES), items[:1])
