"""Headless Chromium for the page of `tfrf web` (tests and `tfrf.benchmarks.tflite_browser`):
Debian's `chromium` and `chromedriver` driven by selenium, a fake camera that plays a clip."""
from __future__ import annotations

import shutil
import time
from typing import List, Optional, Sequence

import numpy as np

MESSAGE = "return document.getElementById('message').textContent"
STATS = "return JSON.parse(document.getElementById('stats').textContent)"


def browser_paths() -> List[Optional[str]]:
    """[chromium, chromedriver] as found on PATH (None where missing)."""
    return [shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")]


def write_y4m(path: str, frames: Sequence[np.ndarray], fps: int = 10) -> str:
    """An uncompressed YUV4MPEG2 clip (4:2:0, full-range BT.601) of RGB uint8 frames, the form
    Chromium's fake camera plays (`--use-file-for-fake-video-capture`); returns `path`."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as stream:
        stream.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            r, g, b = (rgb[..., channel].astype(np.float32) for channel in range(3))
            planes = [0.299 * r + 0.587 * g + 0.114 * b, -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
                      0.5 * r - 0.418688 * g - 0.081312 * b + 128]
            planes[1:] = [plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for plane in planes[1:]]
            stream.write(b"FRAME\n" + b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes))
    return path


def start_chromium(chromium: str, chromedriver: str, clip: str, deny_camera: bool = False):
    """A selenium driver of headless Chromium whose camera plays `clip` (camera access granted,
    or denied with `deny_camera`); software WebGL for the face tracker."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-video-capture={clip}", "--enable-unsafe-swiftshader"):
        options.add_argument(argument)
    if deny_camera:
        options.add_experimental_option("prefs", {"profile.default_content_setting_values.media_stream_camera": 2})
    else:
        options.add_argument("--use-fake-ui-for-media-stream")
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def wait_for(driver, script: str, seconds: float, what: str):
    """The first truthy value of `script` in the page, polled; AssertionError naming `what` and the
    page's message after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {seconds} s; the page says {driver.execute_script(MESSAGE)!r}")


def call_hook(driver, name: str, *arguments):
    """`await window.tfrfTest[name](...arguments)` in the page; raises on a rejected promise."""
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"window.tfrfTest.{name}(...Array.from(arguments).slice(0, -1))"
        ".then((value) => done({value}), (error) => done({error: String(error)}));", *arguments)
    if "error" in result:
        raise RuntimeError(f"the page's {name} failed: {result['error']}")
    return result["value"]
