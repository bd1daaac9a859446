"""The README and docs/ say what the code does: their Python examples run as written, and every
`cnnlstm ...` command in their shell blocks parses with the real parser (and, for `train` and
`compare`, gives a valid config). Nothing is executed but the Python examples."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cnnlstm.cli import build_parser
from cnnlstm.config import config_overrides, resolve_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = {"cli.md", "config.md"}  # help text, checked against the parser by tests/apps/test_docs.py


def blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


def commands(page: Path) -> list[list[str]]:
    """The argument lists of the `cnnlstm ...` lines (continuations joined, comments dropped) of the
    ```bash blocks, up to a pipe or redirection; `torchrun ... -m cnnlstm.cli ...` counts too."""
    out = []
    for block in blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
            words = words[:next((i for i, w in enumerate(words) if w and set(w) <= set("|&;<>")), len(words))]
            if words[:1] == ["cnnlstm"]:
                out.append(words[1:])
            elif "cnnlstm.cli" in words:
                out.append(words[words.index("cnnlstm.cli") + 1:])
    return out


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write under runs/
    found = [(page, block) for page in PAGES if page.name not in GENERATED for block in blocks(page, "python")]
    assert len(found) >= 3, "the README and docs should show Python examples"
    namespace: dict = {}
    for page, block in found:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own README and docs


def test_every_command_in_the_readme_and_docs_parses():
    parser = build_parser()
    seen = {}
    for page in PAGES:
        if page.name in GENERATED:
            continue
        for argv in commands(page):
            where = f"{page.relative_to(ROOT)}: cnnlstm {shlex.join(argv)}"
            try:
                args = parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{where} does not parse (the error is above)")
            if args.command in ("train", "compare"):
                try:
                    resolve_config(None, config_overrides(args))
                except ValueError as exc:
                    pytest.fail(f"{where}: {exc}")
            seen.setdefault(args.command, where)
    missing = {"train", "evaluate", "predict", "scan", "stream", "export", "serve", "synth", "compare"} - set(seen)
    assert not missing, f"commands the README and docs never show: {sorted(missing)}"


def test_the_parser_check_catches_a_wrong_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\ncnnlstm predict runs/r18 a.mp4 \\\n  --smooth 5 > out.txt  # a wrong claim\n```\n")
    [argv] = commands(page)
    assert argv == ["predict", "runs/r18", "a.mp4", "--smooth", "5"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_the_readme_has_the_sections_a_newcomer_needs():
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    order = ["Install", "The demo", "Train on your own videos", "The ten options that matter first",
             "Hardware and time", "Training defaults"]
    assert [h for h in headings if h in order] == order, headings
    assert "path,label\n" in text, "the README should show a path,label CSV"
    for extra in ("[plot]", "`serve`", "`export`"):
        assert extra in text, extra
    for page in PAGES:
        for link in re.findall(r"\]\((docs/[^)#]+|[a-z_]+\.md|\.\./benchmarks/[^)#]+)", page.read_text()):
            assert (page.parent / link).exists(), f"{page.name} links to {link}, which does not exist"
