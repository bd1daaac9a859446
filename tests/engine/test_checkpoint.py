"""Checkpoints: a complete but damaged checkpoint falls back, loudly, to the previous valid one."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlstm.engine.checkpoint import Checkpoints


def _model(value: float) -> nn.Module:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def _save(checkpoints: Checkpoints, step: int) -> None:
    checkpoints.save(step, _model(float(step)), {"step": step, "values": torch.arange(float(step))})


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_value(path, value: torch.Tensor) -> None:
    """Flip one bit inside a stored tensor: torch.load and safetensors both read such a file without
    an error, with a silently wrong number."""
    data = bytearray(path.read_bytes())
    at = data.find(value.numpy().tobytes())
    assert at >= 0, "the stored tensor should be in the file"
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated weights", "a flipped bit in the state", "a flipped bit in the weights",
                                    "missing weights"])
def test_damaged_latest_falls_back_to_the_previous_one(tmp_path, damage):
    checkpoints = Checkpoints(tmp_path, keep=3)
    for step in (2, 4, 6):
        _save(checkpoints, step)
    latest = tmp_path / "checkpoints" / "step-00000006"
    if damage == "truncated weights":
        _truncate(latest / "model.safetensors")
    elif damage == "a flipped bit in the state":
        _flip_a_value(latest / "state.pt", torch.arange(6.0))
    elif damage == "a flipped bit in the weights":
        _flip_a_value(latest / "model.safetensors", torch.full((2, 3), 6.0))
    else:
        (latest / "model.safetensors").unlink()
    assert checkpoints.latest() == latest and (latest / "COMPLETE").is_file()  # looks complete
    lines: list[str] = []
    model = _model(0.0)
    path, state = checkpoints.load_newest(model, lines.append)
    assert path.name == "step-00000004" and state["step"] == 4
    assert torch.equal(model.weight, torch.full((2, 3), 4.0)), "the weights are the fallback's, not the damaged one's"
    assert len(lines) == 1 and lines[0].startswith("warning: checkpoint") and "step-00000006" in lines[0]
    assert "falling back to the previous checkpoint, step-00000004" in lines[0]
    if "flipped" in damage:
        assert "checksum" in lines[0]


def test_every_checkpoint_damaged_is_an_error_naming_each(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    for step in (2, 4):
        _save(checkpoints, step)
        _truncate(tmp_path / "checkpoints" / f"step-{step:08d}" / "model.safetensors")
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="no checkpoint in .* can be loaded") as info:
        checkpoints.load_newest(_model(0.0), lines.append)
    assert "step-00000002" in str(info.value) and "step-00000004" in str(info.value)
    assert "no older checkpoint is left" in lines[-1]


def test_a_marker_without_checksums_is_trusted(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    _save(checkpoints, 2)
    (tmp_path / "checkpoints" / "step-00000002" / "COMPLETE").write_text("2\n")  # written by an earlier version
    path, state = checkpoints.load_newest(_model(0.0))
    assert path.name == "step-00000002" and state["step"] == 2


def test_no_checkpoint_and_a_healthy_one(tmp_path):
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.load_newest(_model(0.0)) is None
    _save(checkpoints, 3)
    lines: list[str] = []
    path, state = checkpoints.load_newest(_model(0.0), lines.append)
    assert path.name == "step-00000003" and state["step"] == 3 and lines == []
