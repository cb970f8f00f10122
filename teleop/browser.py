"""Headless Debian Chromium for checking the console page (tests and `bench/console.py`).

Playwright (pip) drives the system's `/usr/bin/chromium`; `playwright install`
is never run (no browser download).  Flags: new headless, SwiftShader WebGL2,
no sandbox (root in CI), the console's self-signed certificate accepted, no
background network traffic, and requestAnimationFrame not capped at 60 Hz
(so the page's own rate is measured, not the headless vsync).
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = os.environ.get("SURGBOT_CHROMIUM", "/usr/bin/chromium")
XR_WINDOW = (640, 360)        # window (and emulated XR canvas) size for immersive runs
CHROMIUM_ARGS = (
    "--no-sandbox", "--ignore-certificate-errors", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run", "--metrics-recording-only",
    "--disable-gpu-vsync", "--disable-frame-rate-limit",
)


def launch(playwright, *, uncapped: bool = True):
    """A headless Chromium browser (raises FileNotFoundError naming the package when it is missing)."""
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"{CHROMIUM} not found: install Debian's chromium (scripts/bootstrap.sh does)")
    args = [a for a in CHROMIUM_ARGS if uncapped or a not in ("--disable-gpu-vsync", "--disable-frame-rate-limit")]
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def offline_page(browser, origin: str, blocked: list[str], size: tuple[int, int] = (1280, 720)):
    """A page whose requests to anything but `origin` are aborted and recorded in `blocked`.

    `size` is the window (the emulated headset renders its views into a canvas of that size:
    SwiftShader draws every pixel on the CPU, so the tests and the bench use a small one).
    """
    # bypass_csp: Playwright evaluates its probes as strings, which the page's CSP (no eval) refuses
    page = browser.new_page(ignore_https_errors=True, bypass_csp=True,
                            viewport={"width": size[0], "height": size[1]})

    def route(r):
        if r.request.url.startswith(origin + "/"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()
    page.route("**/*", route)
    return page
