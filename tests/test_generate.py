"""`tfrf generate`: photos and poses fitted to the preset's size, a tiny random generator's
weights loaded from disk, and the PNG equal to the in-process generator's output."""
import json

import numpy as np
import pytest
from PIL import Image

from tfrf import cli
from tfrf import inference, runs
from tfrf.config import ModelConfig
from tfrf.datasets import people_common
from tfrf.pose import keypoints as kp

from helpers import save_tiny_people_model


def run_command(argv):
    """Runs a `tfrf` command and lets its exception through (`cli.main` turns a user's mistake
    into one stderr line and exit status 2; here the exception itself is checked)."""
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_people_model(tmp_path_factory.mktemp("model"))


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
    inputs = inference.build_inputs(images, poses, target)
    assert inputs["source_images"].shape == (1, 2, 64, 64, 3)
    assert inputs["source_poses"].shape == (1, 2, 64, 64, 18)
    assert inputs["target_pose"].shape == (1, 64, 64, 18)
    peak = np.unravel_index(inputs["target_pose"][0, ..., 1].argmax(), (64, 64))
    np.testing.assert_allclose(peak, np.rint(target[1]), atol=1)
    expected = inference.generate_image(generator, inputs)
    np.testing.assert_array_equal(written, expected)  # the saved weights were loaded
    reloaded = runs.load_generator(ModelConfig.from_dict(json.loads(open(config_path).read())), weights)
    np.testing.assert_array_equal(inference.generate_image(reloaded, inputs), expected)


def test_generate_refuses_bad_inputs(tiny_model, photos, tmp_path):
    _, weights, config_path = tiny_model
    base = ["generate", "--config", config_path, "--weights", weights, "--out", str(tmp_path / "x.png")]
    with pytest.raises(ValueError, match=r"a pose in a 176x256 image, but .* is 64x32"):
        Image.new("RGB", (64, 32)).save(tmp_path / "small.png")
        run_command(base + ["--sources", str(tmp_path / "small.png"), "--source-poses", photos["a"][1],
                         "--target-pose", photos["c"][1]])
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        run_command(base + ["--sources", str(tmp_path / "missing.png"), "--source-poses", photos["a"][1],
                         "--target-pose", photos["c"][1]])
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5 do not exist"):
        run_command(["generate", "--config", config_path, "--weights", str(tmp_path / "nowhere.weights.h5"),
                  "--sources", photos["a"][0], "--source-poses", photos["a"][1],
                  "--target-pose", photos["c"][1], "--out", str(tmp_path / "x.png")])
    with pytest.raises(ValueError, match="gives 2 poses for 1 --sources"):
        run_command(base + ["--sources", photos["a"][0], "--source-poses", photos["a"][1], photos["b"][1],
                         "--target-pose", photos["c"][1]])
    with pytest.raises(ValueError, match="needs a keypoint model"):
        inference.check_keypoint_model(ModelConfig.preset("shapenet_chairs"))


def test_target_photo_without_a_person_is_reported(tiny_model, photos, tmp_path):
    pytest.importorskip("mediapipe")
    _, weights, config_path = tiny_model
    blank = tmp_path / "empty_room.png"
    Image.new("RGB", (176, 256), (255, 255, 255)).save(blank)
    with pytest.raises(kp.NoPersonFoundError, match=r"empty_room\.png: no person found"):
        run_command(["generate", "--config", config_path, "--weights", weights, "--sources", photos["a"][0],
                  "--source-poses", photos["a"][1], "--target-pose", str(blank), "--out", str(tmp_path / "x.png")])


def test_truncated_or_non_image_photos_are_named(tiny_model, photos, tmp_path):
    _, weights, config_path = tiny_model
    data = open(photos["a"][0], "rb").read()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.jpg").write_text("not a photo")
    base = ["generate", "--config", config_path, "--weights", weights, "--out", str(tmp_path / "x.png"),
            "--source-poses", photos["a"][1], "--target-pose", photos["c"][1], "--sources"]
    with pytest.raises(ValueError, match=r"cut\.png: the image data is truncated or corrupt"):
        run_command(base + [str(tmp_path / "cut.png")])
    with pytest.raises(ValueError, match=r"notes\.jpg is not an image"):
        run_command(base + [str(tmp_path / "notes.jpg")])


def test_target_pose_from_an_exif_rotated_photo(tiny_model, photos, tmp_path):
    """A phone portrait (pixel data turned, EXIF orientation 8) as the target pose: its keypoints
    are those of the upright photo, fitted to the model's size; `--keypoint-threshold` is passed on."""
    pytest.importorskip("mediapipe")
    astronaut = pytest.importorskip("skimage.data").astronaut()
    from tfrf.pose import keypoint_detection

    generator, weights, config_path = tiny_model
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned a quarter right; viewers turn it back
    portrait = tmp_path / "portrait.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, k=-1))).save(portrait, exif=exif.tobytes())
    out = tmp_path / "generated.png"
    command = ["generate", "--config", config_path, "--weights", weights, "--sources", photos["a"][0],
               "--source-poses", photos["a"][1], "--target-pose", str(portrait), "--out", str(out)]
    assert cli.main(command + ["--keypoint-threshold", "0.3"]) == 0

    upright = keypoint_detection.extract_keypoints(astronaut, threshold=0.3)
    target = kp.rescale_keypoints(upright, (512, 512), (64, 64), "pad")
    np.testing.assert_allclose(target[0], (upright[0] + 0.5) / 8 - 0.5, atol=1e-5)  # 512 -> 64
    image, transform = kp.fit_image(photos["a"][2], (64, 64), "pad")
    inputs = inference.build_inputs([image], [kp.transform_keypoints(photos["a"][3], transform)], target)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), inference.generate_image(generator, inputs))
    with pytest.raises(kp.NoPersonFoundError, match=r"portrait\.png: no person found .* threshold 1"):
        run_command(command + ["--keypoint-threshold", "1.0"])
