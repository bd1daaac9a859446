"""The synthetic temporal-order dataset: files, splits, determinism and order-blindness."""
from __future__ import annotations

import csv
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cnnlstm.cli import main
from cnnlstm.data.annotations.formats import load_spec
from cnnlstm.data.synth import SynthConfig, synthesize
from cnnlstm.tasks.classify.synth import CLASSES, REVERSE_OF, class_order, render_clip

av = pytest.importorskip("av")

SMALL = SynthConfig(videos_per_class=4, test_per_class=2, size=32, min_frames=8, max_frames=14, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, synthesize(out, SMALL)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (T, H, W, 3)


def test_files_exist_and_decode(dataset):
    out, summary = dataset
    assert summary["classes"] == list(CLASSES) == sorted(CLASSES)
    assert (summary["train"], summary["test"]) == (4 * len(CLASSES), 2 * len(CLASSES))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and len(meta["videos"]) == 6 * len(CLASSES)
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    assert "order" in (out / "README.txt").read_text()
    for video in meta["videos"]:
        frames = decode(out / video["path"])
        assert frames.shape == (video["frames"], 32, 32, 3), video["path"]


def test_decoded_frames_match_rendered(dataset):
    out, _ = dataset
    meta = json.loads((out / "dataset.json").read_text())
    for video in meta["videos"][:: len(CLASSES) + 1]:  # several classes and every container
        rng = np.random.default_rng([SMALL.seed, 0 if video["split"] == "train" else 1, video["index"]])
        rng.integers(SMALL.min_frames, SMALL.max_frames + 1)
        expected = render_clip(video["label"], rng, video["frames"], SMALL.size)
        error = np.abs(decode(out / video["path"]).astype(np.int16) - expected).mean()
        assert error < 8, f"{video['path']}: mean abs error {error:.1f}"


def test_csvs_and_folder_parse(dataset):
    out, _ = dataset
    train, test = load_spec(out / "train.csv"), load_spec(out / "test.csv", classes=list(CLASSES))
    assert train.classes == test.classes == list(CLASSES)
    assert Counter(i.label for i in train.items) == {c: 4 for c in CLASSES}  # balanced
    assert Counter(i.label for i in test.items) == {c: 2 for c in CLASSES}
    assert not {i.path for i in train.items} & {i.path for i in test.items}
    folder = load_spec(out / "videos")
    assert folder.classes == list(CLASSES) and len(folder) == len(train) + len(test)
    assert all(Path(i.path).parent.name == i.label for i in folder.items)


def test_variable_lengths_and_containers(dataset):
    out, _ = dataset
    meta = json.loads((out / "dataset.json").read_text())
    lengths = {v["frames"] for v in meta["videos"]}
    assert len(lengths) > 1 and min(lengths) >= SMALL.min_frames and max(lengths) <= SMALL.max_frames
    assert {Path(v["path"]).suffix for v in meta["videos"]} == {".mp4", ".avi", ".mkv", ".webm"}


def test_rerun_replaces_and_refuses_foreign_folder(dataset, tmp_path):
    out, _ = dataset
    tiny = SynthConfig(videos_per_class=1, test_per_class=0, size=16, min_frames=6, max_frames=6)
    synthesize(out, tiny)  # replaces the earlier output, leaves no stale videos
    assert len(load_spec(out / "videos")) == len(CLASSES)
    synthesize(out, SMALL)
    (tmp_path / "train.csv").write_text("path,label\n")
    with pytest.raises(FileExistsError, match="not written by synthesize"):
        synthesize(tmp_path, tiny)


def test_deterministic_given_seed():
    a = render_clip("zigzag_left", np.random.default_rng(7), 20, 32)
    b = render_clip("zigzag_left", np.random.default_rng(7), 20, 32)
    c = render_clip("zigzag_left", np.random.default_rng(8), 20, 32)
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_deterministic_files(tmp_path):
    config = SynthConfig(videos_per_class=2, test_per_class=0, size=16, min_frames=6, max_frames=8, seed=1)
    synthesize(tmp_path / "a", config)
    synthesize(tmp_path / "b", config)
    for path in sorted((tmp_path / "a" / "videos").rglob("*.*")):
        other = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert np.array_equal(decode(path), decode(other)), path.name
        if path.suffix in (".mp4", ".avi"):  # Matroska/WebM muxers write random ids
            assert path.read_bytes() == other.read_bytes(), path.name
    assert (tmp_path / "a" / "train.csv").read_text() == (tmp_path / "b" / "train.csv").read_text()


def test_h264_encodes_of_one_clip_are_identical(tmp_path):
    """x264's rate-control lookahead made about 1 in 20 encodes of the same 64 px clip differ (threads=1 did
    not help); 30 encodes catch that about 4 times in 5, and every one must match."""
    from cnnlstm.data.synth.output import CODEC_OPTIONS
    from cnnlstm.data.video.encode import write_video

    clip = np.random.default_rng(0).integers(0, 255, (40, 64, 64, 3), dtype=np.uint8)  # (T, H, W, C)
    clip[:, 20:30, 20:30] = 255
    encodes = set()
    for _ in range(30):
        write_video(tmp_path / "clip.mp4", clip, fps=12, codec="libx264", options=CODEC_OPTIONS["libx264"])
        encodes.add((tmp_path / "clip.mp4").read_bytes())
    assert len(encodes) == 1


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_frames", [6, 17, 31])
def test_order_blind_every_class_has_the_same_frames(seed, num_frames):
    clips = {cls: render_clip(cls, np.random.default_rng(seed), num_frames, 32) for cls in CLASSES}
    canonical = sorted(frame.tobytes() for frame in clips["moving_right"])
    for cls, clip in clips.items():
        assert sorted(frame.tobytes() for frame in clip) == canonical, cls  # same multiset of frames
        assert np.array_equal(clip.mean(0), clips["moving_right"].mean(0)), cls  # mean pooling: no signal
    for cls, reverse in REVERSE_OF.items():
        if reverse != cls:
            assert np.array_equal(clips[reverse], clips[cls][::-1]), (cls, reverse)
    for a, b in itertools.combinations(CLASSES, 2):
        assert not np.array_equal(clips[a], clips[b]), (a, b)  # the order differs


@pytest.mark.parametrize("num_frames", [6, 7, 8, 24, 48])
def test_class_orders_are_permutations(num_frames):
    for cls in CLASSES:
        order = class_order(cls, num_frames)
        assert sorted(order.tolist()) == list(range(num_frames)), cls
        assert np.abs(np.diff(order)).max() <= 3, cls  # no jumps: the motion stays smooth


def direction_changes(clip: np.ndarray) -> tuple[int, int]:
    """(first direction, number of reversals) of the object's x centroid over time."""
    background = clip[:, :2, :2].reshape(-1, 3).mean(0)  # (3,): the object never reaches the corner
    weight = np.clip(np.abs(clip.astype(np.float32) - background).sum(-1) - 60, 0, None)  # (T, H, W)
    xs = np.arange(clip.shape[2])
    centroid = (weight * xs).sum((1, 2)) / weight.sum((1, 2))  # (T,)
    signs = np.sign(np.diff(centroid))
    signs = signs[signs != 0]
    return int(signs[0]), int((np.diff(signs) != 0).sum())


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("num_frames", [6, 24, 48])
def test_temporal_signal_is_visible_in_the_pixels(size, num_frames):
    expected = {
        "moving_right": (1, 0), "moving_left": (-1, 0), "right_and_back": (1, 1),
        "left_and_back": (-1, 1), "zigzag_right": (1, 2), "zigzag_left": (-1, 2),
    }
    for seed in range(5):
        for cls in CLASSES:
            clip = render_clip(cls, np.random.default_rng(seed), num_frames, size)
            assert direction_changes(clip) == expected[cls], (seed, cls)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown synthetic task"):
        SynthConfig(task="caption-everything")
    with pytest.raises(ValueError, match="even"):
        SynthConfig(size=33)
    with pytest.raises(ValueError, match="min_frames"):
        SynthConfig(min_frames=30, max_frames=20)
    with pytest.raises(ValueError, match="unknown synthetic class"):
        render_clip("moving_up", np.random.default_rng(0), 10, 32)
    with pytest.raises(ValueError, match="num_frames"):
        render_clip("moving_left", np.random.default_rng(0), 3, 32)


# --- the val split ------------------------------------------------------------------------------

# videos per class setting of each task: one per class, one per action, one per kind of motion
PER_CLASS_COUNT = {"classify": len(CLASSES), "multilabel": 7, "segment": 6, "caption": 6}
TINY = dict(videos_per_class=1, test_per_class=1, size=16, min_frames=6, max_frames=8, seed=5)


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("task", sorted(PER_CLASS_COUNT))
def test_val_split_is_written_apart_from_the_others(task, tmp_path):
    plain = synthesize(tmp_path / "plain", SynthConfig(task=task, **TINY))
    summary = synthesize(tmp_path / "val", SynthConfig(task=task, val_per_class=2, **TINY))
    plain_out, out = tmp_path / "plain", tmp_path / "val"
    assert "val" not in plain and "val_csv" not in plain and not (plain_out / "val.csv").exists()
    assert summary["val"] == 2 * PER_CLASS_COUNT[task] and summary["val_csv"] == str(out / "val.csv")
    assert json.loads((out / "dataset.json").read_text())["val"] == summary["val"]
    assert "val.csv" in (out / "README.txt").read_text() and "val.csv" not in (plain_out / "README.txt").read_text()

    val, test = csv_rows(out / "val.csv"), csv_rows(out / "test.csv")
    assert val[0] == test[0]  # the same columns
    videos = {row[0] for row in val[1:]}
    assert len(videos) == summary["val"]
    for path in videos:
        assert (out / path).is_file(), path
        assert re.fullmatch(r"val_\d{4}\.(mp4|avi|mkv|webm)", Path(path).name), path
    test_videos = {row[0] for row in test[1:]}
    assert {Path(p).parent for p in videos} == {Path(p).parent for p in test_videos}  # the same folders
    twins = [(p, p.replace("/val_", "/test_")) for p in sorted(videos) if Path(p).suffix in (".mp4", ".avi")]
    twins = [(p, q) for p, q in twins if q in test_videos]
    assert twins and all((out / p).read_bytes() != (out / q).read_bytes() for p, q in twins)  # drawn apart from test

    for name in ("train.csv", "test.csv"):  # the val split moves nothing in the others
        assert (out / name).read_text() == (plain_out / name).read_text(), name
    for path in (p for p in (plain_out / "videos").rglob("*") if p.suffix in (".mp4", ".avi")):
        assert path.read_bytes() == (out / path.relative_to(plain_out)).read_bytes(), path.name


def test_negative_val_split_is_refused():
    with pytest.raises(ValueError, match="val_per_class must be >= 0.*got -1"):
        SynthConfig(val_per_class=-1)


@pytest.mark.parametrize("task", ["classify", "segment"])  # videos/<class>/ and the flat videos/ layout
def test_resynthesizing_without_val_removes_the_old_val_split(task, tmp_path, capsys):
    out = tmp_path / "data"
    args = ["synth", str(out), "--task", task, "--videos-per-class", "1", "--test-per-class", "1", "--size", "16",
            "--quiet"]
    assert main([*args, "--val-per-class", "1"]) == 0
    assert f"and {PER_CLASS_COUNT[task]} val videos" in capsys.readouterr().out
    assert (out / "val.csv").is_file() and list((out / "videos").rglob("val_*"))
    assert main(args) == 0
    assert " val" not in capsys.readouterr().out
    assert not (out / "val.csv").exists() and not list((out / "videos").rglob("val_*"))
    assert (out / "train.csv").is_file() and (out / "test.csv").is_file()
