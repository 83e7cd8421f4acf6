"""`tfrf web`: a broken model is one line and exit 2; the server serves only its listed files with
cross-origin isolation; in headless Chromium (Debian's, with a fake camera clip made here) the
page tracks the face, animates >= 20 frames and its LiteRT.js output for fixed crops and
landmarks equals the Python runtime's.

The browser test needs `chromium`, `chromedriver` and the npm assets (`.ci/run` installs all
three); without them it is skipped with the reason, except where TFRF_REQUIRE_BROWSER=1 (CI),
where it fails.
"""
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

from tfrf.cli import main as cli_main
from tfrf.web import server as web
from tfrf.web.browser import MESSAGE, STATS, browser_paths, call_hook, start_chromium, wait_for, write_y4m

FLOAT32_ATOL = 1e-3  # the float32 export's tolerance against Keras (tests/test_export_tflite.py)


def test_broken_models_are_one_line_errors(face_model, tmp_path, capsys):
    with open(face_model, "rb") as stream:
        model = stream.read()
    cases = {"foreign.tflite": (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a TFLite model"),
             "cut100.tflite": (model[:100], "truncated"), "cut5k.tflite": (model[:5000], "truncated")}
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    cases["missing.tflite"] = (None, "does not exist")
    for name, (_, reason) in cases.items():
        assert cli_main(["web", "--model", str(tmp_path / name), "--port", "0"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("tfrf web: ") and reason in error and "\n" not in error, error


def fake_assets(root):
    """A node_modules with every pinned package and file (empty files)."""
    for name, (version, files) in web.ASSET_PACKAGES.items():
        package = root / "node_modules" / name
        for path in files:
            (package / path).parent.mkdir(parents=True, exist_ok=True)
            (package / path).write_bytes(b"// " + name.encode())
        (package / "package.json").write_text(json.dumps({"name": name, "version": version}))
    return root


def test_assets_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm install --prefix .* @litertjs/core@2.5.3"):
        web.find_assets(str(tmp_path))
    fake_assets(tmp_path)
    assert web.find_assets(str(tmp_path)) == str(tmp_path / "node_modules")
    manifest = tmp_path / "node_modules" / "@mediapipe" / "face_mesh" / "package.json"
    manifest.write_text(json.dumps({"version": "0.4.0"}))
    with pytest.raises(ValueError, match="not the pinned 0.4.1657299874"):
        web.find_assets(str(tmp_path))


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    """A tiny random face export (64 x 64, K = 1, float32) and its path."""
    import tensorflow as tf

    from tfrf.export import export_generator
    from tfrf.export import tflite as tflite_lib

    from helpers import tiny_config

    tf.keras.utils.set_random_seed(12)
    path = tmp_path_factory.mktemp("web") / "face.tflite"
    path.write_bytes(tflite_lib.convert(export_generator(tiny_config(), tflite=True), 1, "none"))
    return str(path)


def test_server_serves_only_the_page_the_model_and_the_assets(face_model, tmp_path):
    server = web.WebServer(face_model, port=0, assets_dir=str(fake_assets(tmp_path))).start()
    try:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url) as response:
            assert b"importmap" in response.read()
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        with urllib.request.urlopen(server.url + "model.tflite") as response, open(face_model, "rb") as stream:
            assert response.read() == stream.read()
        with urllib.request.urlopen(server.url + "settings.json") as response:
            settings = json.loads(response.read())
        from tfrf.pose.face import MEDIAPIPE_TO_68

        assert settings == {"size": 64, "width": 64, "num_sources": 1, "margin": 0.25,
                            "mediapipe_to_68": list(MEDIAPIPE_TO_68)}
        with urllib.request.urlopen(server.url + "vendor/litertjs/core/wasm/litert_wasm_internal.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
        for path in ("vendor/litertjs/core/package.json", "../setup.py", "static/app.js", "vendor/"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(server.url + path)
    finally:
        server.close()


def browser_or_skip():
    """(chromium, chromedriver, assets dir); skips (or fails under TFRF_REQUIRE_BROWSER=1)
    naming what is missing."""
    chromium, driver = browser_paths()
    missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver)) if not found]
    try:
        web.find_assets()
    except (OSError, ValueError) as error:
        missing.append(f"the npm assets ({error})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        reason = f"no browser test: missing {', '.join(missing)} (.ci/run installs them)"
        print(reason)
        if os.environ.get("TFRF_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return chromium, driver, web.default_assets_dir()


@pytest.mark.slow
def test_page_animates_a_face_in_chromium(face_model, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from skimage import data

    from tfrf.export.tflite import load_interpreter
    from tfrf.pose import face

    chromium, chromedriver, assets = browser_or_skip()
    photo = data.astronaut()  # 512 x 512, one face
    Image.fromarray(photo).save(tmp_path / "face.png")
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(tmp_path / "blank.png")
    write_y4m(str(tmp_path / "clip.y4m"), [np.roll(photo, 3 * (index % 6) - 9, axis=1) for index in range(12)])
    server = web.WebServer(face_model, port=0, assets_dir=assets).start()
    driver = start_chromium(chromium, chromedriver, str(tmp_path / "clip.y4m"))
    try:
        driver.get(server.url)
        wait_for(driver, "return document.body.dataset.ready === '1'", 120, "the page's model and tracker")
        assert json.loads(driver.find_element(By.ID, "stats").text)["backend"] == "wasm"
        # The face mesh's networks run on the CPU (WASM) by default: WebGL is software-rendered here.
        assert driver.execute_script("return document.getElementById('mesh').contentWindow.tracker.inference") == "cpu"
        photos = driver.find_element(By.ID, "photos")
        photos.send_keys(str(tmp_path / "blank.png"))
        assert "No face found in the photo blank.png" in wait_for(driver, MESSAGE, 60, "the no-face message")
        driver.execute_script("document.getElementById('message').textContent = ''; arguments[0].value = ''", photos)
        photos.send_keys(str(tmp_path / "face.png"))
        assert "Sources ready" in wait_for(driver, MESSAGE, 60, "the sources")
        driver.find_element(By.ID, "camera").click()
        wait_for(driver, f"{STATS.replace('return ', 'return (')}).frames >= 20", 150, "20 animated frames")
        stats = driver.execute_script(STATS)
        assert stats["faces"] >= stats["frames"] >= 20 and stats["ms_per_frame"] > 0, stats
        # Fixed crops and landmarks: the page's LiteRT.js output against the Python runtime's.
        rng = np.random.default_rng(5)
        crops = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
        landmarks = face.template_landmarks(64, 64)[None].astype(np.float32)
        target = (face.template_landmarks(64, 64) + rng.normal(0, 2, (68, 2))).astype(np.float32)
        in_browser = call_hook(driver, "renderFixed", crops.ravel().tolist(), landmarks.ravel().tolist(),
                               target.ravel().tolist())
        interpreter = load_interpreter(face_model)
        encoded = interpreter.get_signature_runner("encode_crops")(source_crops=crops, source_landmarks=landmarks)
        expected = interpreter.get_signature_runner("render_landmarks")(target_landmarks=target, **encoded)["image"]
        assert expected.std() > 0.1
        np.testing.assert_allclose(np.reshape(in_browser, expected.shape), expected, atol=FLOAT32_ATOL, rtol=0)
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
    denied = start_chromium(chromium, chromedriver, str(tmp_path / "clip.y4m"), deny_camera=True)
    try:
        denied.get(server.url)
        wait_for(denied, "return document.body.dataset.ready === '1'", 120, "the page")
        denied.find_element(By.ID, "camera").click()
        assert "The camera cannot be used" in wait_for(denied, MESSAGE, 30, "the camera message")
    finally:
        denied.quit()
        server.close()
