"""The page, end to end in headless Chromium: upload a real file, check what it draws, take a screenshot."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from earmark.serve.app import ServeSettings, create_app

from ..conftest import shared_dataset
from .conftest import running_server

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str:
    for candidate in (os.environ.get("EARMARK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("chromium not found (Debian: apt-get install --no-install-recommends chromium; "
                "or set EARMARK_CHROMIUM to its path)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    executable = find_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is a dev dependency")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        # A persistent context on a fresh, empty profile folder (Playwright's way of --user-data-dir).
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=executable, headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1200, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def esc10_clip() -> Path:
    root = shared_dataset("esc10")
    with open(root / "manifest.csv", newline="") as f:
        return root / next(r for r in csv.DictReader(f) if r["label"] == "dog")["path"]


def test_page_uploads_a_file_and_draws_the_answer(browser, esc10_cv_run: Path, tmp_path: Path):
    from PIL import Image

    clip = esc10_clip()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app(esc10_cv_run, ServeSettings(tmp_dir=str(uploads)))
    with running_server(app) as url:
        expected = httpx.post(f"{url}/v1/predict", files={"file": (clip.name, clip.read_bytes())}, timeout=60).json()
        page = browser.new_page()
        outside: list[str] = []
        page.on("request", lambda req: outside.append(req.url) if not req.url.startswith((url, "data:", "blob:"))
                else None)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-state=idle]", timeout=15000)
        assert "10 classes" in page.inner_text("#model-info") and page.is_hidden("#result")
        page.screenshot(path=str(tmp_path / "page-start.png"))
        page.set_input_files("#file", str(clip))
        page.wait_for_selector("body[data-state=done]", timeout=60000)

        assert page.inner_text("#r-label") == expected["label"]
        assert page.inner_text("#r-file") == clip.name
        bars = page.query_selector_all("#bars .bar-row")
        assert len(bars) == 5
        assert [b.query_selector(".bar-name").inner_text() for b in bars] == [t["label"] for t in expected["top"][:5]]
        widths = page.eval_on_selector_all("#bars .bar-fill", "els => els.map(e => e.getBoundingClientRect().width)")
        assert widths == sorted(widths, reverse=True) and widths[0] > 0
        segs = page.eval_on_selector_all("#timeline .seg", "els => els.map(e => e.dataset.label)")
        assert segs == [s["label"] for s in expected["segments"]] and len(segs) == 9
        assert page.eval_on_selector_all("#segments tbody tr", "rows => rows.length") == 9
        # The spectrogram canvas holds an image, not a blank rectangle.
        spread = page.evaluate("""() => {
            const c = document.getElementById('spec');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lo = 255, hi = 0;
            for (let i = 0; i < d.length; i += 4 * 97) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
            return [c.width, hi - lo]; }""")
        assert spread[0] > 300 and spread[1] > 100
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)

        # A file that is not audio: the page says so, in words.
        bad = tmp_path / "notes.wav"
        bad.write_bytes(b"these are notes, not sound" * 40)
        page.set_input_files("#file", str(bad))
        page.wait_for_selector("body[data-state=error]", timeout=30000)
        assert "not readable as audio" in page.inner_text("#status")
        assert page.is_hidden("#result")  # the previous answer is not left on screen
        page.screenshot(path=str(tmp_path / "page-error.png"))
        page.close()
    assert errors == [] and outside == []  # no script errors; nothing fetched from anywhere else
    assert list(uploads.iterdir()) == []

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[1] == 1200 and image.shape[0] >= 900
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0).shape[0]
    assert colours > 500  # text, bars and a spectrogram: a rendered page, not an empty one
