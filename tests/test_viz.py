"""Plots (valid PNGs, shapes, no figure leaks) and the self-contained HTML report."""
from __future__ import annotations

import gc
import struct
import sys
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlstm.apps.report import Section, write_report
from cnnlstm.tasks.classify.viz import plot_confusion
from cnnlstm.tasks.segment.viz import plot_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["walk", "run", "jump", "sit"]
ROWS = [
    {"epoch": 1, "step": 5, "phase": "frozen", "train_loss": 1.4},
    {"epoch": 1, "step": 10, "phase": "frozen", "train_loss": 1.2, "val_loss": 1.3, "val_top1": 0.40, "lr": 1e-3},
    {"epoch": 2, "step": 20, "phase": "frozen", "train_loss": 0.9, "val_loss": 1.0, "val_top1": 0.55, "lr": 1e-3},
    {"epoch": 3, "step": 30, "phase": "finetune", "train_loss": 0.7, "val_top1": 0.62, "train_top1": 0.7, "lr": 1e-4},
    {"epoch": 4, "step": 40, "phase": "finetune", "train_loss": 0.5, "val_loss": 0.8, "val_top1": 0.60},
]


def _frames(t: int, c: int = 3, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (t, c, h, w), dtype=torch.uint8)  # (T, C, H, W)


def _png_size(path: str) -> tuple[int, int]:
    """Check the magic bytes and that matplotlib decodes the file; return (width, height)."""
    image = pytest.importorskip("matplotlib.image")
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    img = image.imread(path)
    assert img.ndim == 3 and img.size > 0
    return img.shape[1], img.shape[0]


# ---------------------------------------------------------------- plots (need matplotlib)

@pytest.fixture
def viz():
    pytest.importorskip("matplotlib")
    from cnnlstm import viz

    return viz


def test_curves_with_phases_missing_keys_and_lr(viz, tmp_path):
    out = viz.plot_curves(ROWS, tmp_path / "sub" / "curves.png")
    assert out == str(tmp_path / "sub" / "curves.png")
    w, h = _png_size(out)
    assert 2.0 < w / h < 3.0  # two side-by-side panels


@pytest.mark.parametrize("rows", [
    [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.0}],  # no epoch: x is the step
    [{"epoch": 1, "note": "no numbers here"}],  # nothing to draw: "no data" panels
    [{"epoch": 1, "val_top1": 0.5}],  # a single point
    [{"epoch": None, "train_loss": 2.0}, {"train_loss": 1.5}, {"epoch": 1, "train_loss": 1.0}],  # epoch gaps
], ids=["steps-only", "no-series", "single-point", "epoch-gaps"])
def test_curves_degenerate_rows(viz, tmp_path, rows):
    _png_size(viz.plot_curves(rows, tmp_path / "c.png"))


def test_curves_reject_no_rows(viz, tmp_path):
    with pytest.raises(ValueError, match="at least one row"):
        viz.plot_curves([], tmp_path / "c.png")


@pytest.mark.parametrize("k, normalize", [(3, True), (3, False), (30, True)], ids=["K3", "K3-counts", "K30"])
def test_confusion(viz, tmp_path, k, normalize):
    cm = torch.randint(0, 20, (k, k))
    cm[0] = 0  # a class without support must not divide by zero
    w, h = _png_size(plot_confusion(cm, [f"class_{i}" for i in range(k)], tmp_path / "cm.png",
                                        normalize=normalize, title="<val>"))
    assert 0.8 < w / h < 1.6


def test_confusion_rejects_wrong_names(viz, tmp_path):
    with pytest.raises(ValueError, match=r"K=len\(classes\)=2"):
        plot_confusion(torch.eye(3), ["a", "b"], tmp_path / "cm.png")


@pytest.mark.parametrize("t, panels", [
    (1, ()), (8, ()), (40, ("weights",)), (40, ("scores",)), (5, ("weights", "scores")),
], ids=["T1", "T8", "T40-weights", "T40-scores", "T5-both"])  # max_frames=6: T=8 and T=40 are subsampled
def test_frame_strip(viz, tmp_path, t, panels):
    weights = torch.softmax(torch.randn(t), 0) if "weights" in panels else None  # (T,)
    scores = torch.softmax(torch.randn(t, 4), 1) if "scores" in panels else None  # (T, K)
    out = viz.plot_frame_strip(_frames(t), tmp_path / "strip.png", weights=weights, scores=scores,
                               classes=CLASSES, title="clip 7", max_frames=6)
    w, h = _png_size(out)
    if not panels and t > 1:
        assert w / h > 2.5  # a horizontal strip


def test_frame_strip_grayscale_numpy_and_no_classes(viz, tmp_path):
    frames = np.random.randint(0, 256, (6, 1, 16, 16), dtype=np.uint8)
    _png_size(viz.plot_frame_strip(frames, tmp_path / "g.png", scores=np.full((6, 9), 1 / 9)))


@pytest.mark.parametrize("kwargs, err, match", [
    ({"frames": _frames(4).float()}, TypeError, "uint8"),
    ({"frames": torch.zeros(4, 24, 32, dtype=torch.uint8)}, ValueError, r"\(T, C, H, W\)"),
    ({"weights": torch.ones(3)}, ValueError, "T=4"),
    ({"scores": torch.ones(4, 2), "classes": CLASSES}, ValueError, "K=2"),
    ({"max_frames": 0}, ValueError, "max_frames"),
], ids=["float", "3d", "weights-len", "class-names", "max-frames"])
def test_frame_strip_errors(viz, tmp_path, kwargs, err, match):
    kwargs = {"frames": _frames(4), **kwargs}
    with pytest.raises(err, match=match):
        viz.plot_frame_strip(path=tmp_path / "x.png", **kwargs)
    assert not (tmp_path / "x.png").exists()


def test_bars(viz, tmp_path):
    vals = {"cnn_lstm_r18": 0.71, "r3d_18": 0.64, "mean_pool": 0.52}
    _png_size(viz.plot_bars(vals, tmp_path / "b.png", title="top-1", ylabel="val top-1"))
    _png_size(viz.plot_bars({"a": 3.5, "b": -1.0}, tmp_path / "b2.png", title="t", ylabel="y", fmt="{:.2f}"))
    with pytest.raises(ValueError, match="empty"):
        viz.plot_bars({}, tmp_path / "b3.png", title="t", ylabel="y")


def test_timeline(viz, tmp_path):
    rows = {"ground truth": [0] * 10 + [1] * 20 + [-1] * 5 + [3] * 15, "prediction": torch.tensor([0] * 12 + [2] * 30)}
    w, h = _png_size(plot_timeline(rows, CLASSES, tmp_path / "tl.png", title="video 3"))
    assert w > h
    with pytest.raises(ValueError, match="label 4"):
        plot_timeline({"p": [4]}, CLASSES, tmp_path / "x.png")


def test_no_figure_leak_and_backend_untouched(viz, tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt  # a user's session may already have pyplot loaded

    backend, made = matplotlib.get_backend(), []
    make = viz.figure
    monkeypatch.setattr(viz, "figure", lambda *a: made.append(weakref.ref(f := make(*a))) or f)
    for _ in range(3):
        plot_confusion(torch.eye(3), CLASSES[:3], tmp_path / "m.png")
        viz.plot_frame_strip(_frames(3), tmp_path / "s.png", weights=torch.ones(3))
        plot_timeline({"p": [0, 1, 1]}, CLASSES, tmp_path / "t.png")
    gc.collect()
    assert len(made) == 9 and all(ref() is None for ref in made), "a figure outlived its plot call"
    assert matplotlib.get_backend() == backend and plt.get_fignums() == []


def test_missing_matplotlib_says_how_to_install(viz, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'cnnlstm\[plot\]'"):
        viz.plot_bars({"a": 0.5}, tmp_path / "b.png", title="t", ylabel="y")


# ---------------------------------------------------------------- report (no matplotlib needed)

def _tiny_png(path: Path) -> str:
    """A valid 1x1 gray PNG written by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    path.write_bytes(PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
                     + chunk(b"IEND", b""))
    return str(path)


def test_report_escapes_text_and_embeds_images(tmp_path):
    imgs = [_tiny_png(tmp_path / "a.png"), _tiny_png(tmp_path / "b.png")]
    out_dir = tmp_path / "out"
    sections = [
        Section("Summary", text="first paragraph <script>alert(1)</script>\n\nsecond & last"),
        Section("Per class", table=[{"class": "run", "support": 3, "recall": 0.8333, "loss": 1.25},
                                    {"class": "<b>", "support": 0, "recall": 0.0, "extra": None}]),
        Section("Plots", images=imgs, caption="curves & confusion"),
    ]
    path = write_report(out_dir / "report.html", title="Run <42>", subtitle="cnn_lstm_r18 on ucf101", sections=sections)
    html = Path(path).read_text(encoding="utf-8")
    assert "<title>Run &lt;42&gt;</title>" in html and "cnn_lstm_r18 on ucf101" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<p>") >= 2 and "second &amp; last" in html
    assert "<th>class</th>" in html and "<th>extra</th>" in html and "83.3%" in html and "1.25" in html
    assert "&lt;b&gt;" in html and "&mdash;" in html
    assert html.count("data:image/png;base64,") == 2 and "curves &amp; confusion" in html
    assert "src=\"http" not in html and "<link" not in html  # self-contained
    assert sorted(p.name for p in out_dir.iterdir()) == ["report.html"]  # no temp files left


def test_report_overwrites_atomically_and_cleans_up_on_error(tmp_path):
    path = tmp_path / "r.html"
    write_report(path, title="one", sections=[Section("s")])
    write_report(path, title="two", sections=[Section("s", text="x")])
    assert "<h1>two</h1>" in path.read_text(encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_report(path, title="three", sections=[Section("plots", images=[str(tmp_path / "missing.png")])])
    with pytest.raises(TypeError, match="Section"):
        write_report(path, title="three", sections=[{"title": "not a section"}])
    assert "<h1>two</h1>" in path.read_text(encoding="utf-8")  # the old report survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_report_with_real_plots(viz, tmp_path):
    from cnnlstm.tasks.classify.metrics import classification_report

    logits, targets = torch.randn(20, 4), torch.randint(0, 4, (20,))
    rep = classification_report(logits, targets, CLASSES)
    cm_png = plot_confusion(rep["confusion_matrix"], CLASSES, tmp_path / "cm.png")
    path = write_report(tmp_path / "report.html", title="eval", sections=[
        Section("Accuracy", table=[{k: rep[k] for k in ("top1", "top5", "mean_class_accuracy", "num_videos")}]),
        Section("Per class", table=rep["per_class"], images=[cm_png]),
    ])
    assert Path(path).read_text(encoding="utf-8").count("data:image/png;base64,") == 1
