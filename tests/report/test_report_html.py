"""report.html renders in a real browser: headless Chromium screenshots of a run report and a
comparison report built from hand-written run directories (no training). Skipped without chromium
(.ci/run installs it)."""
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from citune.report import build_comparison_report, build_report
from test_report import make_run

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

WIDTH = 1200
C0 = (31, 119, 180)  # matplotlib's first colour (blue): present only where a plot image was drawn
C1 = (255, 127, 14)  # its second colour (orange)


def screenshot(html_path, tmp_path, height):
    png = tmp_path / f"{html_path.parent.name}.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}",
         f"--window-size={WIDTH},{height}", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert png.is_file() and png.stat().st_size > 0, (proc.returncode, proc.stderr[-2000:])
    return png


def pixels(png):
    img = imread(png)  # float RGBA in 0..1
    return np.round(img[..., :3] * 255).astype(int)


def count_colour(rgb, colour, tol=12):
    return int((np.abs(rgb - np.array(colour)).max(axis=-1) <= tol).sum())


def check_page(png, height):
    assert png.stat().st_size > 30_000, "a rendered report with tables and plots is not a tiny PNG"
    rgb = pixels(png)
    assert rgb.shape == (height, WIDTH, 3)
    assert rgb.reshape(-1, 3).std(axis=0).max() > 10, "the page is (nearly) one colour"
    white = (rgb.min(axis=-1) >= 245).mean()
    assert 0.5 < white < 0.995, f"{white:.3f} of the page is white: blank, or unstyled/overflowing"
    top = rgb[:150]
    assert (top.max(axis=-1) < 100).sum() > 500, "no dark title text at the top of the page"
    left_margin = rgb[:, :20]
    assert (left_margin.min(axis=-1) >= 240).mean() > 0.99, "content runs into the left edge"
    return rgb


def test_run_report_renders(tmp_path):
    run = make_run(tmp_path / "runs")
    build_report(run)
    height = 6000  # the whole run report: tables, heatmaps, bars, lines
    rgb = check_page(screenshot(run / "report.html", tmp_path, height), height)
    assert count_colour(rgb, C0) > 300, "the bar and line plots (matplotlib blue) did not render"
    assert count_colour(rgb, C1) > 300, "the bar plots (matplotlib orange) did not render"


def test_comparison_report_renders(tmp_path):
    parent = tmp_path / "compare"
    runs = [make_run(parent, "none", 1, shift=-10.0), make_run(parent, "none", 2, shift=-12.0),
            make_run(parent, "random", 1), make_run(parent, "random", 2, shift=2.0)]
    for r in runs:
        build_report(r)
    build_comparison_report(parent, runs)
    height = 2000  # tables and the first plots
    rgb = check_page(screenshot(parent / "report.html", tmp_path, height), height)
    assert count_colour(rgb, C0) > 300 and count_colour(rgb, C1) > 300, "strategy lines did not render"
