"""ONNX export: encoder, streaming step and clip graphs agree with PyTorch; the reference streamer; the CLI.

Exports are slow (seconds each), so each exported folder is built once per module and shared.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from video_factory import lossless, make_frames  # noqa: E402

from cnnlstm.cli import main  # noqa: E402
from cnnlstm.config import TrainConfig, dump_yaml  # noqa: E402
from cnnlstm.data.transforms import eval_transform  # noqa: E402
from cnnlstm.data.video.decode import VideoReader  # noqa: E402
from cnnlstm.deploy.export import export_model, export_onnx  # noqa: E402
from cnnlstm.deploy.onnx_stream import OnnxStreamer, preprocess_frame  # noqa: E402
from cnnlstm.engine.checkpoint import save_weights  # noqa: E402
from cnnlstm.models import create_model  # noqa: E402
from cnnlstm.run import (  # noqa: E402
    build_model,
    data_config,
    load_run,  # noqa: E402
)

CLASSES = ["left", "right", "up"]
FRAMES, SIZE = 6, 32
ATOL = 1e-4


def make_run(folder: Path, model: str, **config) -> Path:
    """A finished run directory with random weights (no training)."""
    cfg = TrainConfig(model=model, backbone="test_tiny", hidden_size=16, frames=FRAMES, size=SIZE, out=str(folder),
                      **config)
    torch.manual_seed(1)
    folder.mkdir(parents=True)
    save_weights(build_model(cfg, len(CLASSES), warn=False), folder / "model.safetensors")
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(CLASSES))
    return folder


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    """cnn_lstm run exported with the CLI into RUN/onnx."""
    run = make_run(tmp_path_factory.mktemp("cli") / "run", "cnn_lstm")
    code, out, err = run_cli("export", str(run), "--format", "onnx")
    return run, code, out, err


# model -> how it is exported: from a run directory, or (not expressible in a config) from the model
STREAMABLE = ["cnn_lstm", "deep_cnn_lstm", "seq2seq_cnn_lstm", "cnn_lstm_attention_uni", "mean_pool"]


@pytest.fixture(scope="module", params=STREAMABLE)
def exported(request, tmp_path_factory, cli_export):
    """(PyTorch model in eval mode, export folder, export result or None) for one streamable model."""
    name = request.param
    if name == "cnn_lstm":
        run = cli_export[0]
        return load_run(run, device="cpu").model, run / "onnx", None
    if name == "cnn_lstm_attention_uni":
        torch.manual_seed(2)
        model = create_model("cnn_lstm_attention", num_classes=len(CLASSES), backbone="test_tiny", hidden_size=16,
                             bidirectional=False).eval()
        cfg = TrainConfig(model="cnn_lstm_attention", backbone="test_tiny", frames=FRAMES, size=SIZE)
        out = tmp_path_factory.mktemp(name)
        return model, out, export_model(model, data_config(cfg, model), CLASSES, out, cfg=cfg)
    # the per-frame labeller as --task segment trains it: its LSTM also reads feature changes, a third state
    extra = {"feature_diff": True} if name == "seq2seq_cnn_lstm" else {}
    run = make_run(tmp_path_factory.mktemp(name) / "run", name, **extra)
    result = export_onnx(run, run / "exported")
    return load_run(run, device="cpu").model, run / "exported", result


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_encoder_matches_pytorch(exported):
    model, out, _ = exported
    frames = torch.randn(5, 3, SIZE, SIZE)  # N = 5, not the export example's 2
    got = session(out / "encoder.onnx").run(["features"], {"frames": frames.numpy()})[0]
    with torch.no_grad():
        want = model.encoder(frames[None])[0][0]  # (N, D)
    assert got.shape == (5, model.num_features)
    np.testing.assert_allclose(got, want.numpy(), atol=ATOL)


def test_step_streams_like_pytorch(exported):
    """8 frames, 2 streams at once: every step equals model.step, and the last equals the whole clip."""
    model, out, _ = exported
    meta = json.loads((out / "preprocess.json").read_text())
    step = session(out / "step.onnx")
    names = [s["name"] for s in meta["state"]]
    assert [i.name for i in step.get_inputs()] == ["feature", *names]
    assert [o.name for o in step.get_outputs()] == ["logits", *(s["output"] for s in meta["state"])]
    clips = torch.randn(2, 8, 3, SIZE, SIZE)
    encoder = session(out / "encoder.onnx")
    state_onnx = {s["name"]: np.full([2 if d == -1 else d for d in s["shape"]], s["init"],
                                     np.float32) for s in meta["state"]}
    with torch.no_grad():
        state = model.init_state(2)
        full = model(clips).logits  # (B, K) or (B, T, K)
        for t in range(clips.shape[1]):
            feature = encoder.run(["features"], {"frames": clips[:, t].numpy()})[0]  # (B, D)
            outs = step.run(None, {"feature": feature, **state_onnx})
            state_onnx = dict(zip(names, outs[1:], strict=True))
            ref, state = model.step(clips[:, t], state)
            np.testing.assert_allclose(outs[0], ref.logits.numpy(), atol=ATOL, err_msg=f"step {t}")
            flat = [x for part in state for x in part]
            for name, got, want in zip(names, outs[1:], flat, strict=True):
                np.testing.assert_allclose(got, want.numpy(), atol=ATOL, err_msg=f"state {name} at step {t}")
            if meta["per_frame"]:
                np.testing.assert_allclose(outs[0], full[:, t].numpy(), atol=ATOL)
    if not meta["per_frame"]:
        np.testing.assert_allclose(outs[0], full.numpy(), atol=ATOL)


def test_clip_has_dynamic_batch_and_time(exported):
    model, out, result = exported
    clip = session(out / "clip.onnx")
    for T in (4, 7):
        clips, lengths = torch.randn(2, T, 3, SIZE, SIZE), torch.tensor([T, T - 2])
        got = clip.run(["logits"], {"clips": clips.numpy(), "lengths": lengths.numpy()})[0]
        with torch.no_grad():
            want = model(clips, lengths).logits
        if want.dim() == 3:  # per-frame: compare the real frames
            for b, n in enumerate(lengths.tolist()):
                np.testing.assert_allclose(got[b, :n], want[b, :n].numpy(), atol=ATOL)
        else:
            np.testing.assert_allclose(got, want.numpy(), atol=ATOL)
    if result is not None:
        assert result["warnings"] == []


def test_metadata_describes_the_graphs(exported):
    model, out, _ = exported
    meta = json.loads((out / "preprocess.json").read_text())
    assert meta["labels"] == CLASSES and meta["num_classes"] == 3
    assert meta["streamable"] and meta["per_frame"] == model.per_frame and meta["clip_dynamic_T"] is True
    assert meta["files"] == {"encoder": "encoder.onnx", "step": "step.onnx", "clip": "clip.onnx"}
    assert meta["input"]["crop"] == SIZE and meta["input"]["resize_shorter"] == round(SIZE / 0.875)
    assert meta["input"]["channel_order"] == "RGB" and meta["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["frames_per_clip"] == FRAMES and meta["sampler"] == "uniform" and meta["fps"] is None
    assert isinstance(meta["opset"], int) and meta["torch_version"] == torch.__version__
    flat = [x for part in model.init_state(3) for x in part]
    assert len(meta["state"]) == len(flat)
    for spec, tensor in zip(meta["state"], flat, strict=True):
        assert [3 if d == -1 else d for d in spec["shape"]] == list(tensor.shape)
        assert torch.all(tensor == spec["init"])


def test_streamer_preprocesses_like_eval_transform(tmp_path, cli_export):
    """Real decoded frames of odd sizes: numpy preprocessing within one uint8 step of eval_transform."""
    run = cli_export[0]
    meta = json.loads((run / "onnx" / "preprocess.json").read_text())
    loaded = load_run(run, device="cpu")
    transform = eval_transform(loaded.data_cfg)
    for h, w in ((48, 64), (61, 45), (20, 26)):  # shrink landscape, shrink portrait, enlarge
        with VideoReader(lossless(tmp_path / f"v{h}x{w}.mkv", make_frames(3, h, w))) as reader:
            frames = reader.get_frames(torch.arange(3))  # (T, C, H, W) uint8
        want = transform(frames)  # (T, C, S, S)
        for t in range(3):
            got = preprocess_frame(frames[t].permute(1, 2, 0).numpy(), meta["input"])  # from (H, W, C)
            assert got.shape == (3, SIZE, SIZE)
            diff = np.abs(got - want[t].numpy()) * np.asarray(meta["input"]["std"])[:, None, None] * 255
            assert diff.max() <= 1.01, f"{h}x{w} frame {t}: off by {diff.max():.2f} uint8 levels"
            assert diff.mean() < 0.2
            np.testing.assert_array_equal(preprocess_frame(frames[t].numpy(), meta["input"]), got)  # (C, H, W) too


def test_streamer_follows_the_pytorch_model(tmp_path, cli_export):
    run = cli_export[0]
    loaded = load_run(run, device="cpu")
    frames = torch.from_numpy(make_frames(8, 40, 52)).permute(0, 3, 1, 2).contiguous()  # (T, C, H, W) uint8
    streamer = OnnxStreamer(run / "onnx")
    with torch.no_grad():
        want = loaded.model(eval_transform(loaded.data_cfg)(frames)[None]).logits[0]  # (K,)
    for _ in range(2):  # reset() starts over: the second pass gives the same answer
        streamer.reset()
        for frame in frames:
            probs = streamer.step(frame.permute(1, 2, 0).numpy())
        assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(streamer.logits, want.numpy(), atol=2e-2)
        np.testing.assert_allclose(probs, want.softmax(-1).numpy(), atol=1e-2)


def test_non_streamable_run_exports_encoder_and_clip_only(tmp_path):
    run = make_run(tmp_path / "run", "bi_cnn_lstm")
    result = export_onnx(run)
    out = run / "onnx"
    assert sorted(result["files"]) == ["clip", "encoder", "preprocess"] and not (out / "step.onnx").exists()
    assert not result["streamable"]
    assert any("step.onnx not written" in w and "cannot stream" in w for w in result["warnings"])
    meta = json.loads((out / "preprocess.json").read_text())
    assert meta["streamable"] is False and meta["files"]["step"] is None and meta["state"] == []
    model = load_run(run, device="cpu").model
    T = FRAMES if meta["clip_dynamic_T"] is False else 5
    clips, lengths = torch.randn(2, T, 3, SIZE, SIZE), torch.tensor([T, T - 2])
    got = session(out / "clip.onnx").run(["logits"], {"clips": clips.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(clips, lengths).logits.numpy(), atol=ATOL)
    with pytest.raises(ValueError, match="cannot stream"):
        OnnxStreamer(out)


def test_cli_writes_files_and_a_stream_hint(cli_export):
    run, code, out, err = cli_export
    assert code == 0, err
    for name in ("encoder.onnx", "step.onnx", "clip.onnx", "preprocess.json"):
        assert f"wrote {run / 'onnx' / name}" in out
        assert (run / "onnx" / name).is_file()
    assert "stream with:" in out and "OnnxStreamer" in out


def test_cli_rejects_bad_format_and_missing_run(tmp_path, cli_export):
    code, out, err = run_cli("export", str(cli_export[0]), "--format", "tflite")
    assert code == 2 and "unsupported --format 'tflite'" in err and "onnx" in err
    code, out, err = run_cli("export", str(tmp_path / "nope"), "--format", "onnx")
    assert code == 2 and "does not exist" in err


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch, cli_export):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'cnnlstm\[export\]'"):
        export_onnx(cli_export[0], tmp_path / "out")
    code, out, err = run_cli("export", str(cli_export[0]), "--out", str(tmp_path / "out"))
    assert code == 2 and "cnnlstm[export]" in err
