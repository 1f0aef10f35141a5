"""The report as a person sees it: rendered by headless Chromium at a laptop's width.

Chromium (Debian's ``chromium`` package; ``chromium-browser`` or ``google-chrome`` also do) loads
the report of the fixture run from a file URL, with a copy of the page that reports, from the
live DOM, which sections exist, whether every inlined image decoded, and whether the page is
wider than the window; then it takes a screenshot, which must not be blank. Without a browser
on PATH the test skips and says why (CI installs one).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from report_fixture import build_run

from search.report import render
from search.report.search_page import SECTIONS

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
WIDTH = 1280
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless browser on PATH (looked for chromium, chromium-browser, "
    "google-chrome); install Debian's chromium to run this check, as CI does")

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-probe', JSON.stringify({
    sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
    images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    tables: document.querySelectorAll('table').length}));
});
</script>"""


def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("browser") / "run")
    _, path = render(run)
    return path


def probe(html: str, folder) -> dict:
    """What the probe script saw of ``html`` in a 1280-pixel window."""
    page = folder / "probe.html"  # the report plus a probe script; the report has no script
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium(f"--window-size={WIDTH},900", "--dump-dom", page.as_uri()).stdout
    found = re.search(r"data-probe=\"([^\"]+)\"", dom)
    assert found, "the probe did not run: " + dom[:300]
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_every_section_renders_images_decode_and_nothing_overflows_1280px(report, tmp_path):
    data = probe(report.read_text(), tmp_path)
    assert data["sections"] == [sid for sid, _ in SECTIONS]
    assert data["images"] == 5 and data["decoded"] == 5
    assert data["innerWidth"] == WIDTH and data["scrollWidth"] <= WIDTH
    assert data["tables"] >= 6
    wide = probe(report.read_text().replace("<main>", "<main><div style='width:2000px'>x</div>"),
                 tmp_path)
    assert wide["scrollWidth"] > WIDTH  # the probe does see an overflowing page


def test_a_screenshot_of_the_report_is_not_blank(report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    chromium(f"--window-size={WIDTH},2400", f"--screenshot={shot}", report.as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, WIDTH)
    ink = np.abs(pixels - pixels[0, 0]).sum(axis=2) > 0.1  # darker than the page and the boxes
    assert ink.mean() > 0.02  # text, tables and plots (4% measured on this fixture)
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 200  # plots and text, not a flat page
