"""GFLA through the training and downstream code of tfrf: presets, `tfrf train --architecture gfla`
(both stages, the built-in chairs and DeepFashion's dummy data), which variables each stage's
step moves, export --run (SavedModel and TFLite K = 1 equal to the Keras model on the trained
weights), generate --run with one source, summary --run (FLOPs with the transposed convolutions),
and the internals figure of a GFLA generator."""
import argparse
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfrf import runs
from tfrf.cli import main
from tfrf.training import TrainConfig, runner

from helpers import random_inputs, save_photos_and_poses

DATASETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
SAVED_MODEL_TOLERANCE = 1e-4  # as tests/test_export_saved_model.py
TFLITE_TOLERANCE = 1e-3  # as tests/test_export_tflite.py
TRAIN_FLAGS = ["--architecture", "gfla", "--steps", "2", "--batch-size", "2", "--width-multiplier", "0.125",
               "--vgg-weights", "none", "--checkpoint-every", "1", "--steps-per-epoch", "2", "--quiet"]


# ----------------------------------------------------------------------------- configs


def test_gfla_presets_carry_gflas_training_settings():
    config = TrainConfig.preset("gfla_deepfashion")
    assert config.model.architecture == "gfla" and config.model.name == "deepfashion"
    flow, full = config.stage_loss_weights("flow"), config.stage_loss_weights("full")
    assert (flow.correctness, flow.regularization) == (20.0, 0.01)
    assert (full.l1, full.correctness, full.perceptual, full.style, full.regularization, full.adversarial) == (
        5.0, 5.0, 0.5, 500.0, 0.0025, 2.0)
    assert (config.gan_form, config.beta_1, config.beta_2) == ("lsgan", 0.0, 0.999)
    assert (config.learning_rate, config.discriminator_learning_rate, config.batch_size) == (1e-4, 1e-5, 8)
    assert (config.num_sources, config.eval_ks, config.discriminator) == (1, (1,), "gfla")
    market = TrainConfig.preset("gfla_market1501")
    assert market.model.gfla_kernel_sizes == {"h4": 3} and market.discriminator_blocks == 3
    assert TrainConfig.preset("gfla_shapenet_chairs").model.gfla_view_synthesis
    # The rf presets keep one set of weights for both stages.
    rf = TrainConfig.preset("deepfashion")
    assert rf.stage_loss_weights("flow") == rf.stage_loss_weights("full") == rf.loss_weights
    # A resumed run's config.json round-trips.
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="at most 1 source"):
        TrainConfig.preset("gfla_deepfashion", num_sources=2)


@pytest.mark.parametrize("flags, preset, architecture", [
    (["--architecture", "gfla"], "gfla_synthetic", "gfla"),  # the built-in chairs' GFLA preset
    (["--preset", "deepfashion", "--architecture", "gfla"], "gfla_deepfashion", "gfla"),
    (["--preset", "voxceleb2", "--architecture", "gfla"], "voxceleb2", "gfla"),  # no GFLA preset: override
    (["--preset", "gfla_market1501"], "gfla_market1501", "gfla"),
])
def test_train_architecture_flag_resolves_the_preset(flags, preset, architecture, capsys):
    assert main(["train", *flags, "--dry-run"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["name"], config["model"]["architecture"], config["num_sources"]) == (preset, architecture, 1)


def test_train_gfla_with_two_sources_is_one_line_error(capsys, tmp_path):
    status = main(["train", "--architecture", "gfla", "--k", "2", "--dry-run"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and "at most 1 source" in error


# ----------------------------------------------------------------------------- one step per stage


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def moved(before, variables):
    return [not np.array_equal(a, v.numpy()) for a, v in zip(before, variables)]


def fit_one_step(model, dataset, variables, trained):
    """Fits `model` one step on `dataset`: (its history, the names of the `trained` variables (a
    set of refs) that did not move, the names of the other `variables` that moved)."""
    before = snapshot(variables)
    history = model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    changes = moved(before, variables)
    still = [v.name for v, m in zip(variables, changes) if v.ref() in trained and not m]
    others = [v.name for v, m in zip(variables, changes) if v.ref() not in trained and m]
    return history, still, others


def people_batch(config, seed=0, batch=1):
    inputs = random_inputs(config, batch=batch, sources=1, seed=seed)
    target = np.random.default_rng(seed + 1).uniform(-1, 1, (batch, config.image_height, config.image_width, 3))
    return {**inputs, "target_image": target.astype(np.float32)}


@pytest.fixture(scope="module")
def gfla_networks():
    # GFLA's pose-transfer model at 64 px (at 32 px the H/32 bottleneck is 1 x 1 and instance
    # norm zeroes its gradient; likewise the view-synthesis target net's first block, which sees
    # a pose vector tiled over the map, so the step test takes the pose-transfer variant).
    # Perceptual and style terms off: on a random VGG they add time and reach no other variable.
    config = TrainConfig.preset("gfla_deepfashion", model={"image_height": 64, "image_width": 64,
                                                           "width_multiplier": 0.125},
                                loss_weights={"perceptual": 0.0, "style": 0.0}, vgg_weights=None, batch_size=1,
                                learning_rate=1e-3, discriminator_learning_rate=1e-3)
    return config, runner.create_networks(config)


def test_each_gfla_stage_moves_every_variable_it_trains_and_no_other(gfla_networks):
    config, networks = gfla_networks
    generator, discriminator = networks.generator, networks.discriminator
    dataset = tf.data.Dataset.from_tensors(people_batch(config.model)).repeat()

    # Stage 1: the flow network without its mask heads. (Eager steps: the very train_step, without
    # tracing it, which takes longer than a few steps.)
    model = runner.compile_stage("flow", networks, config)
    model.run_eagerly = True
    flow_variables = {v.ref() for v in generator.flow_extractor.flow_variables()}
    masks = [v for head in generator.flow_extractor.mask_heads.values() for v in head.trainable_variables]
    assert masks and not flow_variables & {v.ref() for v in masks}
    assert flow_variables | {v.ref() for v in masks} == {v.ref() for v in generator.flow_extractor.trainable_variables}
    everything = generator.weights + discriminator.weights
    history, still, others = fit_one_step(model, dataset, everything, flow_variables)
    assert not still, f"stage 1 trains these but they did not move: {still}"
    assert not others, f"stage 1 moved variables it does not train: {others}"
    assert set(history.history) == {"flow_loss", "correctness_loss", "regularization_loss"}
    # GFLA's flow-stage weights: flow_loss = 20 * correctness + 0.01 * regularisation.
    logs = {name: values[-1] for name, values in history.history.items()}
    assert logs["flow_loss"] == pytest.approx(20 * logs["correctness_loss"] + 0.01 * logs["regularization_loss"],
                                              rel=1e-5)

    # Stage 2: every generator and discriminator variable; only the discriminator's spectral-norm
    # power-iteration vectors (not trainable) move besides.
    model = runner.compile_stage("full", networks, config)
    model.run_eagerly = True
    assert model.uses_discriminator and model.gan_form == "lsgan"
    trainable = {v.ref() for v in generator.trainable_variables + discriminator.trainable_variables}
    history, still, others = fit_one_step(model, dataset, everything, trainable)
    assert not still, f"stage 2 trains these but they did not move: {still}"
    assert all("/u:" in name or "/v:" in name for name in others), others
    assert all(np.isfinite(v.numpy()).all() for v in everything)
    assert {"generator_loss", "l1_loss", "adversarial_loss", "discriminator_loss"} <= set(history.history)


def test_flow_extractors_name_their_levels_windows_and_variables(gfla_networks):
    _, networks = gfla_networks
    extractor = networks.generator.flow_extractor
    assert tuple(extractor.levels) == ("h8", "h4") and extractor.affine_patch_sizes == {"h8": 3, "h4": 5}
    from tfrf.models import Generator
    from tfrf.config import ModelConfig

    rf = Generator(ModelConfig.preset("synthetic", width_multiplier=0.125))
    rf(rf.dummy_inputs(1, 1))
    heads = {v.ref() for h in rf.flow_extractor.heads.values() for layer in (h.attention, h.occlusion)
             for v in layer.trainable_variables}
    assert len(heads) == 8  # kernel and bias of two heads at two levels
    assert {v.ref() for v in rf.flow_extractor.flow_variables()} == (
        {v.ref() for v in rf.flow_extractor.trainable_variables} - heads)
    assert rf.flow_extractor.affine_patch_sizes == {"h8": 3, "h4": 5}


# ----------------------------------------------------------------------------- through the CLI


@pytest.mark.slow
def test_train_gfla_on_the_builtin_chairs_and_summarise_the_run(tmp_path, capsys):
    run = str(tmp_path / "chairs")
    assert main(["train", "--data-dir", "synthetic", *TRAIN_FLAGS, "--image-size", "64", "64",
                 "--train-objects", "2", "--test-objects", "1", "--cache-dir", str(tmp_path / "cache"),
                 "--out", run]) == 0
    out = capsys.readouterr().out
    assert "stage flow: steps 0 -> 2" in out and "stage full: steps 0 -> 2" in out
    with open(os.path.join(run, "config.json")) as stream:
        saved = json.load(stream)
    assert saved["name"] == "gfla_synthetic" and saved["model"]["architecture"] == "gfla"
    for stage in ("flow", "full"):
        assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints", stage)).endswith("ckpt-2")
        assert os.listdir(os.path.join(run, "logs", stage))
    generator = runs.load_generator(*runs.resolve_model(argparse.Namespace(run=run)))
    assert type(generator).__name__ == "GFLAGenerator"

    assert main(["summary", "--run", run, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["architecture"] == "gfla"
    assert summary["parameters"] == sum(int(np.prod(v.shape)) for v in generator.weights)
    assert summary["flops_per_image"]["1"] > 0
    assert main(["summary", "--run", run, "--k", "2"]) == 2
    assert "at most 1 source" in capsys.readouterr().err


def test_transposed_convolution_flops_are_counted():
    from tfrf.benchmarks.flops import transposed_convolution_flops

    layer = tf.keras.layers.Conv2DTranspose(7, 3, strides=2, padding="valid")
    function = tf.function(lambda x: layer(x)).get_concrete_function(tf.TensorSpec([2, 4, 5, 3], tf.float32))
    # Every input value (2*4*5*3) meets a 3x3x7 kernel slice: one multiply and one add each.
    assert transposed_convolution_flops(function.graph) == 2 * (2 * 4 * 5 * 3) * (3 * 3 * 7)


# ----------------------------------------------------------------------------- people: train, export, generate


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    from tfrf.datasets.deepfashion import DeepFashionInShop

    root = tmp_path_factory.mktemp("gfla_people")
    builder = DeepFashionInShop(data_dir=str(root / "tfds"))
    manual = os.path.join(DATASETS_DIR, "deepfashion", "dummy_data")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    run = str(root / "run")
    assert main(["train", "--data-dir", os.fspath(builder.data_dir), *TRAIN_FLAGS, "--image-size", "64", "64",
                 "--out", run]) == 0
    return {"builder": builder, "run": run, "root": root}


@pytest.mark.slow
def test_people_run_is_gfla_deepfashion_with_both_stages(people):
    with open(os.path.join(people["run"], "config.json")) as stream:
        saved = json.load(stream)
    assert saved["name"] == "gfla_deepfashion" and saved["num_sources"] == 1
    assert saved["model"]["image_height"] == 64 and saved["model"]["gfla_view_synthesis"] is False
    assert saved["flow_loss_weights"]["correctness"] == 20.0 and saved["loss_weights"]["style"] == 500.0
    assert runs.latest_run_weights(people["run"]).endswith(os.path.join("full", "ckpt-2"))


@pytest.mark.slow
def test_people_run_exports_saved_model_and_tflite_equal_to_keras(people, tmp_path):
    from tfrf.export import tflite as tflite_lib

    run = people["run"]
    generator = runs.load_generator(*runs.resolve_model(argparse.Namespace(run=run)))
    inputs = random_inputs(generator.config, batch=1, sources=1, seed=5)
    expected = generator(inputs).numpy()
    assert np.abs(expected).max() > 0

    model_base = str(tmp_path / "models" / "gfla")
    assert main(["export", "saved-model", "--run", run, "--out", model_base]) == 0
    loaded = tf.saved_model.load(os.path.join(model_base, "1"))
    served = loaded.signatures["serving_default"](**{key: tf.constant(value) for key, value in inputs.items()})
    np.testing.assert_allclose(served["image"].numpy(), expected, atol=SAVED_MODEL_TOLERANCE, rtol=0)

    path = str(tmp_path / "gfla.tflite")
    assert main(["export", "tflite", "--run", run, "--k", "1", "--out", path]) == 0
    interpreter = tflite_lib.load_interpreter(path)
    encoded = interpreter.get_signature_runner("encode_sources")(source_images=inputs["source_images"])
    image = interpreter.get_signature_runner("render")(**inputs, **encoded)["image"]
    np.testing.assert_allclose(image, expected, atol=TFLITE_TOLERANCE, rtol=0)


@pytest.mark.slow
def test_people_run_tflite_with_two_sources_fails_early(people, tmp_path, capsys):
    out = str(tmp_path / "two.tflite")
    status = main(["export", "tflite", "--run", people["run"], "--k", "2", "--out", out])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and "--k 2" in error and "at most 1 source" in error
    assert not os.path.exists(out)


@pytest.mark.slow
def test_people_run_generates_from_one_photo(people, tmp_path):
    from PIL import Image

    from tfrf import inference

    source = people["builder"].as_data_source(split="test")
    photos, poses = save_photos_and_poses(source, range(2), tmp_path)
    out = str(tmp_path / "generated.png")
    assert main(["generate", "--run", people["run"], "--sources", photos[0], "--source-poses", poses[0],
                 "--target-pose", poses[1], "--out", out]) == 0
    written = np.asarray(Image.open(out))
    config, weights = runs.read_model_config(people["run"]), runs.latest_run_weights(people["run"])
    loaded, points = inference.load_source(photos[0], config.image_size, poses[0])
    inputs = inference.build_inputs([loaded], [points], inference.load_pose(poses[1], config.image_size))
    np.testing.assert_array_equal(written, inference.generate_image(runs.load_generator(config, weights), inputs))

    # Person animation with the one source: two driving frames, the second without a person.
    from tfrf.animation.person import save_driving_poses

    driving = str(tmp_path / "dance.json")
    save_driving_poses(driving, [np.asarray(source[1]["keypoints"]), None], 256, 256)
    gif = str(tmp_path / "dance.gif")
    assert main(["animate", "--run", people["run"], "--sources", photos[0], "--source-poses", poses[0],
                 "--driving", driving, "--out", gif, "--no-progress"]) == 0
    with Image.open(gif) as animation:
        assert animation.size == (config.image_width, config.image_height)


# ----------------------------------------------------------------------------- runs and figures


def test_runs_architecture_flag_overrides_a_preset_only(tmp_path):
    namespace = argparse.Namespace(run=None, weights=None, config=None, preset="market1501", untrained=True,
                                   architecture="gfla")
    config, weights = runs.resolve_model(namespace)
    assert config.architecture == "gfla" and config.name == "market1501" and weights is None
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"name": "x", "image_height": 64, "image_width": 64}))
    namespace = argparse.Namespace(run=None, weights=None, config=str(path), preset=None, untrained=True,
                                   architecture="gfla")
    with pytest.raises(ValueError, match="contradicts"):
        runs.resolve_model(namespace)


def test_attention_offset_against_a_loop():
    from tfrf.visualize import attention_offset

    rng = np.random.default_rng(0)
    for k in (3, 5):
        coefficients = rng.dirichlet(np.ones(k * k), size=(4, 6)).astype(np.float32)
        expected = np.zeros((4, 6, 2), np.float32)
        for y in range(4):
            for x in range(6):
                for i in range(k):
                    for j in range(k):
                        expected[y, x] += coefficients[y, x, i * k + j] * np.array([j - k // 2, i - k // 2])
        np.testing.assert_allclose(attention_offset(coefficients), expected, atol=1e-5)
    one_hot = np.zeros(9, np.float32)
    one_hot[2] = 1.0  # row 0, column 2: offset (+1, -1)
    np.testing.assert_allclose(attention_offset(one_hot), [1.0, -1.0])


@pytest.mark.parametrize("preset, levels", [("synthetic", 2), ("market1501", 1)])
def test_internals_figure_shows_the_levels_gfla_has(preset, levels):
    from tfrf import visualize
    from tfrf.config import ModelConfig
    from tfrf.models import build_generator

    config = ModelConfig.preset(preset, architecture="gfla", width_multiplier=0.125)
    generator = build_generator(config)
    inputs = random_inputs(config, batch=1, sources=1, seed=1)
    outputs = generator(inputs, return_intermediates=True)
    examples = {**inputs, "target_image": np.zeros((1, config.image_height, config.image_width, 3), np.float32)}
    figure = visualize.internals(examples, outputs, scale=1)
    tile = config.image_height
    # source | (flow, mask, attention offset) per level | generated | truth; then the key below
    assert figure.shape[1:] == ((1 + 3 * levels + 2) * tile, 3) and figure.dtype == np.uint8
    key = figure[14 + tile:]
    assert key.shape[0] >= tile and (key[:, tile + 8:] < 128).any()  # wheel and text
    # The mask column shows GFLA's m (white = the attention output is used).
    mask = np.asarray(outputs[generator.levels[0]]["masks"])[0, 0, ..., 0]
    column = figure[14:14 + tile, 2 * tile:3 * tile, 0]
    rows = (np.arange(tile) * mask.shape[0] // tile)
    cols = (np.arange(tile) * mask.shape[1] // tile)
    np.testing.assert_array_equal(column, visualize.to_uint8(mask * 2 - 1)[rows][:, cols])
