"""The web page of ``cnnlstm serve`` in a real headless Chromium (the system one, driven by Playwright).

Loads the page from a real server, sets the file input to a test video, and waits for the label,
the timeline cells and the top-k bars (for a multi-label run: every label above the threshold,
bars marked at the threshold). Skips (loudly) where Chromium or Playwright is missing;
CI (.ci/run) installs Debian's chromium so it runs there.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest
from test_serve import LABELS, ServerThread, make_run
from video_factory import make_frames

from cnnlstm.data.video.encode import write_video

CHROMIUM = os.environ.get("CNNLSTM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("BROWSER TEST SKIPPED: the Python package 'playwright' is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"BROWSER TEST SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                    "CNNLSTM_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def wait_until(page, predicate: str, timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` (a JS function) in the page until it returns true. ``page.evaluate`` runs it
    over the DevTools protocol, which the page's Content-Security-Policy allows; ``wait_for_function``
    with a string polls by ``eval`` inside the page, which that policy refuses (a flaky failure
    whenever the first check was false)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never made this true in {timeout_s:.0f} s: {predicate}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from cnnlstm.deploy.serve.app import create_app

    root = tmp_path_factory.mktemp("browser")
    app = create_app(make_run(root, model="cnn_lstm_attention"), max_upload_mb=5, max_concurrent=1, device="cpu")
    with ServerThread(app) as srv:
        yield srv


def test_page_shows_a_prediction(browser, server, tmp_path):
    video = write_video(tmp_path / "clip.mp4", make_frames(24, 48, 64))
    page = browser.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(server.url)
    page.locator("#model", has_text="cnn_lstm_attention").wait_for()

    page.set_input_files("#file", video)
    page.wait_for_selector("#topk .bar", timeout=60_000)
    label = page.text_content("#label")
    assert any(label.startswith(name) for name in LABELS), label
    assert page.locator("#timeline .cell").count() == 6  # one per sampled frame
    assert page.locator("#topk .bar").count() == len(LABELS)
    opacities = page.eval_on_selector_all("#timeline .cell", "cells => cells.map(c => Number(c.style.opacity))")
    assert all(0 < o <= 1 for o in opacities) and max(opacities) == 1  # attention as intensity
    assert page.is_hidden("#error")
    assert "clip.mp4" in page.text_content("#status")
    wait_until(page, "() => document.getElementById('video').readyState >= 1")  # the local file plays in <video>
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a video"})
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "unsupported_format" in page.text_content("#error")
    assert not [e for e in console_errors if "415" not in e], console_errors  # only the refused upload logs
    page.close()


@pytest.fixture(scope="module")
def multilabel_server(tmp_path_factory):
    from cnnlstm.deploy.serve.app import create_app

    root = tmp_path_factory.mktemp("browser-multilabel")
    run = make_run(root, task="multilabel", bias=[3.0, -3.0, 1.0])  # left 95.3%, right 4.7%, still 73.1%
    with ServerThread(create_app(run, max_upload_mb=5, max_concurrent=1, device="cpu")) as srv:
        yield srv


def test_page_shows_every_label_of_a_multi_label_run(browser, multilabel_server, tmp_path):
    video = write_video(tmp_path / "clip.mp4", make_frames(24, 48, 64))
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(multilabel_server.url)
    page.locator("#model", has_text="multilabel").wait_for()
    page.set_input_files("#file", video)
    page.wait_for_selector("#topk .bar", timeout=60_000)
    assert page.text_content("#label") == "left (95%) · still (73%)"
    assert page.locator("#topk .bar.on").all_text_contents() == ["left95.3%", "still73.1%"]
    assert page.locator("#topk .bar.off").all_text_contents() == ["right4.7%"]
    marks = page.eval_on_selector_all("#topk .mark", "marks => marks.map(m => m.style.left)")
    assert marks == ["50%"] * 3  # the threshold on every bar
    assert not errors and page.is_hidden("#error")
    page.screenshot(path=str(tmp_path / "multilabel.png"), full_page=True)
    page.close()
