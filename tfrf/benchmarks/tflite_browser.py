"""The face export in headless Chromium (LiteRT.js, WASM) beside the native runtime, and the face tracker.

    python -m tfrf.benchmarks.tflite_browser [--preset voxceleb2_mobile] [--k 1] [--calls 10] [--rounds 3] [--frames 40]

For a randomly initialised `--preset` (latency does not depend on the weights) exported at K =
`--k` in float32 (with the landmark signatures) and full-int8, prints:

1. ms per `render` call (and for float32 `render_landmarks`, which also draws the pose in the
   graph), and ms per pose drawing of the page's own `draw.js` (random landmarks in the crop), in
   the page of `tfrf web` in Debian's headless Chromium: the median call of `--rounds` turns of `--calls`
   calls per signature (three warm-ups each turn), on the
   backend the page chose (WASM/XNNPACK here: no WebGPU adapter headless), threads when the page
   is cross-origin isolated;
2. the same signatures in the native runtime (`tfrf.export.tflite.load_interpreter`, 2 threads),
   timed alike;
3. the page driven by a fake camera (a clip of a face photo, `tfrf.web.browser.write_y4m`) for
   `--frames` frames, for each export: face mesh ms per frame, model ms per frame, and the page's
   `ms_per_frame`, with the face mesh's networks on each `--tracker` (cpu: WASM, the page's
   default; gpu: WebGL) and camera frames downscaled for it to each `--tracker-side` (the page's
   default 320 px; 0: whole frames). The float32 export runs `render_landmarks` (the drawing in its graph);
   the full-int8 one, which has no landmark signature, `render` on the pose the page draws in
   JavaScript (`draw.js`). Model ms: the drawing, the network, reading the output and painting it.

Needs chromium, chromedriver, selenium and the npm assets of `tfrf web` (`.ci/run` installs them).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Dict, Sequence


def native_ms(path: str, signature: str, calls: int, rounds: int, size: int, threads: int = 2) -> float:
    """Median ms of `rounds` x `calls` runs of `signature` (random inputs as the page's) after
    three warm-ups, natively."""
    import numpy as np

    from tfrf.export.tflite import load_interpreter

    runner = load_interpreter(path, num_threads=threads).get_signature_runner(signature)
    rng, inputs = np.random.default_rng(0), {}
    for name, details in runner.get_input_details().items():  # as the page's timeSignature
        scale = 256 if details["dtype"] == np.uint8 else (size if "landmarks" in name else 1)
        values = rng.uniform(0, 1, details["shape"]) * scale
        inputs[name] = np.floor(values).astype(np.uint8) if details["dtype"] == np.uint8 else values.astype(np.float32)
    for _ in range(3):
        runner(**inputs)
    times = []
    for _ in range(rounds * calls):
        began = time.perf_counter()
        runner(**inputs)
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def page_figures(path: str, signatures: Sequence[str], calls: int, rounds: int, frames: int, work: str,
                 tracker: str = "cpu", tracker_side: int = 320) -> Dict[str, float]:
    """Browser figures of one model: `<signature>_ms` per signature (the median call of `rounds`
    turns of `calls` calls, signatures in turn), and with `frames`, the tracker's and the model's
    ms per camera frame, the face mesh's networks on `tracker` ("cpu" or "gpu", the page's
    `?tracker=`), camera frames downscaled for it to `tracker_side` px (`?tracker_side=`, 0: whole)."""
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By

    from tfrf.web.browser import STATS, browser_paths, call_hook, start_chromium, wait_for, write_y4m
    from tfrf.web.server import WebServer

    chromium, chromedriver = browser_paths()
    if not (chromium and chromedriver):
        raise SystemExit("needs chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    from skimage import data

    photo = data.astronaut()
    Image.fromarray(photo).save(os.path.join(work, "face.png"))
    clip = write_y4m(os.path.join(work, "clip.y4m"), [np.roll(photo, 3 * (i % 6) - 9, axis=1) for i in range(12)])
    server = WebServer(path, port=0, require_landmarks=False).start()
    driver = start_chromium(chromium, chromedriver, clip)
    figures = {}
    try:
        driver.get(f"{server.url}?tracker={tracker}&tracker_side={tracker_side}")
        wait_for(driver, "return document.body.dataset.ready", 180, "the page")
        figures["threads"] = driver.execute_script("return self.crossOriginIsolated ? navigator.hardwareConcurrency : 1")
        times = {signature: [] for signature in signatures}
        for _ in range(rounds):
            for signature in signatures:
                times[signature] += call_hook(driver, "timeSignature", signature, calls)
        for signature, values in times.items():
            figures[f"{signature}_ms"] = statistics.median(values)
        figures["drawing_ms"] = statistics.median(call_hook(driver, "timeDrawing", max(calls * rounds, 1)))
        if frames:
            driver.find_element(By.ID, "photos").send_keys(os.path.join(work, "face.png"))
            wait_for(driver, "return document.getElementById('message').textContent.includes('Sources ready')", 120,
                     "the sources")
            driver.find_element(By.ID, "camera").click()
            wait_for(driver, f"{STATS.replace('return ', 'return (')}).frames >= {frames}", 600, f"{frames} frames")
            times = driver.execute_script("return window.tfrfTimes")
            figures["mesh_ms"] = statistics.mean(times["mesh_ms"][1:])
            figures["model_ms"] = statistics.mean(times["model_ms"][1:])
            figures["page_ms_per_frame"] = driver.execute_script(STATS)["ms_per_frame"]
    finally:
        driver.quit()
        server.close()
    return figures


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.tflite_browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="voxceleb2_mobile")
    parser.add_argument("--k", type=int, default=1, help="number of sources K of the exports")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per signature and round")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each signature")
    parser.add_argument("--frames", type=int, default=40, help="camera frames of the page run of each export")
    parser.add_argument("--tracker", nargs="+", choices=("cpu", "gpu"), default=["cpu"],
                        help="where the face mesh's networks run in the page run(s) (the page's ?tracker=; "
                             "default cpu: WASM, as the page does; gpu: WebGL, software-rendered headless)")
    parser.add_argument("--tracker-side", nargs="+", type=int, default=[320],
                        help="longer side of the camera frames the tracker sees in the page run(s) (the page's "
                             "?tracker_side=; default 320 as the page; 0: whole frames)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tfrf
    from tfrf.export import export_generator
    from tfrf.export.tflite import convert, runtime_name

    config = tfrf.ModelConfig.preset(args.preset)
    generator = export_generator(config, tflite=True)
    with tempfile.TemporaryDirectory(prefix="tfrf-browser-") as work:
        print(f"== {args.preset} {config.image_height}x{config.image_width}, K = {args.k}, headless Chromium "
              f"(LiteRT.js WASM) vs native {runtime_name()} (2 threads); median of {args.rounds} x {args.calls} calls ==", flush=True)
        for quantize in ("none", "full-int8"):
            path = os.path.join(work, f"{quantize}.tflite")
            with open(path, "wb") as stream:
                stream.write(convert(generator, args.k, quantize))
            signatures = ["render"] + (["render_landmarks"] if quantize == "none" else [])
            runs = [(tracker, side) for tracker in args.tracker for side in args.tracker_side]
            page = page_figures(path, signatures, args.calls, args.rounds, args.frames, work, *runs[0])
            print(f"  {quantize:>9} draw.js pose drawing: browser {page['drawing_ms']:7.2f} ms", flush=True)
            for signature in signatures:
                native = native_ms(path, signature, args.calls, args.rounds, config.image_height)
                browser = page[f"{signature}_ms"]
                print(f"  {quantize:>9} {signature:>16}: browser {browser:7.1f} ms ({page['threads']} threads), "
                      f"native {native:7.1f} ms, browser/native {browser / native:4.2f}", flush=True)
            pages = [(runs[0], page)] if "mesh_ms" in page else []
            if pages:
                pages += [(run, page_figures(path, [], 0, 0, args.frames, work, *run)) for run in runs[1:]]
            for (tracker, side), figures in pages:
                total = figures["mesh_ms"] + figures["model_ms"]
                frame = f"frames at {side} px" if side else "whole frames"
                print(f"  {quantize:>9} page, fake camera (512 x 512), {args.frames} frames, face mesh on {tracker}, "
                      f"{frame}: face mesh "
                      f"{figures['mesh_ms']:.1f} ms + model {figures['model_ms']:.1f} ms per frame = {total:.1f} ms "
                      f"({1e3 / total:.1f} fps); #stats ms_per_frame {figures['page_ms_per_frame']:.1f} "
                      f"({1e3 / figures['page_ms_per_frame']:.1f} fps)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
