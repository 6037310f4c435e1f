"""report.html in headless Chromium (Debian's ``chromium``, which .ci/run installs): it loads every image
without an error, offline, and a screenshot shows it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from otx_anomaly.tasks import AnomalyTask
from tests.helpers import write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed here "
                                "(apt-get install chromium; .ci/run installs it, so CI runs this test)")

#: Injected at the top of a copy of the page: records load errors, then, once the page and every
#: full-size overlay it links have loaded (or failed), writes the result into the DOM.
CHECK_SCRIPT = """<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (event) {
    var target = event.target || {};
    errors.push(target.src ? 'cannot load ' + String(target.src).slice(0, 120) : String(event.message));
  }, true);
  window.addEventListener('load', function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); })
                       .map(function (img) { return img.alt; });
    var links = Array.prototype.slice.call(document.querySelectorAll('a[href]'))
                     .map(function (a) { return a.getAttribute('href'); })
                     .filter(function (href) { return href.charAt(0) !== '#'; });
    var linked = [];
    var pending = links.length;
    function report() {
      var node = document.createElement('pre');
      node.id = 'load-check';
      node.textContent = JSON.stringify({images: images.length, broken: broken, errors: errors,
                                         links: links.length, linked: linked});
      document.body.appendChild(node);
    }
    if (!pending) { report(); }
    links.forEach(function (href) {
      var probe = new Image();
      probe.onload = function () { linked.push([href, probe.naturalWidth, probe.naturalHeight]);
                                   if (--pending === 0) { report(); } };
      probe.onerror = function () { errors.push('cannot load link ' + href); if (--pending === 0) { report(); } };
      probe.src = href;
    });
  });
})();
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A segmentation run's report: six images with their truth, one unreadable file."""
    tmp_path = tmp_path_factory.mktemp("report")
    write_run(tmp_path, AnomalyTask.SEGMENTATION)
    return tmp_path / "out" / "report.html"


def test_report_loads_every_image_and_overlay_without_errors(report, tmp_path):
    page = report.read_text(encoding="utf-8")
    checked = report.with_name("report_check.html")  # beside the report: the same relative links
    checked.write_text(page.replace("<head>", "<head>" + CHECK_SCRIPT, 1), encoding="utf-8")
    result = chromium("--dump-dom", "--virtual-time-budget=15000", checked.as_uri(), profile=tmp_path / "profile")
    match = re.search(r'<pre id="load-check">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the page did not finish loading: {result.stderr[-2000:]}"
    check = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["errors"] == [] and check["broken"] == []
    assert check["images"] == 6, "one thumbnail per predicted image"
    assert check["links"] == 6 and len(check["linked"]) == 6, "every full-size overlay opens"
    assert all((width, height) == (90, 40) for _, width, height in check["linked"])


def test_report_screenshot_shows_the_page(report, tmp_path):
    screenshot = tmp_path / "report.png"
    result = chromium(f"--screenshot={screenshot}", "--window-size=1280,1800", "--hide-scrollbars",
                      "--virtual-time-budget=5000", report.as_uri(), profile=tmp_path / "profile")
    assert screenshot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape == (1800, 1280, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 500, "text, histogram and heatmap thumbnails are rendered, not a blank page"
    red, green, blue = (pixels[..., c].astype(int) for c in range(3))
    assert ((blue > 150) & (red < 100) & (green < 150)).sum() > 1000, "the jet heatmap's blue is visible"
