"""docs/cli.md and docs/config.md are generated from the parser and TrainConfig; the committed pages are current."""
from __future__ import annotations

import dataclasses

from cnnlstm.apps import docs
from cnnlstm.config import TrainConfig


def test_committed_reference_pages_are_current():
    assert docs.stale() == [], "docs are out of date: run `python -m cnnlstm.apps.docs` and commit docs/"


def test_reference_pages_name_every_command_and_key(tmp_path, capsys):
    assert docs.main(["--docs", str(tmp_path)]) == 0
    cli, config = (tmp_path / "cli.md").read_text(), (tmp_path / "config.md").read_text()
    for command in ("train", "evaluate", "predict", "scan", "stream", "export", "serve", "compare", "synth", "demo"):
        assert f"## cnnlstm {command}\n" in cli and f"usage: cnnlstm {command}" in cli, command
    for f in dataclasses.fields(TrainConfig):
        assert f"| `{f.name}` | `--{f.name.replace('_', '-')}` |" in config, f.name
    assert "| `lr` | `--lr` | float or None | `None` | peak learning rate" in config
    (tmp_path / "config.md").write_text(config.replace("peak learning rate", "peak rate"))
    assert docs.main(["--check", "--docs", str(tmp_path)]) == 1
    assert "config.md is out of date" in capsys.readouterr().err
