"""The system's Chromium, driven by Playwright: for the gallery's browser test and `make demo`'s screenshots.

Only Debian's `/usr/bin/chromium` is used (Playwright never downloads a browser here), headless, with
nothing that reaches the network on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the length of the block (FileNotFoundError if it is not installed)."""
    from playwright.sync_api import sync_playwright  # a dev dependency: only where it is used

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def load_all_images(page: object) -> None:
    """Scroll to the end, as a person would, so every lazy image loads; wait until each is decoded."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.evaluate(
        """async () => {
            for (let y = 0; y < document.body.scrollHeight; y += window.innerHeight / 2) {
                window.scrollTo(0, y);
                await new Promise((done) => setTimeout(done, 30));
            }
            window.scrollTo(0, 0);
        }"""
    )
    page.wait_for_function(
        "Array.from(document.images).every((image) => image.complete && image.naturalWidth > 0)",
        timeout=30_000,
    )


def screenshots(gallery: Path) -> list[Path]:
    """`gallery-desktop.png` and `gallery-phone.png` beside the gallery, every image loaded."""
    written = []
    with chromium() as browser:
        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page = browser.new_page(viewport=size)  # type: ignore[arg-type]
            page.goto(gallery.resolve().as_uri())
            load_all_images(page)
            target = gallery.with_name(f"gallery-{name}.png")
            page.screenshot(path=str(target), full_page=False)
            written.append(target)
            page.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """`python -m nanobanana_cli.browser DIR/index.html`: the screenshots, or a note why there are none."""
    gallery = Path((argv or sys.argv[1:])[0])
    try:
        for path in screenshots(gallery):
            print(f"screenshot: {path}")
    except (FileNotFoundError, ImportError) as error:
        print(f"no screenshots: {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
