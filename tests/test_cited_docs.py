"""Every document the code, the tests and the README cite exists in the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path to a Markdown file under docs/, as code and prose cite it (in quotes, backticks or plain text)
CITATION = re.compile(r"(?<![\w/.-])docs/[\w./-]+?\.md\b")


def cited_documents(files, root: Path = ROOT) -> dict[str, list[str]]:
    """``{cited path: ["file:line", ...]}`` for every docs/*.md path cited in ``files`` (under ``root``)."""
    cited: dict[str, list[str]] = {}
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in CITATION.findall(line):
                cited.setdefault(match, []).append(f"{path.relative_to(root)}:{number}")
    return cited


def sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for folder in ("cnnlstm", "tests", "benchmarks"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".yaml", ".html", ".js"))
    return [f for f in files if f != Path(__file__).resolve()]  # this file's own examples are made up


def test_every_cited_document_exists():
    cited = cited_documents(sources())
    assert "docs/RELIABILITY.md" in cited, "the scan should see the serve app's citation; is the pattern broken?"
    missing = {doc: where for doc, where in cited.items() if not (ROOT / doc).is_file()}
    assert not missing, "cited but not in the repository: " + "; ".join(
        f"{doc} (cited at {', '.join(where[:3])})" for doc, where in missing.items())


def test_the_scan_finds_citations_in_code_and_prose(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""See docs/a.md and `docs/sub/b-c.md`."""\n'
                      'x = "docs/d.md"  # not mydocs/e.md, nor docs/f.mdx\n')
    assert sorted(cited_documents([sample], tmp_path)) == ["docs/a.md", "docs/d.md", "docs/sub/b-c.md"]
