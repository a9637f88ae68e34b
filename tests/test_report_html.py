"""zdfuzz report: one self-contained HTML page, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from zdfuzz.cli import main

CHART_COLOUR = (0x00, 0x72, 0xB2)  # the first series (PALETTE[0])
HEADER_COLOUR = (0x1F, 0x3B, 0x73)  # table headers


# the module fixture runs two campaigns: once, in one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("soak")
    args = ["--time", "10", "--execs", "20000", "--seed", "1"]
    for sub, rules in (("p20", "p20"), ("e1", "e1")):
        r = CliRunner().invoke(main, ["fuzz", "--rules", rules, *args, "--corpus", str(root / sub)])
        assert r.exit_code == 0, r.output
    out = root / "report.html"
    r = CliRunner().invoke(main, ["report", str(root), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_the_page_has_charts_grid_findings_and_downloads(page: Path) -> None:
    text = page.read_text()
    assert text.count("<svg") == 2 and "<polyline" in text
    assert 'id="grid"' in text and 'id="findings"' in text
    assert "I-L2" in text and '<td class="new">new' in text and '<td class="shared">shared' in text
    # every reproducer is downloadable from the page itself
    downloads = re.findall(r'download="([^"]+\.zdf)" href="data:text/plain;base64,', text)
    assert "p20-I-L2-memunmap_pages-generic.zdf" in downloads
    # the explain narrative of each finding
    assert "what happens, step by step" in text and "models:" in text
    # self-contained: nothing to fetch
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<script" not in text and "<link" not in text


def test_report_of_a_directory_without_campaigns(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "No stats files" in out.read_text() and "0 finding(s)" in out.read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_browser_shows_the_charts_and_the_findings_table(page: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install chromium): the report's browser check is skipped"
        )
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    img = Image.open(shot).convert("RGB")
    pixels = list(img.get_flattened_data())

    def count(rgb: tuple[int, int, int]) -> int:
        return sum(1 for p in pixels if all(abs(a - b) <= 8 for a, b in zip(p, rgb)))

    # the charts' first series is drawn (3-pixel lines over hundreds of pixels)
    assert count(CHART_COLOUR) > 300
    # the tables' header rows are painted
    assert count(HEADER_COLOUR) > 2000
    # and a blank page would have neither
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body>nothing</body></html>")
    shot2 = tmp_path / "blank.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p2'}"]
        + ["--window-size=1280,1400", f"--screenshot={shot2}", blank.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    blank_pixels = list(Image.open(shot2).convert("RGB").get_flattened_data())
    assert not any(all(abs(a - b) <= 8 for a, b in zip(p, CHART_COLOUR)) for p in blank_pixels)
