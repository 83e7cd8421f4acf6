"""`tfrf generate`: photos and poses fitted to the preset's size, a tiny random generator's
weights loaded from disk, and the PNG equal to the in-process generator's output."""
import json

import numpy as np
import pytest
from PIL import Image

from tfrf import cli
from tfrf.commands import generate
from tfrf.config import ModelConfig
from tfrf.datasets import people_common
from tfrf.pose import keypoints as kp


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tfrf.models import Generator

    root = tmp_path_factory.mktemp("model")
    config = ModelConfig.preset("deepfashion", image_height=64, image_width=64, width_multiplier=0.125)
    generator = Generator(config)
    generator(generator.dummy_inputs())
    weights = str(root / "generator.weights.h5")
    generator.save_weights(weights)
    config_path = root / "config.json"
    config_path.write_text(config.to_json())
    return generator, weights, str(config_path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two 256x176 stick-figure 'photos' with pose JSONs, and a target pose JSON."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b", "c"):
        image, keypoints = people_common.stick_figure(rng, 256, 176)
        Image.fromarray(image).save(root / f"{name}.png")
        kp.save_pose_json(str(root / f"{name}.json"), keypoints, (256, 176))
        paths[name] = (str(root / f"{name}.png"), str(root / f"{name}.json"), image, keypoints)
    return paths


def test_generate_writes_the_generators_image(tiny_model, photos, tmp_path):
    generator, weights, config_path = tiny_model
    out = tmp_path / "out" / "generated.png"
    status = cli.main([
        "generate", "--config", config_path, "--weights", weights,
        "--sources", photos["a"][0], photos["b"][0], "--source-poses", photos["a"][1], photos["b"][1],
        "--target-pose", photos["c"][1], "--out", str(out),
    ])
    assert status == 0
    written = np.asarray(Image.open(out))
    assert written.shape == (64, 64, 3) and written.dtype == np.uint8

    # The same inputs by hand: 256x176 padded to 256x256 (40 px each side), scaled to 64x64.
    images, poses = [], []
    for name in ("a", "b"):
        fitted, transform = kp.fit_image(photos[name][2], (64, 64), "pad")
        images.append(fitted)
        poses.append(kp.transform_keypoints(photos[name][3], transform))
    assert (images[0][:, :9] == 255).all()  # white padding, 40/256 of the width
    target = kp.rescale_keypoints(photos["c"][3], (256, 176), (64, 64), "pad")
    np.testing.assert_allclose(target[1], (photos["c"][3][1] + 0.5) / 4 - 0.5 + [0, 10], atol=1e-5)
    inputs = generate.build_inputs(images, poses, target)
    assert inputs["source_images"].shape == (1, 2, 64, 64, 3)
    assert inputs["source_poses"].shape == (1, 2, 64, 64, 18)
    assert inputs["target_pose"].shape == (1, 64, 64, 18)
    peak = np.unravel_index(inputs["target_pose"][0, ..., 1].argmax(), (64, 64))
    np.testing.assert_allclose(peak, np.rint(target[1]), atol=1)
    expected = generate.generate_image(generator, inputs)
    np.testing.assert_array_equal(written, expected)  # the saved weights were loaded
    reloaded = generate.load_generator(ModelConfig.from_dict(json.loads(open(config_path).read())), weights)
    np.testing.assert_array_equal(generate.generate_image(reloaded, inputs), expected)


def test_generate_refuses_bad_inputs(tiny_model, photos, tmp_path):
    _, weights, config_path = tiny_model
    base = ["generate", "--config", config_path, "--weights", weights, "--out", str(tmp_path / "x.png")]
    with pytest.raises(ValueError, match=r"a pose in a 176x256 image, but .* is 64x32"):
        Image.new("RGB", (64, 32)).save(tmp_path / "small.png")
        cli.main(base + ["--sources", str(tmp_path / "small.png"), "--source-poses", photos["a"][1],
                         "--target-pose", photos["c"][1]])
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        cli.main(base + ["--sources", str(tmp_path / "missing.png"), "--source-poses", photos["a"][1],
                         "--target-pose", photos["c"][1]])
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5 do not exist"):
        cli.main(["generate", "--config", config_path, "--weights", str(tmp_path / "nowhere.weights.h5"),
                  "--sources", photos["a"][0], "--source-poses", photos["a"][1],
                  "--target-pose", photos["c"][1], "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="gives 2 poses for 1 --sources"):
        cli.main(base + ["--sources", photos["a"][0], "--source-poses", photos["a"][1], photos["b"][1],
                         "--target-pose", photos["c"][1]])
    with pytest.raises(ValueError, match="keypoint poses"):
        generate.resolve_config("shapenet_chairs", None)


def test_target_photo_without_a_person_is_reported(tiny_model, photos, tmp_path):
    pytest.importorskip("mediapipe")
    _, weights, config_path = tiny_model
    blank = tmp_path / "empty_room.png"
    Image.new("RGB", (176, 256), (255, 255, 255)).save(blank)
    with pytest.raises(kp.NoPersonFoundError, match=r"empty_room\.png: no person found"):
        cli.main(["generate", "--config", config_path, "--weights", weights, "--sources", photos["a"][0],
                  "--source-poses", photos["a"][1], "--target-pose", str(blank), "--out", str(tmp_path / "x.png")])
