"""Every benchmark script imports: a module the package moved or renamed breaks them at their first
line, which no other test runs (``benchmarks/learning_data.py`` was broken that way for sessions)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

DIR = Path(__file__).resolve().parents[1] / "benchmarks"
BENCHMARKS = sorted(DIR.glob("*.py"))


def test_there_are_benchmarks():
    assert len(BENCHMARKS) >= 5


def _load(path: Path, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"_benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up here
    spec.loader.exec_module(module)  # module level only: each script runs under `if __name__ == "__main__"`
    return module


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_script_imports(path, monkeypatch):
    module = _load(path, monkeypatch)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"


def test_pair_scores_split_the_misses_into_wrong_pair_and_wrong_direction(monkeypatch):
    pair_scores = _load(DIR / "learning.py", monkeypatch).pair_scores
    classes = ["arc_fwd", "arc_rev", "line_fwd", "line_rev"]
    cm = [[8, 1, 1, 0],  # rows: true class, columns: predicted
          [0, 9, 0, 1],
          [2, 0, 6, 2],
          [0, 0, 0, 10]]
    scores = pair_scores({"classes": classes, "confusion_matrix": cm})
    # pair: the path right, either direction; direction: the class right among those
    assert scores["pair_top1"] == pytest.approx((8 + 1 + 9 + 6 + 2 + 10) / 40, abs=1e-4)
    assert scores["direction_given_pair"] == pytest.approx((8 + 9 + 6 + 10) / 36, abs=1e-4)
    assert pair_scores({"classes": ["walk", "run"], "confusion_matrix": [[1, 0], [0, 1]]}) == {}  # not pairs
