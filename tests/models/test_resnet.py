"""cnnlstm's ResNet is torchvision's, module for module, draw for draw, without importing torchvision."""
from __future__ import annotations

import sys

import pytest
import torch
import torchvision

from cnnlstm import create_model
from cnnlstm.models import resnet


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_a_seeded_resnet_is_torchvisions_bitwise_and_computes_the_same(arch):
    torch.manual_seed(3)
    ours = getattr(resnet, arch)().eval()
    torch.manual_seed(3)
    theirs = getattr(torchvision.models, arch)(weights=None).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # same names, same order: torchvision's weights and saved runs load
    assert all(torch.equal(a[k], b[k]) for k in a)  # same initialisation, RNG draw for RNG draw
    with torch.no_grad():
        for m in theirs.modules():  # non-trivial BatchNorm statistics, the same in both
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(2, 3, 64, 64)  # (N, C, H, W)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_a_resnet_model_is_built_without_importing_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(ImportError):
        import torchvision.models  # noqa: F401
    model = create_model("cnn_lstm", num_classes=3, backbone="resnet18")
    clips = torch.randn(1, 2, 3, 32, 32)  # (B, T, C, H, W)
    assert model(clips).logits.shape == (1, 3)
