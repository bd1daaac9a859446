"""``evaluate --views N``: N different clips per video, video accuracy (softmax averaged over the
views) and clip accuracy (every view a clip), as torchvision's reference reports both."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from video_factory import make_frames

from cnnlstm.cli import main
from cnnlstm.data.video.encode import write_video
from cnnlstm.tasks.classify.task import collect_views, views_report

LABELS = ["a", "b", "c"]


def test_video_accuracy_averages_probabilities_and_clip_accuracy_counts_every_view():
    # video 0 (class a): view 1 is sure of a; view 2 has large logits for b and c. The probabilities
    # average to a (0.5 / 0.37 / 0.13): right. Averaged logits (5, 15, 14.5) would say b.
    # video 1 (class c): both views say c. Clips: 3 of 4 right; videos: 2 of 2.
    per_view = [{0: (torch.tensor([10.0, 0.0, 0.0]), 0, None), 1: (torch.tensor([0.0, 0.0, 1.0]), 2, None)},
                {0: (torch.tensor([0.0, 30.0, 29.0]), 0, None), 1: (torch.tensor([0.0, 0.0, 1.0]), 2, None)}]
    report = views_report(per_view, LABELS, skipped=[])
    assert report["views"] == 2 and report["num_videos"] == 2 and report["num_clips"] == 4
    assert report["video_top1"] == report["top1"] == 1.0
    assert report["clip_top1"] == 0.75
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    # top-3 of 3 classes holds every target
    assert report["clip_top5"] == report["video_top5"] == 1.0 and report["top5_k"] == 3


def test_a_video_missing_from_one_view_is_left_out():
    per_view = [{0: (torch.tensor([1.0, 0.0, 0.0]), 0, None), 1: (torch.tensor([0.0, 1.0, 0.0]), 0, None)},
                {0: (torch.tensor([1.0, 0.0, 0.0]), 0, None)}]
    report = views_report(per_view, LABELS, skipped=[{"path": "x", "error": "corrupt", "message": "x"}])
    assert report["num_videos"] == 1 and report["num_clips"] == 2 and report["clip_top1"] == 1.0
    empty = views_report([{}, {}], LABELS, skipped=[])
    assert empty["num_videos"] == 0 and empty["clip_top1"] == 0.0


def _make_run(root: Path, sampler: str) -> Path:
    """A finished run directory of an untrained tiny model that samples ``sampler`` clips of 4 frames."""
    from cnnlstm.config import TrainConfig, dump_yaml
    from cnnlstm.engine.checkpoint import save_weights
    from cnnlstm.run import build_model

    run = root / f"run-{sampler}"
    run.mkdir(parents=True)
    cfg = TrainConfig(model="cnn_lstm", backbone="test_tiny", size=32, frames=4, hidden_size=8, sampler=sampler,
                      out=str(run))
    (run / "config.yaml").write_text(dump_yaml(cfg))
    (run / "labels.json").write_text(json.dumps(LABELS))
    save_weights(build_model(cfg, len(LABELS)), run / "model.safetensors")
    return run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views")
    rows = ["path,label"]
    for i, label in enumerate(LABELS):
        write_video(root / f"v{i}.mp4", make_frames(24 + 6 * i, 32, 32, seed=i), fps=10)
        rows.append(f"v{i}.mp4,{label}")
    (root / "test.csv").write_text("\n".join(rows) + "\n")
    return root / "test.csv"


@pytest.mark.parametrize("sampler", ["uniform", "random_clip"])
def test_views_decode_different_clips(dataset, tmp_path, sampler):
    from cnnlstm.run import load_run

    loaded = load_run(_make_run(tmp_path, sampler), device="cpu")
    per_view, skipped = collect_views(loaded, dataset, root=None, views=3)
    assert not skipped and [sorted(v) for v in per_view] == [[0, 1, 2]] * 3
    for index in range(3):
        clips = [tuple(view[index][2].tolist()) for view in per_view]
        assert len(set(clips)) == 3, f"video {index}: the 3 views decoded {clips}"
        if sampler == "random_clip":  # contiguous clips spread along the video
            assert all(b - a == 1 for clip in clips for a, b in zip(clip, clip[1:], strict=False))
            assert clips[0][0] < clips[1][0] < clips[2][0]
        logits = torch.stack([view[index][0] for view in per_view])  # (V, K)
        assert not torch.allclose(logits[0], logits[1]), "different frames should give different outputs"


def test_evaluate_json_reports_clip_and_video_accuracy(dataset, tmp_path, capsys):
    run = _make_run(tmp_path, "random_clip")
    assert main(["evaluate", str(run), "--data", str(dataset), "--views", "3", "--json", "--no-plot",
                 "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["views"] == 3 and report["num_videos"] == 3 and report["num_clips"] == 9
    assert report["top1"] == report["video_top1"] and report["top5"] == report["video_top5"]
    assert any(report["clip_top1"] == pytest.approx(k / 9) for k in range(10)), report["clip_top1"]
    assert main(["evaluate", str(run), "--data", str(dataset), "--views", "3", "--no-plot", "--device", "cpu"]) == 0
    assert "clip accuracy (9 clips)" in capsys.readouterr().out
