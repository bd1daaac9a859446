"""A corpus of damaged and odd files, written here: every file is handled (its frames, or a typed
error), and ``cnnlstm scan FILE`` ends with a report or one error line for any of them, never a
traceback."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import video_factory as vf

from cnnlstm.cli import main
from cnnlstm.data.annotations.formats import load_spec
from cnnlstm.errors import is_expected


def zero_index(src: Path, dst: Path) -> Path:
    """An mp4 whose index (the moov box) is all zero bytes: the frames are there, the index is not."""
    data = bytearray(src.read_bytes())
    at = data.index(b"moov") - 4
    size = int.from_bytes(data[at:at + 4], "big")
    data[at + 8:at + size] = bytes(size - 8)
    dst.write_bytes(bytes(data))
    return dst


def write_corpus(root: Path) -> dict[str, Path]:
    """Name -> path of every kind of bad input a user's folder holds."""
    root.mkdir(parents=True, exist_ok=True)
    frames = vf.make_frames(12, 32, 48)
    good = Path(vf.mp4(root / "good.mp4", frames, faststart=False))
    fast = Path(vf.mp4(root / "faststart.mp4", frames, faststart=True))
    corpus = {"good": good, "faststart": fast}
    for name, data in {"empty.mp4": b"", "empty.bin": b"", "zeros.dat": bytes(4096),
                       "json.mp4": json.dumps({"not": "a video"}).encode(),
                       "typescript.ts": b"export const x: number = 1;\n",
                       "notes.txt": b"hello world\nthis is not an annotation list\n",
                       "readme.md": b"# Title\n\nSome *markdown* text, no videos here.\n",
                       "latin1.csv": "path,label\ncaf\xe9.mp4,x\n".encode("latin-1"),
                       "utf16.txt": "path,label\na.mp4,x\n".encode("utf-16"),
                       "long_line.txt": b"x" * 200_000}.items():
        (root / name).write_bytes(data)
        corpus[name] = root / name
    corpus["random.bin"] = Path(vf.random_bytes(root / "random.bin", 5000))
    corpus["random.mkv"] = Path(vf.random_bytes(root / "random.mkv", 5000, seed=1))
    corpus["truncated.mp4"] = Path(vf.truncate(good, root / "truncated.mp4", 0.6))
    corpus["truncated_head.mp4"] = Path(vf.truncate(fast, root / "truncated_head.mp4", 0.3, head=True))
    corpus["zero_index.mp4"] = zero_index(fast, root / "zero_index.mp4")
    corpus["bit_flip.mkv"] = Path(vf.bit_flip(vf.write(root / "src.mkv", frames, options={"g": "4"}),
                                              root / "bit_flip.mkv"))
    corpus["unknown_codec.mkv"] = Path(vf.unknown_codec(root / "unknown_codec.mkv", frames))
    corpus["audio_only.mkv"] = Path(vf.audio_only(root / "audio_only.mkv"))
    corpus["zero_frames.mkv"] = Path(vf.zero_frame_video(root / "zero_frames.mkv"))
    corpus["huge.mp4"] = Path(vf.huge_resolution(root / "huge.mp4"))
    corpus["five_hours.mkv"] = Path(vf.long_duration(root / "five_hours.mkv"))
    (root / "playlist.m3u8").write_text(f"#EXTM3U\n#EXTINF:1,\n{good}\n#EXT-X-ENDLIST\n")
    corpus["playlist.m3u8"] = root / "playlist.m3u8"
    for name in ("empty_dir", "junk_dir"):
        (root / name).mkdir()
        corpus[name] = root / name
    (root / "junk_dir" / "a.txt").write_text("x")
    os.symlink("loop", root / "loop")
    os.symlink(root / "gone.mp4", root / "broken_link.mp4")
    os.mkfifo(root / "fifo.mp4")
    corpus.update(loop=root / "loop", broken_link=root / "broken_link.mp4", fifo=root / "fifo.mp4")
    if os.geteuid() != 0:  # root reads anything
        locked = root / "locked.mp4"
        locked.write_bytes(good.read_bytes())
        locked.chmod(0)
        corpus["locked.mp4"] = locked
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "files")


def test_every_file_is_a_dataset_spec_or_a_typed_error(corpus):
    videos = []
    for name, path in corpus.items():
        try:
            spec = load_spec(path, check_exists=False)
        except Exception as exc:  # noqa: BLE001 - asserting what it is
            assert is_expected(exc), f"{name}: {type(exc).__name__}: {exc}"
            continue
        videos += [item.path for item in spec.items if spec.source.startswith("video:")]
    by_name = {Path(p).name for p in videos}
    assert {"good.mp4", "random.bin", "zeros.dat", "json.mp4", "typescript.ts", "utf16.txt"} <= by_name


def test_scan_names_every_bad_file_with_its_reason(corpus, tmp_path, capsys):
    """One scan over every file (a list naming them all): right frames for the good ones, a typed
    reason for each bad one (never a generic exception), exit 1."""
    listed = [p for name, p in corpus.items() if p.is_file() and not p.is_symlink() and name != "fifo"]
    (tmp_path / "all.txt").write_text("".join(f"{p}\n" for p in listed))
    assert main(["scan", str(tmp_path / "all.txt"), "--json", "--workers", "2", "--timeout", "60"]) == 1
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)["videos"]}
    assert rows["good.mp4"]["ok"] and rows["good.mp4"]["frames"] == 12
    assert rows["faststart.mp4"]["frames"] == 12
    assert rows["bit_flip.mkv"]["ok"], "concealed corruption decodes (and is counted)"
    expected = {"empty.mp4": "open", "random.bin": "format", "json.mp4": "format", "typescript.ts": "format",
                "zero_index.mp4": "corrupt", "truncated_head.mp4": "format", "unknown_codec.mkv": "codec",
                "audio_only.mkv": "no_video", "zero_frames.mkv": "empty", "huge.mp4": "limit",
                "five_hours.mkv": "limit", "playlist.m3u8": "format"}
    for name, reason in expected.items():
        assert not rows[name]["ok"] and rows[name]["error"].startswith(f"{reason}: "), (name, rows[name])
    for name, row in rows.items():
        assert row["ok"] or not row["error"].startswith("error: "), f"{name}: untyped error {row['error']}"


@pytest.mark.parametrize("name", ["empty.bin", "zeros.dat", "json.mp4", "notes.txt", "readme.md", "latin1.csv",
                                  "long_line.txt", "playlist.m3u8", "empty_dir", "junk_dir", "loop", "broken_link",
                                  "fifo"])
def test_scan_of_one_odd_file_is_a_report_or_one_error_line(corpus, capsys, name):
    code = main(["scan", str(corpus[name]), "--workers", "1", "--timeout", "60"])
    out, err = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in err, err
    if code == 2:
        assert err.startswith("cnnlstm scan: error: ") and len(err.strip().splitlines()) <= 3, err
        assert os.path.basename(corpus[name]) in err
    else:
        assert "bad files:" in out


def test_a_list_of_missing_files_is_a_report_naming_each(tmp_path, capsys):
    names = [f"clip_{i}.mp4" for i in range(3)]
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    assert main(["scan", str(tmp_path / "list.txt"), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert all(f"{tmp_path / n}: open: no such file" in out for n in names)
