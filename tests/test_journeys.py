"""What a user runs, end to end, on every dataset's dummy data in its published raw layout:

raw files -> the TFDS builder's download_and_prepare -> `tfrf train --data-dir` (both stages, a
few steps, narrow width) -> `tfrf export saved-model --run` -> `tfrf serve` (a real server process)
-> the client's Predict equals the in-process generator on a fixed test tuple (1e-4); the
`photos` signature over REST (the tuple's stored photos as PNG, their raw poses) gives what the
exported SavedModel gives in-process, and what gRPC gives.
VoxCeleb2 also goes `tfrf export tflite --run` -> `tfrf animate` with landmarks.

Every command goes through `tfrf.cli.main` with the arguments a person would type; only the
server runs in its own process.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfrf import runs
from tfrf.cli import main
from tfrf.data.pipeline import make_dataset, table_from_tfds
from tfrf.export.model import export_config

from helpers import free_port, save_photos_and_poses

# Trains, exports and serves (a `tfrf serve` subprocess) on every dataset: minutes.
pytestmark = pytest.mark.slow

DATASETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
K = 2
TRAIN_FLAGS = ["--k", str(K), "--steps", "2", "--batch-size", "2", "--width-multiplier", "0.125",
               "--vgg-weights", "none", "--checkpoint-every", "1", "--steps-per-epoch", "2", "--quiet"]


def _deepfashion(root):
    from tfrf.datasets.deepfashion import DeepFashionInShop

    return DeepFashionInShop(data_dir=root), os.path.join(DATASETS_DIR, "deepfashion", "dummy_data"), (64, 64)


def _market(root):
    from tfrf.datasets.market1501 import Market1501

    return Market1501(data_dir=root), os.path.join(DATASETS_DIR, "market1501", "dummy_data"), (64, 32)


def _shapenet(root):
    from tfrf.datasets import view_common
    from tfrf.datasets.shapenet_chairs import ShapenetChairs, dummy_data_generation

    manual = os.path.join(root, "raw")
    dummy_data_generation.write_dummy_data(manual, {"train": ["aaa1", "bbb2"], "test": ["ccc3"]}, image_size=16)
    config = view_common.ViewConfig(name="journey", image_size=32, test_tuple_ks=(K,))
    return ShapenetChairs(config=config, data_dir=root), manual, (32, 32)


def _kitti(root):
    from tfrf.datasets.kitti import KittiConfig, KittiOdometry
    from tfrf.datasets.kitti import dummy_data_generation

    manual = os.path.join(root, "raw")
    dummy_data_generation.write_dummy_hdf5(manual, {0: 30, 3: 20}, ["00_000003", "03_000012"], image_size=16)
    config = KittiConfig(name="journey", layout="hdf5", image_size=32, test_tuple_ks=(K,), train_sequences=(0,),
                         test_sequences=(3,))
    return KittiOdometry(config=config, data_dir=root), manual, (32, 32)


def _voxceleb2(root):
    from tfrf.datasets.voxceleb2 import Voxceleb2, VoxCelebConfig
    from tfrf.datasets.voxceleb2 import dummy_data_generation

    manual = os.path.join(root, "raw")
    dev, test = os.path.join("dev", "mp4"), os.path.join("test", "mp4")
    dummy_data_generation.write_clip(manual, dev, "id00001", "vidAAAAAAA", "00001", 6, seed=1)
    dummy_data_generation.write_clip(manual, dev, "id00002", "vidBBBBBBB", "00001", 6, seed=2)
    dummy_data_generation.write_clip(manual, test, "id00003", "vidCCCCCCC", "00001", 6, seed=3)
    config = VoxCelebConfig(name="journey", image_size=32, test_tuple_ks=(K,), landmark_source="precomputed")
    return Voxceleb2(config=config, data_dir=root), manual, (32, 32)


DATASETS = {
    "deepfashion": _deepfashion,
    "market1501": _market,
    "shapenet_chairs": _shapenet,
    "kitti": _kitti,
    "voxceleb2": _voxceleb2,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("journeys")
    return {"root": root, "models": str(root / "models"), "journeys": {}}


def journey(workspace, name):
    """Prepare, train and export `name` once per module; returns what the tests compare."""
    if name in workspace["journeys"]:
        return workspace["journeys"][name]
    root = workspace["root"] / name
    builder, manual, size = DATASETS[name](str(root / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    version_folder = os.fspath(builder.data_dir)
    run = str(root / "run")
    if name == "market1501":  # the other form: a TFDS data_dir and the dataset's name
        data = ["--data-dir", str(root / "tfds"), "--dataset", f"{builder.name}/{builder.builder_config.name}"]
    else:
        data = ["--data-dir", version_folder]
    assert main(["train", *data, *TRAIN_FLAGS, "--image-size", *map(str, size), "--out", run]) == 0
    model_base = os.path.join(workspace["models"], name)
    assert main(["export", "saved-model", "--run", run, "--out", model_base]) == 0
    result = {"builder": builder, "run": run, "model_base": model_base, "size": size,
              "version_folder": version_folder}
    workspace["journeys"][name] = result
    return result


@pytest.fixture(scope="module")
def server(workspace):
    """`tfrf serve MODELS` in its own process, over the models of every journey."""
    for name in sorted(DATASETS):
        journey(workspace, name)
    port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrf", "serve", workspace["models"], "--port", str(port),
         "--rest-port", str(rest_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield {"address": f"127.0.0.1:{port}", "rest": f"http://127.0.0.1:{rest_port}", "process": process}
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def _served_prediction(address, name, inputs, process, deadline_seconds=90.0):
    from tfrf.serving import Client, ModelNotFoundError, ServerUnavailableError

    deadline = time.monotonic() + deadline_seconds
    while True:
        assert process.poll() is None, f"tfrf serve exited: {process.stdout.read()}"
        try:
            with Client(address, name, timeout=60) as client:
                return client.generate(inputs["source_images"], inputs["source_poses"], inputs["target_pose"])
        except (ModelNotFoundError, ServerUnavailableError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _test_tuple_inputs(result, config):
    builder = tfds.builder_from_directory(result["version_folder"])  # read-only: no builder class
    table = table_from_tfds(builder, "test")
    tuples = np.load(os.path.join(result["version_folder"], f"test_tuples_k{K}.npy"))
    dataset = make_dataset(table, K, batch_size=1, training=False, tuples=tuples[:1], image_size=config.image_size)
    batch = next(iter(dataset))
    return {key: value.numpy() for key, value in batch.items() if key != "target_image"}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_raw_files_to_served_prediction(workspace, server, name):
    result = journey(workspace, name)
    config = runs.read_model_config(result["run"])
    assert config.image_size == result["size"] and config.width_multiplier == 0.125
    assert os.path.isfile(os.path.join(result["run"], "generator_full.weights.h5"))
    inputs = _test_tuple_inputs(result, config)
    generator = runs.load_generator(export_config(config), runs.latest_run_weights(result["run"]))
    expected = generator(inputs, training=False).numpy()
    served = _served_prediction(server["address"], name, inputs, server["process"])
    assert served.shape == (1, *result["size"], 3)
    np.testing.assert_allclose(served, expected, atol=1e-4, rtol=0)
    # The trained weights are what was served: they differ from a fresh initialisation.
    fresh = runs.load_generator(export_config(config), None)(inputs, training=False).numpy()
    assert np.abs(fresh - expected).max() > 1e-3


def _photos_request(result, name, size):
    """The fixed test tuple's stored photos (PNG) and raw poses: keypoints, view bins and cameras
    as the table holds them, VoxCeleb2's landmarks from its `landmarks` feature; the target's
    keypoints or landmarks moved into output pixels."""
    import io

    from PIL import Image

    from tfrf.pose.keypoints import rescale_keypoints

    builder = tfds.builder_from_directory(result["version_folder"])
    table = table_from_tfds(builder, "test", **({"pose_key": "landmarks"} if name == "voxceleb2" else {}))
    row = np.load(os.path.join(result["version_folder"], f"test_tuples_k{K}.npy"))[0]

    def item(values, index):
        return np.asarray(values(int(index)) if callable(values) else values[int(index)])

    def png(index):
        stream = io.BytesIO()
        Image.fromarray(item(table.images, index)).save(stream, "PNG")
        return stream.getvalue()

    stored = item(table.images, row[K]).shape[:2]
    target = item(table.poses, row[K]).astype(np.float32)
    if target.shape == (18, 2):
        target = rescale_keypoints(target, stored, size, "pad")
    elif target.shape == (68, 2):
        target = target * np.array([size[1] / stored[1], size[0] / stored[0]], np.float32)
    poses = np.stack([item(table.poses, index) for index in row[:K]]).astype(np.float32)
    return [[png(index) for index in row[:K]]], poses[None], target[None]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_photos_signature_over_rest(workspace, server, name):
    import tensorflow as tf

    from tfrf.serving import Client, ModelNotFoundError, ServerUnavailableError

    result = journey(workspace, name)
    photos, source_poses, target_pose = _photos_request(result, name, result["size"])
    deadline = time.monotonic() + 90.0
    while True:
        assert server["process"].poll() is None, f"tfrf serve exited: {server['process'].stdout.read()}"
        try:
            with Client(server["rest"], name, timeout=60) as client:
                rest = client.photos(photos, source_poses, target_pose)
            break
        except (ModelNotFoundError, ServerUnavailableError):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    with Client(server["address"], name, timeout=60) as client:
        grpc = client.photos(photos, source_poses, target_pose)
    versions = sorted(int(entry) for entry in os.listdir(result["model_base"]) if entry.isdigit())
    signature = tf.saved_model.load(os.path.join(result["model_base"], str(versions[-1]))).signatures["photos"]
    local = signature(source_images=tf.constant(np.array(photos, dtype=object)),
                      source_poses=tf.constant(source_poses), target_pose=tf.constant(target_pose))
    assert rest["image"].shape == (1, *result["size"], 3) and rest["image"].dtype == np.uint8
    assert rest["coverage"].shape == (1, *result["size"], K + 1)
    np.testing.assert_array_equal(rest["image"], grpc["image"])
    np.testing.assert_array_equal(rest["image"], local["image"].numpy())
    np.testing.assert_allclose(rest["coverage"], local["coverage"].numpy(), atol=1e-6)
    np.testing.assert_allclose(rest["coverage"].sum(-1), 1.0, atol=1e-5)


def test_voxceleb2_tflite_from_the_run_animates_landmarks(workspace, tmp_path, capsys):
    from PIL import Image

    from tfrf.datasets.voxceleb2 import dummy_data_generation

    result = journey(workspace, "voxceleb2")
    model = str(tmp_path / "face.tflite")
    assert main(["export", "tflite", "--run", result["run"], "--k", str(K), "--out", model]) == 0
    frames, points = dummy_data_generation.face_frames(K + 4, height=64, width=64, seed=7)
    sources, landmark_files = [], []
    for index in range(K):
        sources.append(str(tmp_path / f"source{index}.png"))
        Image.fromarray(frames[index]).save(sources[-1])
        landmark_files.append(str(tmp_path / f"source{index}.npy"))
        np.save(landmark_files[-1], points[index])
    driving = str(tmp_path / "driving.npy")
    np.save(driving, points[K:])
    out = str(tmp_path / "face.gif")
    capsys.readouterr()
    assert main(["animate", "--model", model, "--sources", *sources, "--source-landmarks", *landmark_files,
                 "--driving", driving, "--out", out, "--no-progress"]) == 0
    assert "4 frames" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.n_frames == 4


def test_train_refuses_data_whose_poses_do_not_fit_the_preset(workspace, capsys):
    result = journey(workspace, "kitti")
    status = main(["train", "--data-dir", result["version_folder"], "--preset", "deepfashion", *TRAIN_FLAGS,
                   "--out", str(workspace["root"] / "wrong")])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "6-channel poses (camera6)" in error and "expects 18" in error
    assert not os.path.exists(workspace["root"] / "wrong" / "checkpoints")
    shutil.rmtree(workspace["root"] / "wrong", ignore_errors=True)


def test_deepfashion_generate_and_body_animation_from_the_run(workspace, tmp_path, capsys):
    from PIL import Image

    from tfrf import inference
    from tfrf.animation.person import save_driving_poses

    result = journey(workspace, "deepfashion")
    source = result["builder"].as_data_source(split="test")
    tuple_row = np.load(os.path.join(result["version_folder"], f"test_tuples_k{K}.npy"))[0]
    photos, poses = save_photos_and_poses(source, tuple_row, tmp_path)
    out = str(tmp_path / "generated.png")
    assert main(["generate", "--run", result["run"], "--sources", *photos[:K], "--source-poses", *poses[:K],
                 "--target-pose", poses[K], "--out", out]) == 0
    written = np.asarray(Image.open(out))
    assert written.shape == (*result["size"], 3)
    config, weights = runs.read_model_config(result["run"]), runs.latest_run_weights(result["run"])
    sources = [inference.load_source(photo, config.image_size, pose) for photo, pose in zip(photos[:K], poses[:K])]
    inputs = inference.build_inputs([image for image, _ in sources], [points for _, points in sources],
                                   inference.load_pose(poses[K], config.image_size))
    np.testing.assert_array_equal(written, inference.generate_image(runs.load_generator(config, weights), inputs))

    # Body animation: three driving frames, the middle one without a person.
    target = np.asarray(source[int(tuple_row[K])]["keypoints"])
    frames = [target, None, target + [4.0, 0.0]]
    driving = str(tmp_path / "dance.json")
    save_driving_poses(driving, frames, 256, 256)
    video = str(tmp_path / "dance.mp4")  # (a GIF merges identical consecutive frames into one)
    capsys.readouterr()
    assert main(["animate", "--run", result["run"], "--sources", *photos[:K], "--source-poses", *poses[:K],
                 "--driving", driving, "--out", video, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "3 frames" in printed and "1 driving frames without a person" in printed
    import imageio.v2 as imageio

    with imageio.get_reader(video) as reader:
        decoded = [frame for frame in reader]
    assert len(decoded) == 3 and decoded[0].shape == (*result["size"], 3)
