"""The multi-label task end to end through the one loop: trained with fit on tiny synthetic videos
(real files), evaluated and predicted through the CLI; the positive weights and the feature cache."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlstm.cli import main
from cnnlstm.config import resolve_config
from cnnlstm.data.synth import SynthConfig, synthesize
from cnnlstm.engine.runlog import read_metrics
from cnnlstm.tasks import get_task
from cnnlstm.tasks.multilabel.synth import ACTIONS
from cnnlstm.tasks.multilabel.task import POS_WEIGHT_CAP, bce_loss, pos_weights
from cnnlstm.train import fit

TINY = dict(backbone="test_tiny", size=32, frames=8, batch_size=7, hidden_size=16, workers=0, checkpoint_every=0,
            log_every=10**6, lr=1e-2, schedule="full", cache="off", temporal_jitter=False, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multilabel")
    synthesize(out, SynthConfig(task="multilabel", videos_per_class=1, test_per_class=1, size=32, min_frames=12,
                                max_frames=16))
    return out


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "ml"
    cfg = resolve_config(None, {**TINY, "task": "multilabel", "data": str(data / "train.csv"),
                                "val": str(data / "test.csv"), "out": str(run), "epochs": 6, "pos_weight": "auto"})
    summary = fit(cfg, log=lambda *_: None)
    assert summary["best_score_name"] == "val_map" and summary["classes"] == list(ACTIONS)
    return run


def test_a_run_trains_on_multi_hot_targets_with_the_default_clip_model(run):
    rows = [r for r in read_metrics(run) if "val_map" in r]
    losses = [r["train_loss"] for r in rows]
    assert len(rows) == 6 and losses[-1] < losses[0], f"training loss did not fall: {losses}"
    assert all(0 <= r["val_map"] <= 1 and 0 <= r["val_f1@0.5_micro"] <= 1 for r in rows)
    assert "cnn_lstm" in (run / "config.yaml").read_text() and (run / "plots" / "ap_val.png").is_file()


def test_evaluate_reports_map_per_class_ap_and_f1(run, data, capsys):
    assert main(["evaluate", str(run), "--data", str(data / "test.csv"), "--json", "--views", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("map", "f1@0.5_micro", "f1@0.5_macro", "exact_match"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["task"] == "multilabel" and report["num_videos"] == 7 and report["views"] == 2
    assert [r["class"] for r in report["per_class"]] == list(ACTIONS) and report["classes_without_positives"] == []
    assert sum(r["positives"] for r in report["per_class"]) == round(report["label_cardinality"] * 7)
    assert Path(report["ap_plot"]).is_file()
    assert main(["evaluate", str(run), "--data", str(data / "test.csv"), "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert "mAP" in text and "F1@0.5 micro" in text and text.count("move_") >= 4


def test_predict_lists_every_label_above_the_threshold_with_scores(run, data, tmp_path, capsys):
    videos = [str(data / "videos" / name) for name in ("test_0000.mp4", "test_0001.avi")]
    args = ["predict", str(run), *videos, "--json", "--threshold", "0.3", "--plot", str(tmp_path / "p.png")]
    assert main(args) == 0  # one call (each starts a decoding worker): JSON, the threshold, the plot
    rows = json.loads(capsys.readouterr().out)
    task = get_task("multilabel")
    for row in rows:
        scores = dict(row["topk"])
        assert row["threshold"] == 0.3 and set(scores) <= set(ACTIONS) and len(row["topk"]) == 5
        assert row["labels"] == [[c, p] for c, p in row["topk"] if p >= 0.3] or len(row["labels"]) > 5
        assert row["label"] == row["topk"][0][0] and row["score"] == row["topk"][0][1]
        assert Path(row["plot"]).is_file()
        line = task.format_prediction(row)[0]  # what predict prints without --json
        assert line.startswith(f"{row['path']}: ") and "(at or above 30%; best " in line
        assert all(f"{label} {p:.1%}" in line for label, p in row["labels"])
    none = {"path": "v.mp4", "labels": [], "threshold": 1.0, "label": "grow", "score": 0.8}
    assert task.format_prediction(none) == ["v.mp4: no label (at or above 100%; best grow 80.0%)"]


def test_pos_weight_none_auto_or_a_number():
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # (N, K)
    assert pos_weights(None, targets) is None and pos_weights("none", targets) is None
    # negatives / positives: 3/1, no positives -> the cap, 1/3
    assert pos_weights("auto", targets).tolist() == pytest.approx([3.0, POS_WEIGHT_CAP, 1 / 3])
    assert pos_weights("auto", torch.tensor([[1.0], [0.0]] + [[0.0]] * 40)).tolist() == [POS_WEIGHT_CAP]  # capped
    assert pos_weights("2.5", targets).tolist() == [2.5, 2.5, 2.5]
    for bad in ("-1", "0", "often", "inf"):
        with pytest.raises(ValueError, match="pos_weight must be none, auto"):
            pos_weights(bad, targets)
    logits = torch.zeros(4, 3)
    plain, weighted = bce_loss(logits, targets, None), bce_loss(logits, targets, torch.tensor([3.0, 1.0, 1.0]))
    assert weighted > plain  # the one positive of class 0 counts three times
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        bce_loss(torch.zeros(4, 2), targets, None)


def test_multi_hot_targets_survive_the_feature_cache(data, tmp_path):
    """While the backbone is frozen the loop trains from cached features: the targets must be the
    same as when decoding."""
    from cnnlstm.data.collate import collate_clips
    from cnnlstm.data.datasets import VideoDataset
    from cnnlstm.data.features import CachedFeatureDataset, FeatureCache, extract_features
    from cnnlstm.data.sampling import SamplerConfig
    from cnnlstm.data.transforms import DataConfig, eval_transform
    from cnnlstm.models import create_encoder
    from cnnlstm.tasks.multilabel.labels import MultiLabelTargets, load_multilabel

    spec = load_multilabel(data / "train.csv")
    encoder = create_encoder("test_tiny")
    encoder.freeze()
    dataset = VideoDataset(spec.videos, sampler=SamplerConfig(num_frames=8),
                           targets=MultiLabelTargets(spec.labels, spec.classes),
                           transform=eval_transform(DataConfig.from_backbone(encoder.data_config, input_size=32,
                                                                             resize=None)))
    cache = FeatureCache(tmp_path / "cache", encoder=encoder, dataset=dataset)
    extract_features(cache, progress=False)
    cached = CachedFeatureDataset(cache)
    for i in range(len(dataset)):
        assert torch.equal(cached[i]["label"], dataset[i]["label"])
        assert cached[i]["label"].tolist() == [float(c in spec.labels[spec.videos.items[i].path]) for c in ACTIONS]
    batch = collate_clips([cached[i] for i in range(3)])
    assert batch.labels.shape == (3, len(ACTIONS)) and batch.labels.dtype == torch.float32


def test_windowed_predict_applies_the_threshold_to_every_window_and_the_video(run, data, capsys):
    video = str(data / "videos" / "test_0000.mp4")
    assert main(["predict", str(run), video, "--json", "--window", "0.5", "--threshold", "0.3", "--topk", "7"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["num_windows"] >= 2
    for part in (row, *row["windows"]):  # the video's answer and each window's
        assert part["threshold"] == 0.3 and part["labels"] == [[c, p] for c, p in part["topk"] if p >= 0.3]
