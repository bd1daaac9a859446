"""MPEG transport streams (.ts/.mts/.m2ts) and the other containers people keep video in are videos
everywhere: folders, lists, scan, train, predict, stream. A file named alone is judged by its content;
audio-only files and playlists get typed errors, and a playlist never makes FFmpeg open what it names."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from run_factory import TINY_RUN, make_run, tiny_frames
from video_factory import make_frames, write

from cnnlstm.cli import main
from cnnlstm.data.annotations.formats import load_spec
from cnnlstm.data.video.decode import VideoReader, probe
from cnnlstm.data.video.errors import NoVideoStreamError, PlaylistError
from cnnlstm.data.video.live import expand_source
from cnnlstm.data.video.types import VIDEO_EXTENSIONS, is_playlist, is_video_file

# (extension, codec) PyAV writes here; B-frames where the codec has them
CONTAINERS = [(".ts", "libx264"), (".mts", "libx264"), (".m2ts", "libx264"), (".vob", "mpeg2video"),
              (".mxf", "mpeg2video"), (".wmv", "wmv2"), (".y4m", "rawvideo"), (".h264", "libx264")]
GOP = {"g": "6", "bf": "2"}


def video(path: Path, codec: str = "libx264", num: int = 24, seed: int = 0) -> Path:
    options = GOP if codec in ("libx264", "mpeg2video") else None
    write(path, make_frames(num, 32, 48, seed=seed), codec=codec, options=options)
    return path


def audio_only(path: Path, codec: str) -> Path:
    """An audio file (no video stream) in the container its extension names."""
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=8000)
        planar = codec not in ("pcm_s16le", "flac")
        samples = np.zeros((1, 1600), np.float32 if planar else np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp" if planar else "s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    return path


@pytest.mark.parametrize("ext, codec", CONTAINERS, ids=[e for e, _ in CONTAINERS])
def test_containers_decode_every_frame_and_random_access_equals_sequential(tmp_path, ext, codec):
    path = video(tmp_path / f"clip{ext}", codec)
    assert is_video_file(path) and is_video_file(path.with_suffix(ext.upper()))
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 24
        every = reader.get_frames(list(range(24)))  # (24, 3, 32, 48)
    with VideoReader(path) as reader:
        order = [17, 3, 22, 9, 9, 0]
        assert torch.equal(reader.get_frames(order), every[order]), "seeking must land on the same frames"


def test_gif_images_and_audio_files_are_not_videos_by_name():
    for name in ("a.gif", "b.png", "c.m4a", "d.mp3", "e.wav", "f.m3u8", ".hidden.ts", "g.txt", "h.csv"):
        assert not is_video_file(name), name
    assert {".ts", ".mts", ".m2ts", ".mov", ".m4v", ".mpg", ".mpeg", ".vob", ".wmv", ".flv", ".3gp", ".ogv", ".mxf",
            ".dv", ".y4m"} <= VIDEO_EXTENSIONS


@pytest.fixture(scope="module")
def ts_data(tmp_path_factory) -> Path:
    """root/<class>/<n>.{ts,mts,m2ts}: a labelled folder of transport streams, plus a CSV and a text list."""
    root = tmp_path_factory.mktemp("ts")
    for c, name in enumerate(("left", "right")):
        (root / "videos" / name).mkdir(parents=True)
        for i, ext in enumerate((".ts", ".mts", ".m2ts")):
            write(root / "videos" / name / f"{i}{ext}", tiny_frames(8, seed=10 * c + i), codec="libx264")
    files = sorted((root / "videos").rglob("*.*ts"))
    (root / "list.csv").write_text("path,label\n" + "".join(f"{p.relative_to(root)},{p.parent.name}\n" for p in files))
    (root / "list.txt").write_text("".join(f"{p.relative_to(root)} {p.parent.name}\n" for p in files))
    return root


def test_folders_and_lists_take_transport_streams(ts_data):
    for spec in (ts_data / "videos", ts_data / "list.csv", ts_data / "list.txt"):
        videos = load_spec(spec)
        assert len(videos) == 6 and videos.classes == ["left", "right"], spec
        assert sorted({Path(i.path).suffix for i in videos.items}) == [".m2ts", ".mts", ".ts"]
    one = load_spec(ts_data / "videos" / "left" / "0.ts")
    assert len(one) == 1 and one.source.startswith("video:")
    assert [Path(p).suffix for p in expand_source(str(ts_data / "videos" / "left"))] == [".ts", ".mts", ".m2ts"]


def test_scan_a_transport_stream_alone_and_a_folder_of_them(ts_data, capsys):
    assert main(["scan", str(ts_data / "videos" / "left" / "0.ts"), "--json", "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"][0]["ok"] and report["videos"][0]["frames"] == 8
    assert report["videos"][0]["container"] == "mpegts"
    assert main(["scan", str(ts_data / "videos"), "--json", "--workers", "2", "--fast"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["ok"] == 6 and summary["containers"] == {"mpegts": 6}


def test_train_on_transport_streams_then_predict_one(ts_data, tmp_path, capsys):
    """A 1-epoch tiny run through the CLI; stderr is not a terminal here, so no progress bar frames."""
    args = ["train", "--data", str(ts_data / "videos"), "--val", str(ts_data / "list.csv"), "--out",
            str(tmp_path / "run"), "--epochs", "1", "--batch-size", "3", "--cache", "off"]
    args += [x for key, value in TINY_RUN.items() for x in (f"--{key.replace('_', '-')}", str(value))]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "on 6 videos" in out and "epoch 1/1 [full] train_loss" in out
    assert "\r" not in err and "\r" not in out, "no progress-bar frames when stderr is not a terminal"
    clip = ts_data / "videos" / "right" / "2.m2ts"
    assert main(["predict", str(tmp_path / "run"), str(clip), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["label"] in ("left", "right") and row["frames"] == 8


def test_stream_plays_a_transport_stream(ts_data, tmp_path, capsys):
    run = make_run(tmp_path / "run", model="cnn_lstm")
    assert main(["stream", str(run), str(ts_data / "videos" / "left" / "1.mts"), "--json"]) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["frame"] for f in frames] == list(range(8))


def test_a_file_named_alone_is_judged_by_its_content(tmp_path, capsys):
    mp4_named_bin = video(tmp_path / "clip.mp4").rename(tmp_path / "clip.bin")
    assert load_spec(mp4_named_bin).source.startswith("video:"), "a video is a video whatever its name"
    text_list = tmp_path / "videos.txt"
    text_list.write_text(f"{mp4_named_bin} a\n")
    assert load_spec(text_list).source.startswith("list:")
    audio = [audio_only(tmp_path / "a.wav", "pcm_s16le"), audio_only(tmp_path / "a.m4a", "aac"),
             audio_only(tmp_path / "a.mp3", "mp3"), audio_only(tmp_path / "a.flac", "flac")]
    for path in audio:
        assert load_spec(path).source.startswith("video:"), path  # binary: the probe decides
        with pytest.raises(NoVideoStreamError, match="audio-only"):
            probe(path)
    assert main(["scan", str(audio[2]), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert f"{audio[2]}: no_video: no video stream: an audio-only file" in out


class FifoWatch:
    """A named pipe at ``path`` and a thread that notices if anything opens it for reading."""

    def __init__(self, path: Path):
        self.path = path
        os.mkfifo(path)
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()

    def _wait(self):
        with open(self.path, "wb"):  # blocks until a reader opens the pipe
            self.opened.set()

    def close(self) -> bool:
        """Unblock the thread (open the pipe ourselves); True if something else had opened it."""
        was_opened = self.opened.is_set()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.thread.join(10)
        os.close(fd)
        return was_opened


def test_playlists_are_refused_and_never_make_ffmpeg_open_what_they_name(tmp_path, capsys):
    watch = FifoWatch(tmp_path / "segment.ts")
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nsegment.ts\n#EXT-X-ENDLIST\n"
    playlists = {"index.m3u8": hls, "radio.pls": "[playlist]\nFile1=segment.ts\n", "disguised.mp4": hls,
                 "bom.txt": "\ufeff" + hls, "list.ffconcat": "ffconcat version 1.0\nfile segment.ts\n"}
    try:
        for name, text in playlists.items():
            path = tmp_path / name
            path.write_text(text, encoding="utf-8")
            assert is_playlist(path, path.read_bytes()[:512]), name
            with pytest.raises(PlaylistError, match="give the media files"):
                probe(path)
            with pytest.raises(PlaylistError):  # content wins over a video extension
                load_spec(path)
            assert main(["scan", str(path), "--workers", "1"]) == 2
            captured = capsys.readouterr()
            assert "playlists are not read" in captured.out + captured.err and "Traceback" not in captured.err
    finally:
        assert not watch.close(), "a playlist made the decoder open the file it names"
