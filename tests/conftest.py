"""Shared fixtures: RNG isolation between tests."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolate_rng():
    """Seed every RNG for the test and restore the previous state afterwards."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)


@pytest.fixture(autouse=True)
def _no_weight_downloads(monkeypatch):
    """Tests never download pretrained weights: offline mode, and no mirror from the shell.
    tests/test_weights_download.py turns downloads back on against its own local server."""
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")
    monkeypatch.delenv("CNNLSTM_WEIGHTS_URL", raising=False)
