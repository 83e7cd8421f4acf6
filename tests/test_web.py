"""`tfrf web`: a broken model or one that is no face export is one line and exit 2; the server
serves only its listed files with cross-origin isolation; the drawing model
(`tfrf.export.tflite_drawing`, for native apps of a full-int8 export) equals the float export's
in-graph drawing; in headless Chromium (Debian's, with a fake camera clip made here) the page's
own pose drawing (`draw.js`) equals `tfrf.pose.face.draw_landmarks` pixel for pixel, and the page
tracks the face, animates >= 20 frames and its LiteRT.js output for fixed crops and landmarks
equals the Python runtime's, for a float32 export and for a full-int8 one (poses drawn in the page).

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

from helpers import DRAWING_SIZES, landmark_sets

FLOAT32_ATOL = 1e-3  # the float32 export's tolerance against Keras (tests/test_export_tflite.py)
# LiteRT.js (WASM, XNNPACK's int8 kernels) against the native runtime (TF 2.15's builtin int8
# kernels) on the full-int8 export: the same graph, but the two requantise differently, so an
# activation lands a step or more apart. The cached features differ by a few int8 steps
# (measured max 0.019 of a range 0.64); through `render` of a random network the differences grow
# to about the int8 model's own error against its float32 (measured: page vs native max 0.53, mean
# 0.065; int8 vs float32 natively max 0.44, mean 0.054, for the test model below). The page's
# chaining itself is checked exactly (against the same signatures run one by one in the page).
INT8_FEATURES_ATOL = 0.05
INT8_IMAGE_MEAN, INT8_IMAGE_MAX = 0.1, 0.75


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


@pytest.fixture(scope="module")
def int8_face_model(tmp_path_factory):
    """A tiny random full-int8 face export (64 x 64, K = 1; no landmark signatures) and its path,
    calibrated on `random_representative_inputs`. Without attention and occlusion: with their
    random logits the int8 image is chaotic (against float32: max 1.99, mean 0.44 with them; max
    0.44, mean 0.054 without), and a rounding difference between runtimes changes all of it."""
    import tensorflow as tf

    from tfrf.export import export_generator
    from tfrf.export import tflite as tflite_lib

    from helpers import tiny_config

    tf.keras.utils.set_random_seed(13)
    path = tmp_path_factory.mktemp("web") / "face-int8.tflite"
    config = tiny_config(use_attention=False, use_occlusion=False)
    path.write_bytes(tflite_lib.convert(export_generator(config, tflite=True), 1, "full-int8"))
    return str(path)


def test_drawing_model_equals_the_float_exports_drawing(face_model):
    import tensorflow as tf

    from tfrf.export.tflite import draw_target, load_interpreter
    from tfrf.export.tflite_drawing import drawing_model_for

    drawing = load_interpreter(drawing_model_for(face_model))
    assert sorted(drawing.get_signature_list()) == ["draw_crops", "draw_target"]
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    for landmarks in (rng.uniform(-4, 68, (1, 68, 2)), rng.uniform(16, 48, (1, 68, 2))):
        landmarks = landmarks.astype(np.float32)
        drawn = drawing.get_signature_runner("draw_crops")(source_crops=crops, source_landmarks=landmarks)
        encoded = load_interpreter(face_model).get_signature_runner("encode_crops")(
            source_crops=crops, source_landmarks=landmarks)
        for name in ("source_images", "source_poses"):
            np.testing.assert_allclose(drawn[name], encoded[name], atol=1e-5, rtol=0, err_msg=name)
        assert drawn["source_poses"].max() == 1.0  # something drawn
        pose = drawing.get_signature_runner("draw_target")(target_landmarks=landmarks[0])["target_pose"]
        np.testing.assert_allclose(pose, draw_target(tf.constant(landmarks[0]), 64, 64).numpy(), atol=1e-5, rtol=0)


def test_a_model_that_is_no_face_export_is_a_one_line_error(tmp_path, capsys):
    import tensorflow as tf

    from tfrf.export.tflite import module_flatbuffer

    module = tf.Module()  # the two signatures of an 18-channel (keypoint) export, tiny
    module.encode_sources = tf.function(lambda source_images: {"source_features_h8": source_images * 2.0},
                                        input_signature=[tf.TensorSpec([1, 1, 64, 64, 3], tf.float32)])
    module.render = tf.function(
        lambda source_images, source_poses, target_pose: {"image": source_images[:, 0] + target_pose[..., :3]},
        input_signature=[tf.TensorSpec([1, 1, 64, 64, 3], tf.float32), tf.TensorSpec([1, 1, 64, 64, 18], tf.float32),
                         tf.TensorSpec([1, 64, 64, 18], tf.float32)])
    module.tflite_signatures = {"encode_sources": module.encode_sources, "render": module.render}
    (tmp_path / "pose.tflite").write_bytes(module_flatbuffer(module))
    assert cli_main(["web", "--model", str(tmp_path / "pose.tflite"), "--port", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("tfrf web: ") and "is not a face export: its pose has 18 channels" in error, error
    assert "\n" not in error, error


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
                            "mediapipe_to_68": list(MEDIAPIPE_TO_68), "drawing_table": web.drawing_table()}
        with urllib.request.urlopen(server.url + "vendor/litertjs/core/wasm/litert_wasm_internal.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
        for path in ("vendor/litertjs/core/package.json", "../setup.py", "static/app.js", "vendor/", "drawing.tflite"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(server.url + path)
    finally:
        server.close()


def test_the_drawing_table_is_the_drawings_segments_parts_and_colours():
    from tfrf.pose.face import FACE_PARTS, PART_COLORS, part_polylines

    table = web.drawing_table()
    assert [part["name"] for part in table["parts"]] == list(FACE_PARTS)  # Pillow's drawing order
    lines = part_polylines()
    assert len(table["starts"]) == len(table["ends"]) == sum(len(indices) - 1 for _, indices in lines) == 63
    jaw = table["parts"][0]  # the jaw: one open line 0 -> 16
    assert (jaw["first"], jaw["last"], jaw["tips"]) == (0, 16, [16])
    assert table["starts"][:16] == list(range(16)) and table["ends"][:16] == list(range(1, 17))
    for part in table["parts"]:
        assert tuple(part["color"]) == tuple(PART_COLORS[part["name"]])
        segments = set(zip(table["starts"][part["first"]:part["last"]], table["ends"][part["first"]:part["last"]]))
        assert segments == {(int(a), int(b)) for name, indices in lines if name == part["name"]
                            for a, b in zip(indices[:-1], indices[1:])}


@pytest.mark.slow
def test_server_takes_a_full_int8_face_export(int8_face_model, tmp_path):
    server = web.WebServer(int8_face_model, port=0, assets_dir=str(fake_assets(tmp_path))).start()
    try:
        with urllib.request.urlopen(server.url + "settings.json") as response:
            settings = json.loads(response.read())
        assert (settings["size"], settings["num_sources"]) == (64, 1), settings
        assert settings["drawing_table"] == web.drawing_table()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url + "drawing.tflite")
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for this file's page tests (`.driver`), its fake camera playing a
    clip of a face photo; `.work` holds face.png, blank.png and the clip; skips without one."""
    from types import SimpleNamespace

    from PIL import Image
    from skimage import data

    chromium, chromedriver, assets = browser_or_skip()
    work = tmp_path_factory.mktemp("page")
    photo = data.astronaut()  # 512 x 512, one face
    Image.fromarray(photo).save(work / "face.png")
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(work / "blank.png")
    write_y4m(str(work / "clip.y4m"), [np.roll(photo, 3 * (index % 6) - 9, axis=1) for index in range(12)])
    driver = start_chromium(chromium, chromedriver, str(work / "clip.y4m"))
    try:
        yield SimpleNamespace(driver=driver, work=work, chromium=chromium, chromedriver=chromedriver, assets=assets)
    finally:
        driver.quit()


def open_page(driver, url):
    """The page at `url`, ready (its model, drawing model and tracker loaded) on WASM."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(driver, "return document.body.dataset.ready === '1'", 120, "the page's model and tracker")
    assert json.loads(driver.find_element(By.ID, "stats").text)["backend"] == "wasm"


def animate(driver, photo):
    """Picks `photo` as the source, starts the camera and waits for 20 animated frames; the stats."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "photos").send_keys(str(photo))
    assert "Sources ready" in wait_for(driver, MESSAGE, 60, "the sources")
    driver.find_element(By.ID, "camera").click()
    wait_for(driver, f"{STATS.replace('return ', 'return (')}).frames >= 20", 150, "20 animated frames")
    stats = driver.execute_script(STATS)
    assert stats["faces"] >= stats["frames"] >= 20 and stats["ms_per_frame"] > 0, stats
    return stats


def fixed_inputs():
    """Fixed crops `[1,64,64,3]`, their landmarks `[1,68,2]` and target landmarks `[68,2]`."""
    from tfrf.pose import face

    rng = np.random.default_rng(5)
    crops = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    landmarks = face.template_landmarks(64, 64)[None].astype(np.float32)
    target = (face.template_landmarks(64, 64) + rng.normal(0, 2, (68, 2))).astype(np.float32)
    return crops, landmarks, target


def render_fixed(driver, crops, landmarks, target):
    """The page's generated image (flat) for fixed crops and landmarks (`window.tfrfTest.renderFixed`)."""
    return call_hook(driver, "renderFixed", crops.ravel().tolist(), landmarks.ravel().tolist(), target.ravel().tolist())


@pytest.mark.slow
def test_page_animates_a_face_in_chromium(face_model, browser):
    from selenium.webdriver.common.by import By

    from tfrf.export.tflite import load_interpreter

    driver, work = browser.driver, browser.work
    server = web.WebServer(face_model, port=0, assets_dir=browser.assets).start()
    try:
        open_page(driver, server.url)
        # The face mesh's networks run on the CPU (WASM) by default: WebGL is software-rendered here.
        assert driver.execute_script("return document.getElementById('mesh').contentWindow.tracker.inference") == "cpu"
        photos = driver.find_element(By.ID, "photos")
        photos.send_keys(str(work / "blank.png"))
        assert "No face found in the photo blank.png" in wait_for(driver, MESSAGE, 60, "the no-face message")
        driver.execute_script("document.getElementById('message').textContent = ''; arguments[0].value = ''", photos)
        animate(driver, work / "face.png")
        # Fixed crops and landmarks: the page's LiteRT.js output against the Python runtime's.
        crops, landmarks, target = fixed_inputs()
        in_browser = render_fixed(driver, crops, landmarks, target)
        interpreter = load_interpreter(face_model)
        encoded = interpreter.get_signature_runner("encode_crops")(source_crops=crops, source_landmarks=landmarks)
        expected = interpreter.get_signature_runner("render_landmarks")(target_landmarks=target, **encoded)["image"]
        assert expected.std() > 0.1
        np.testing.assert_allclose(np.reshape(in_browser, expected.shape), expected, atol=FLOAT32_ATOL, rtol=0)
        driver.save_screenshot(str(work / "page.png"))
        denied = start_chromium(browser.chromium, browser.chromedriver, str(work / "clip.y4m"), deny_camera=True)
        try:
            denied.get(server.url)
            wait_for(denied, "return document.body.dataset.ready === '1'", 120, "the page")
            denied.find_element(By.ID, "camera").click()
            assert "The camera cannot be used" in wait_for(denied, MESSAGE, 30, "the camera message")
        finally:
            denied.quit()
    finally:
        server.close()


@pytest.mark.slow
def test_the_pages_pose_drawing_equals_draw_landmarks(face_model, browser):
    """The sets and sizes of tests/test_face_graph.py (the in-graph drawing's): faces, half-pixel
    ties, coincident and axis-aligned points, points off the canvas, scribbles; 1 to 5 px."""
    import base64

    from tfrf.pose.face import draw_landmarks

    cases = [(points, height, width, line_width) for height, width, line_width in DRAWING_SIZES
             for points in landmark_sets(height, width, seed=height + width + 1)]
    server = web.WebServer(face_model, port=0, assets_dir=browser.assets).start()
    try:
        open_page(browser.driver, server.url)
        drawn = [call_hook(browser.driver, "drawLandmarks", points.ravel().tolist(), height, width, line_width)
                 for points, height, width, line_width in cases]
    finally:
        server.close()
    for index, ((points, height, width, line_width), page) in enumerate(zip(cases, drawn)):
        expected = draw_landmarks(points, height, width, line_width).astype(np.float32) / np.float32(255)
        page = np.frombuffer(base64.b64decode(page), np.float32).reshape(expected.shape)
        wrong = np.argwhere(np.any(page != expected, axis=-1))
        assert not len(wrong), (f"{height}x{width}, width {line_width}, set {index % 7}: {len(wrong)} pixels differ, "
                                f"e.g. (y, x) {wrong[:5].tolist()}")
    assert all(draw_landmarks(points, h, w, lw).max() == 255 for points, h, w, lw in cases[::7])  # faces drawn


@pytest.mark.slow
def test_page_animates_a_full_int8_face_export_drawing_the_poses_itself(int8_face_model, browser):
    from tfrf.export.tflite import load_interpreter
    from tfrf.pose.face import draw_landmarks

    driver = browser.driver
    server = web.WebServer(int8_face_model, port=0, assets_dir=browser.assets).start()
    try:
        open_page(driver, server.url)
        assert "poses drawn in the page" in driver.execute_script("return document.getElementById('status').textContent")
        animate(driver, browser.work / "face.png")
        crops, landmarks, target = fixed_inputs()
        in_browser = render_fixed(driver, crops, landmarks, target)
        # What the float exports feed their network (`encode_crops` / `render_landmarks`), from Python's
        # drawing, through the same two signatures run one by one in the page (`runSignature`).
        inputs = {"source_images": (crops.astype(np.float32) / np.float32(127.5) - np.float32(1.0))[None],
                  "source_poses": (np.stack([draw_landmarks(points, 64, 64) for points in landmarks])[None]
                                   .astype(np.float32) / np.float32(255)),
                  "target_pose": (draw_landmarks(target, 64, 64)[None].astype(np.float32) / np.float32(255))}
        flat = {name: value.ravel().tolist() for name, value in inputs.items()}
        staged = {"encode_sources": call_hook(driver, "runSignature", "encode_sources",
                                              {"source_images": flat["source_images"]})}
        staged["render"] = call_hook(driver, "runSignature", "render", {**flat, **staged["encode_sources"]})
    finally:
        server.close()
    # The page's chain (its own drawing and crop conversion) is exactly that.
    np.testing.assert_allclose(in_browser, staged["render"]["image"], atol=1e-6, rtol=0)
    # The same signatures in the Python runtime.
    model = load_interpreter(int8_face_model)
    native = {"encode_sources": model.get_signature_runner("encode_sources")(source_images=inputs["source_images"])}
    native["render"] = model.get_signature_runner("render")(**inputs, **native["encode_sources"])
    for name, expected in native["encode_sources"].items():
        np.testing.assert_allclose(np.reshape(staged["encode_sources"][name], expected.shape), expected,
                                   atol=INT8_FEATURES_ATOL, rtol=0, err_msg=f"encode_sources {name}")
    expected = native["render"]["image"]
    assert expected.std() > 0.1
    difference = np.abs(np.reshape(in_browser, expected.shape) - expected)
    print(f"full-int8 page vs native: max difference {difference.max():.4f}, mean {difference.mean():.4f}")
    assert difference.mean() <= INT8_IMAGE_MEAN and difference.max() <= INT8_IMAGE_MAX, (
        f"page vs native: max {difference.max():.4f} (at most {INT8_IMAGE_MAX}), "
        f"mean {difference.mean():.4f} (at most {INT8_IMAGE_MEAN})")
