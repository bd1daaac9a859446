"""The dense tasks end to end through the one loop: segment and caption runs trained with fit,
evaluated and predicted through the CLI, on tiny synthetic videos written as real files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlstm.cli import main
from cnnlstm.config import resolve_config
from cnnlstm.data.synth import SynthConfig, synthesize
from cnnlstm.engine.runlog import read_metrics
from cnnlstm.tasks.base import teacher_forcing_ratio
from cnnlstm.tasks.segment.task import MIN_SEGMENTS, SMOOTH_WINDOWS
from cnnlstm.train import fit

TINY = dict(backbone="test_tiny", size=32, batch_size=6, hidden_size=16, workers=0, checkpoint_every=0, log_every=10**6,
            lr=1e-2, schedule="full", cache="off", temporal_jitter=False, progress=False)


def _synth(tmp_path_factory, task: str) -> Path:
    out = tmp_path_factory.mktemp(task)
    synthesize(out, SynthConfig(task=task, videos_per_class=1, test_per_class=1, size=32, min_frames=12, max_frames=16))
    return out


@pytest.fixture(scope="module")
def segment_data(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory, "segment")


@pytest.fixture(scope="module")
def caption_data(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory, "caption")


def _config(folder: Path, out: Path, **kw):
    return resolve_config(None,
                          {**TINY, "data": str(folder / "train.csv"), "val": str(folder / "test.csv"), "out": str(out),
                           **kw})


def _train_losses(run: Path) -> list[float]:
    return [r["train_loss"] for r in read_metrics(run) if "val_score" in r or "val_cider" in r]


def test_segment_run_trains_evaluates_and_predicts_segments(segment_data, tmp_path, capsys):
    run = tmp_path / "seg"
    summary = fit(_config(segment_data, run, task="segment", model="seq2seq_cnn_lstm", frames=12, epochs=6),
                  log=lambda *_: None)
    assert summary["best_score_name"] == "val_score" and summary["classes"][0] == "background"
    losses = _train_losses(run)
    assert losses[-1] < losses[0], f"training loss did not fall: {losses}"
    assert (run / "plots" / "timeline_val_0.png").is_file()

    assert main(["evaluate", str(run), "--data", str(segment_data / "test.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50", "map@0.5"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["num_videos"] == 6 and report["timeline_plots"]
    best = json.loads((run / "best.json").read_text())  # the kept epoch's validation row, with the cleaning it picked
    assert best["epoch"] == summary["best_epoch"] and best["val_smooth"] in SMOOTH_WINDOWS
    assert (report["smooth"], report["min_segment"]) == (best["val_smooth"], best["val_min_segment"])  # as scored

    videos = sorted(str(p) for p in (segment_data / "videos").glob("test_*"))[:2]
    assert main(["predict", str(run), *videos, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    classes = json.loads((run / "labels.json").read_text())
    for row in rows:
        assert len(row["frame_labels"]) == len(row["frame_times"]) == 12 and set(row["frame_labels"]) <= set(classes)
        for seg in row["segments"]:
            assert seg["label"] in classes[1:] and 0 <= seg["start"] < seg["end"] <= row["duration"] + 1e-6
    assert main(["predict", str(run), videos[0]]) == 0
    assert "segment(s)" in capsys.readouterr().out


def test_a_segment_run_without_val_picks_the_label_cleaning_on_its_training_videos(segment_data, tmp_path, capsys):
    run, lines = tmp_path / "noval", []
    cfg = _config(segment_data, run, task="segment", model="seq2seq_cnn_lstm", frames=8, epochs=2, smooth=3, val=None)
    summary = fit(cfg, log=lines.append)
    assert any(line.startswith("no --val: the label cleaning") for line in lines), lines
    best = json.loads((run / "best.json").read_text())  # the kept weights, validated once on the training videos
    assert (best["scored_on"], best["epoch"]) == ("train", summary["best_epoch"]) and best["val_smooth"] == 3
    assert best["val_min_segment"] in MIN_SEGMENTS and 0 <= best["val_f1@50"] <= 1
    assert main(["evaluate", str(run), "--data", str(segment_data / "test.csv"), "--json", "--no-plot"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["smooth"], report["min_segment"]) == (3, best["val_min_segment"]), "given, then picked"

    lines.clear()  # both given: nothing to pick, no pass over the training videos
    fit(_config(segment_data, tmp_path / "given", task="segment", model="seq2seq_cnn_lstm", frames=8, epochs=1,
                smooth=3, min_segment=2, val=None), log=lines.append)
    assert not any("no --val" in line or "picked on the training" in line for line in lines), lines
    assert "scored_on" not in json.loads((tmp_path / "given" / "best.json").read_text())


def test_autoregressive_labeller_trains_with_scheduled_sampling(segment_data, tmp_path):
    cfg = _config(segment_data, tmp_path / "ar", task="segment", model="seq2seq_ar_cnn_lstm", frames=8, epochs=2,
                  teacher_forcing=1.0, teacher_forcing_end=0.5)
    assert teacher_forcing_ratio(cfg, 0.0) == 1.0 and teacher_forcing_ratio(cfg, 0.5) == pytest.approx(0.75)
    assert teacher_forcing_ratio(cfg, 1.0) == pytest.approx(0.5)
    summary = fit(cfg, log=lambda *_: None)
    assert summary["steps"] == 2 and summary["best_val_score"] >= 0


def test_caption_run_builds_a_vocabulary_and_reports_bleu_cider(caption_data, tmp_path, capsys):
    run = tmp_path / "cap"
    summary = fit(_config(caption_data, run, task="caption", model="caption_lstm", frames=8, epochs=6, beam_size=2,
                          teacher_forcing_end=0.8, max_caption_len=10), log=lambda *_: None)
    assert summary["best_score_name"] == "val_cider"
    vocab = json.loads((run / "vocab.json").read_text())
    assert json.loads((run / "labels.json").read_text()) == vocab["tokens"] and "then" in vocab["tokens"]
    losses = _train_losses(run)
    assert losses[-1] < losses[0], f"training loss did not fall: {losses}"

    assert main(["evaluate", str(run), "--data", str(caption_data / "test.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["cider"] >= 0 and report["num_videos"] == 6 and report["beam_size"] == 2
    assert all(len(c["caption"].split()) <= 10 for c in report["captions"])

    video = sorted(str(p) for p in (caption_data / "videos").glob("test_*"))[0]
    assert main(["predict", str(run), video, "--json", "--plot", str(tmp_path / "cap.png")]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert isinstance(row["caption"], str) and row["caption"] == row["label"]
    assert len(row["word_attention"]) >= len(row["words"])
    assert all(len(w) == 8 and abs(sum(w) - 1) < 1e-3 for w in row["word_attention"]), \
        "one distribution over frames per word"
    assert Path(row["plot"]).is_file()

    # the decoder loop is Python: export says so instead of writing half a model
    assert main(["export", str(run), "--format", "onnx"]) == 2
    assert "captioning run" in capsys.readouterr().err and not (run / "onnx").exists()


def test_a_model_that_does_not_fit_the_task_is_refused_with_the_fix(segment_data, caption_data, tmp_path):
    with pytest.raises(ValueError, match="seq2seq_cnn_lstm"):
        fit(_config(segment_data, tmp_path / "a", task="segment", model="cnn_lstm", frames=8, epochs=1),
            log=lambda *_: None)
    with pytest.raises(ValueError, match="--model caption_lstm"):
        fit(_config(caption_data, tmp_path / "b", task="caption", model="cnn_lstm", frames=8, epochs=1),
            log=lambda *_: None)
    videos = sorted((segment_data / "videos").iterdir())[:4]  # labelled as clips: the data is fine, the model is not
    clips = tmp_path / "clips.csv"
    clips.write_text("path,label\n" + "".join(f"{v},{'ab'[i % 2]}\n" for i, v in enumerate(videos)))
    with pytest.raises(ValueError, match="--task segment"):
        fit(_config(segment_data, tmp_path / "c", task="classify", model="seq2seq_cnn_lstm", frames=8, epochs=1,
                    data=str(clips), val=None), log=lambda *_: None)


def test_segment_targets_survive_the_feature_cache(segment_data, tmp_path):
    """While the backbone is frozen the loop trains from cached features: the per-frame targets
    (which need each video's fps) must be the same as when decoding."""
    from cnnlstm.data.annotations.segments import load_segments
    from cnnlstm.data.datasets import VideoDataset
    from cnnlstm.data.features import CachedFeatureDataset, FeatureCache, extract_features
    from cnnlstm.data.sampling import SamplerConfig
    from cnnlstm.data.transforms import DataConfig, eval_transform
    from cnnlstm.models import create_encoder
    from cnnlstm.tasks.segment.segments import SegmentTargets

    spec = load_segments(segment_data / "train.csv")
    encoder = create_encoder("test_tiny")
    encoder.freeze()
    dataset = VideoDataset(spec.videos, sampler=SamplerConfig(num_frames=8),
                           targets=SegmentTargets(spec.segments, spec.classes),
                           transform=eval_transform(DataConfig.from_backbone(encoder.data_config, input_size=32,
                                                                             resize=None)))
    cache = FeatureCache(tmp_path / "cache", encoder=encoder, dataset=dataset)
    extract_features(cache, progress=False)
    cached = CachedFeatureDataset(cache)
    for i in range(len(dataset)):
        assert torch.equal(cached[i]["label"], dataset[i]["label"])
        assert cached[i]["label"].shape == (8,)
