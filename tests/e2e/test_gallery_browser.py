"""The gallery in a real browser (Debian's Chromium, driven by Playwright), as a person would use it.

Chromium is a Debian package that `.ci/run` installs: without it this test fails, it does not skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanobanana_cli.browser import CHROMIUM, DESKTOP, PHONE, chromium, load_all_images
from nanobanana_cli.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles"
DEMO = [str(SAMPLES / name) for name in ("cats.txt", "jobs.jsonl", "posters.json", "scenes.csv")]
MARKUP = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script> a cat'


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's run, plus a file with a failing job and a prompt full of markup."""
    root = tmp_path_factory.mktemp("gallery")
    tricky = root / "tricky.txt"
    tricky.write_text(f"{MARKUP}\na refused cat [[refuse]]\n")
    out = root / "out"
    argv = ["local", *DEMO, str(tricky), "--sqs", str(SAMPLES / "sqs/messages.jsonl")]
    argv += ["--inputs", str(SAMPLES / "inputs"), "--out", str(out)]
    assert main(argv) == 1  # the refused job
    return out / "index.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    with chromium() as launched:
        yield launched


def _open(browser: Any, gallery: Path, viewport: dict[str, int]) -> Any:
    page = browser.new_page(viewport=viewport)
    page.goto(gallery.as_uri())
    return page


def _shown(page: Any) -> list[str]:
    return [str(card) for card in page.eval_on_selector_all(".job:not([hidden])", "cs => cs.map(c => c.id)")]


def test_every_image_loads_and_decodes(browser: Any, gallery: Path) -> None:
    page = _open(browser, gallery, DESKTOP)
    lazy = page.eval_on_selector_all("img", "images => images.map(i => i.loading)")
    assert len(lazy) == 16 and set(lazy) == {"lazy"}  # 15 demo images, 1 from tricky.txt
    load_all_images(page)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert all(width > 0 for width in widths)


def test_the_status_filter_and_the_search_change_what_is_shown(browser: Any, gallery: Path) -> None:
    page = _open(browser, gallery, DESKTOP)
    everything = _shown(page)
    assert len(everything) == 17
    page.select_option("#status", "failed")
    assert _shown(page) == ["tricky/00002"]
    page.select_option("#status", "")
    page.select_option("#error", "content_filtered")
    assert _shown(page) == ["tricky/00002"]
    page.select_option("#error", "")
    page.fill("#search", "HARBOR")
    shown = _shown(page)
    assert shown and len(shown) < len(everything) and all(card.startswith("scenes/") for card in shown)
    assert page.text_content("#shown") == f"{len(shown)} of 17 shown"
    page.fill("#search", "hello-sqs")  # an id
    assert _shown(page) == ["sqs-demo/hello-sqs"]


def test_a_prompt_holding_markup_stays_text(browser: Any, gallery: Path) -> None:
    page = _open(browser, gallery, DESKTOP)
    load_all_images(page)
    prompt = page.text_content('[id="tricky/00001"] .prompt')
    assert prompt == MARKUP
    assert page.evaluate("window.pwned") is None
    assert page.eval_on_selector_all('img[src="x"], .job script', "found => found.length") == 0


def test_the_page_fits_a_phone_without_sideways_scrolling(browser: Any, gallery: Path) -> None:
    page = _open(browser, gallery, PHONE)
    load_all_images(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    viewport = page.evaluate("document.querySelector('meta[name=viewport]').content")
    assert "width=device-width" in viewport
