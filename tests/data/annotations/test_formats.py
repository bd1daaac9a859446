"""Dataset spec parsing: every form from files written here (the videos are empty placeholder files)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from cnnlstm.data.annotations.formats import VideoItem, VideoList, check_group_leakage, load_spec


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def class_folders(tmp_path):
    root = tmp_path / "data"
    for name in ("walk/a.mp4", "walk/B.AVI", "run/c.mkv", "run/d.webm", "jump/e.mov"):
        touch(root / name)
    touch(root / "walk" / "notes.txt")
    touch(root / "walk" / ".hidden.mp4")
    touch(root / ".cache" / "x.mp4")
    return root


def test_folder_per_class(class_folders):
    videos = load_spec(class_folders)
    assert videos.classes == ["jump", "run", "walk"]
    assert videos.label_index() == {"jump": 0, "run": 1, "walk": 2}
    assert sorted((Path(i.path).name, i.label) for i in videos.items) == [
        ("B.AVI", "walk"), ("a.mp4", "walk"), ("c.mkv", "run"), ("d.webm", "run"), ("e.mov", "jump")
    ]
    assert all(os.path.isabs(i.path) for i in videos.items)
    assert videos.source.startswith("folder:")
    assert any("ignored 1 files" in w for w in videos.warnings)


def test_plain_folder_is_unlabelled(tmp_path):
    for name in ("x.mp4", "y.MKV", "readme.md"):
        touch(tmp_path / name)
    videos = load_spec(tmp_path)
    assert [i.label for i in videos.items] == [None, None]
    assert videos.classes == []


def test_folder_ambiguous_and_empty(class_folders, tmp_path):
    touch(class_folders / "loose.mp4")
    with pytest.raises(ValueError, match="ambiguous"):
        load_spec(class_folders)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos found"):
        load_spec(tmp_path / "empty")


def test_single_video_file(tmp_path):
    videos = load_spec(touch(tmp_path / "clip.mp4"))
    assert len(videos) == 1 and videos.items[0].label is None


def test_csv_relative_absolute_and_root(tmp_path):
    absolute = touch(tmp_path / "elsewhere" / "abs.mp4")
    touch(tmp_path / "ann" / "clips" / "rel.mp4")
    spec = write(
        tmp_path / "ann" / "train.csv",
        f'path,label,extra\nclips/rel.mp4,"cat, big",1\n{absolute},dog,2\n',
    )
    videos = load_spec(spec)
    assert [(i.path, i.label) for i in videos.items] == [
        (str(tmp_path / "ann" / "clips" / "rel.mp4"), "cat, big"),
        (str(absolute), "dog"),
    ]
    assert videos.classes == ["cat, big", "dog"]
    touch(tmp_path / "videos" / "clips" / "rel.mp4")
    rooted = load_spec(spec, root=tmp_path / "videos")
    assert rooted.items[0].path == str(tmp_path / "videos" / "clips" / "rel.mp4")
    assert rooted.items[1].path == str(absolute)  # absolute paths ignore root


def test_csv_errors_name_file_and_line(tmp_path):
    spec = write(tmp_path / "train.csv", "path,label\n" + "".join(f"v{i}.mp4,a\n" for i in range(5)) + "v5.mp4\n")
    with pytest.raises(ValueError, match=r"train.csv line 7: expected 2 columns `path,label`, got 1"):
        load_spec(spec, check_exists=False)
    spec = write(tmp_path / "bad.csv", "video,class\na.mp4,x\n")
    with pytest.raises(ValueError, match=r"bad.csv line 1: expected a CSV header `path,label`"):
        load_spec(spec)
    spec = write(tmp_path / "empty_label.csv", "path,label\na.mp4,x\nb.mp4,\n")
    with pytest.raises(ValueError, match="line 3: empty label"):
        load_spec(spec, check_exists=False)


def test_missing_files_reported_together(tmp_path):
    rows = "".join(f"missing_{i}.mp4,a\n" for i in range(12))
    touch(tmp_path / "here.mp4")
    spec = write(tmp_path / "list.csv", "path,label\nhere.mp4,a\n" + rows)
    with pytest.raises(FileNotFoundError) as info:
        load_spec(spec)
    message = str(info.value)
    assert "12 of 13 videos are missing" in message and "missing_0.mp4" in message and "7 more" in message
    kept = load_spec(spec, check_exists=False)
    assert len(kept) == 13
    doubled = write(tmp_path / "twice.csv", "path,label\nhere.mp4,a\nhere.mp4,a\n")
    assert any("listed more than once" in w for w in load_spec(doubled).warnings)


def test_text_list_names_ints_and_paths_alone(tmp_path):
    for name in ("a.mp4", "b c.mp4", "d.mp4"):
        touch(tmp_path / name)
    named = write(tmp_path / "named.txt", "# comment\n\na.mp4 run\nb c.mp4   walk\n")
    videos = load_spec(named)
    assert [(Path(i.path).name, i.label) for i in videos.items] == [("a.mp4", "run"), ("b c.mp4", "walk")]

    ints = write(tmp_path / "ints.txt", "a.mp4 2\nb c.mp4 0\nd.mp4 10\n")
    videos = load_spec(ints)
    assert videos.classes == ["0", "2", "10"]  # by value, not "10" < "2"
    videos = load_spec(ints, classes=[f"c{i}" for i in range(11)])
    assert [i.label for i in videos.items] == ["c2", "c0", "c10"]
    with pytest.raises(ValueError, match="ints.txt line 3: class index 10 out of range"):
        load_spec(ints, classes=["x", "y", "z"])

    alone = write(tmp_path / "paths.txt", "a.mp4\nb c.mp4\n")
    assert [i.label for i in load_spec(alone).items] == [None, None]
    mixed = write(tmp_path / "mixed.txt", "a.mp4 run\nd.mp4\n")
    with pytest.raises(ValueError, match="mixed.txt line 2: expected `path label`"):
        load_spec(mixed)


def test_text_list_ints_through_classes_txt(tmp_path):
    touch(tmp_path / "a.mp4")
    write(tmp_path / "classes.txt", "zebra\napple\n")
    videos = load_spec(write(tmp_path / "list.txt", "a.mp4 0\n"))
    assert videos.items[0].label == "zebra"


@pytest.fixture
def ucf(tmp_path):
    root = tmp_path / "UCF-101"
    splits = tmp_path / "ucfTrainTestlist"
    write(splits / "classInd.txt", "1 ApplyEyeMakeup\r\n2 Archery\r\n")
    train = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "Archery/v_Archery_g09_c02.avi 2"]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g09_c01.avi"]
    write(splits / "trainlist01.txt", "\r\n".join(train) + "\r\n")
    write(splits / "testlist01.txt", "\r\n".join(test) + "\r\n")
    for line in train + test:
        touch(root / line.split()[0])
    return root, splits


def test_ucf101_split_lists(ucf):
    root, splits = ucf
    train = load_spec(splits / "trainlist01.txt", root=root)
    test = load_spec(splits / "testlist01.txt", root=root)
    assert train.classes == test.classes == ["ApplyEyeMakeup", "Archery"]
    assert [(i.label, i.group) for i in train.items] == [("ApplyEyeMakeup", "ApplyEyeMakeup/g08"),
                                                         ("Archery", "Archery/g09")]
    assert [i.label for i in test.items] == ["ApplyEyeMakeup", "Archery"]
    assert train.items[0].path == str(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    with pytest.warns(UserWarning, match="Archery/g09"):
        leaks = check_group_leakage(train, test)
    assert len(leaks) == 1 and leaks[0].startswith("1 groups appear in both") and "ApplyEyeMakeup/g" not in leaks[0]


def test_ucf101_errors(ucf):
    root, splits = ucf
    with pytest.raises(ValueError, match="pass --root"):
        load_spec(splits / "trainlist01.txt")
    write(splits / "trainlist02.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n")
    with pytest.raises(ValueError, match="trainlist02.txt line 1: folder 'ApplyEyeMakeup' but index 2 is 'Archery'"):
        load_spec(splits / "trainlist02.txt", root=root)
    (splits / "classInd.txt").unlink()
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        load_spec(splits / "trainlist01.txt", root=root)


def test_no_leakage_without_shared_groups(class_folders):
    videos = load_spec(class_folders)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_group_leakage(videos, videos) == []  # no groups in these names


def test_kinetics_csv_layouts(tmp_path):
    spec = write(
        tmp_path / "k400" / "val.csv",
        "label,youtube_id,time_start,time_end,split\n"
        '"air drumming",abc123,10,20,val\n'
        "abseiling,xyz789,0,10,val\n"
        "abseiling,gone000,5,15,val\n",
    )
    root = tmp_path / "k400" / "videos"
    touch(root / "val" / "air drumming" / "abc123_000010_000020.mp4")  # root/<split>/<label>/
    touch(root / "abseiling" / "xyz789_000000_000010.mp4")  # root/<label>/
    with pytest.raises(FileNotFoundError, match="1 of 3 videos are missing") as info:
        load_spec(spec, root=root)
    assert "gone000_000005_000015.mp4" in str(info.value)
    videos = load_spec(spec, root=root, check_exists=False)
    assert videos.source.startswith("kinetics:")
    first, second, _ = videos.items
    assert first == VideoItem(
        str(root / "val" / "air drumming" / "abc123_000010_000020.mp4"), "air drumming", "abc123", 10.0, 20.0
    )
    assert second.path == str(root / "abseiling" / "xyz789_000000_000010.mp4")
    assert videos.classes == ["abseiling", "air drumming"]


def test_kinetics_other_folder_naming_and_no_label(tmp_path):
    touch(tmp_path / "validate" / "abc_000001_000011.mkv")  # split folder named differently
    spec = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\nabc,1,11,val\n")
    item = load_spec(spec).items[0]
    assert item.path == str(tmp_path / "validate" / "abc_000001_000011.mkv") and item.label is None


def test_kinetics_flat_layout_and_bad_times(tmp_path):
    touch(tmp_path / "abc_000001_000011.mp4")
    spec = write(tmp_path / "k.csv", "label,youtube_id,time_start,time_end,split\nx,abc,1,11,train\n")
    assert load_spec(spec).items[0].path == str(tmp_path / "abc_000001_000011.mp4")
    bad = write(tmp_path / "bad.csv", "label,youtube_id,time_start,time_end,split\nx,abc,one,11,train\n")
    with pytest.raises(ValueError, match="bad.csv line 2: time_start/time_end must be numbers"):
        load_spec(bad)


def test_classes_fix_order_and_reject_unknown(class_folders):
    order = ["walk", "run", "jump", "swim"]
    videos = load_spec(class_folders, classes=order)
    assert videos.classes == order and videos.label_index()["walk"] == 0
    with pytest.raises(ValueError, match=r"2 labels are not in the given classes.*\['jump', 'run'\]"):
        load_spec(class_folders, classes=["walk"])


def test_missing_spec_root_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_spec(tmp_path / "nope.csv")
    spec = write(tmp_path / "list.csv", "path,label\na.mp4,x\n")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_spec(spec, root=tmp_path / "no_such_root")
    with pytest.raises(ValueError, match="unknown spec format"):
        load_spec(tmp_path, format="json")


def test_ambiguous_csv_header(tmp_path):
    spec = write(tmp_path / "both.csv", "path,label,youtube_id,time_start,time_end\na.mp4,x,abc,0,10\n")
    with pytest.raises(ValueError, match="format="):
        load_spec(spec)
    assert load_spec(spec, format="csv", check_exists=False).items[0].label == "x"


def test_videolist_is_plain_data():
    videos = VideoList(items=[VideoItem("/a.mp4", "x")], classes=["x"], source="csv:/a.csv", warnings=[])
    assert len(videos) == 1 and videos.label_index() == {"x": 0}
