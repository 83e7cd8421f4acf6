"""Training model tests: which weights each stage changes, test_step, distribution, mixed
precision, resume after a kill, NaN stop, stage 2 from stage-1 weights, configs."""
import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pytest
import tensorflow as tf

from tfrf.training import LossWeights, TrainConfig, TrainingModel
from tfrf.training import runner
from tfrf.training.callbacks import NonFiniteLossError, RaiseAtStep
from tfrf.training import build_networks

from helpers import tiny_train_config

SIZE, K, BATCH = 64, 2, 2  # 64: at 32 px the H/32 maps are 1x1 and instance norm leaves the layers before it no gradient

# The synthetic preset at SIZE, 1/8 width, the gather warp, no VGG weights; keyword arguments override these.
train_config = partial(tiny_train_config, SIZE, name="tiny", batch_size=BATCH, num_sources=K, flow_steps=2,
                       full_steps=2, steps_per_epoch=2, checkpoint_every=2, summary_every=1, learning_rate=1e-3,
                       discriminator_learning_rate=1e-3)


def random_batch(seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    views = rng.integers(0, 18, size=(batch, K + 1))
    poses = np.zeros((batch, K + 1, SIZE, SIZE, 21), np.float32)
    for b in range(batch):
        for i in range(K + 1):
            poses[b, i, :, :, views[b, i]] = 1.0
            poses[b, i, :, :, 18] = 1.0
    images = rng.uniform(-1, 1, (batch, K + 1, SIZE, SIZE, 3)).astype(np.float32)
    return {"source_images": images[:, :K], "source_poses": poses[:, :K], "target_pose": poses[:, K],
            "target_image": images[:, K]}


def dataset_of(batches):
    """One dataset element per given batch."""
    return tf.data.Dataset.from_tensor_slices({key: np.stack([b[key] for b in batches]) for key in batches[0]})


def snapshot(layer):
    return [v.numpy().copy() for v in layer.weights]


def changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after)]


def compiled(stage, config, networks):
    return runner.compile_stage(stage, networks, config)


def fit_one_step(stage, networks, seed):
    """`stage` compiled on `networks` and fitted one step on `random_batch(seed)`: (the model, the
    fit's history, the five parts (flow, source, predictor, discriminator, vgg), the weights of
    each part before and after the step)."""
    model = compiled(stage, train_config(), networks)
    generator = networks.generator
    parts = {"flow": generator.flow_extractor, "source": generator.source_extractor,
             "predictor": generator.predictor, "discriminator": networks.discriminator, "vgg": networks.vgg}
    before = {name: snapshot(layer) for name, layer in parts.items()}
    history = model.fit(dataset_of([random_batch(seed)]).repeat(), steps_per_epoch=1, epochs=1, verbose=0)
    after = {name: snapshot(layer) for name, layer in parts.items()}
    return model, history, parts, before, after


@pytest.fixture(scope="module")
def networks():
    return runner.create_networks(train_config())


def test_flow_stage_changes_only_the_flow_extractor(networks):
    model, history, parts, before, after = fit_one_step("flow", networks, 0)
    generator = networks.generator
    trained = {v.ref() for v in model.generator_variables()}
    flow_weights = generator.flow_extractor.weights
    heads = [name for name, v in zip([v.name for v in flow_weights], flow_weights) if v.ref() not in trained]
    assert heads and all("attention_logit" in name or "occlusion" in name for name in heads)
    flow_changed = dict(zip([v.ref() for v in flow_weights], changed(before["flow"], after["flow"])))
    still = [v.name for v in flow_weights if v.ref() in trained and not flow_changed[v.ref()]]
    assert not still, f"stage 1 trains these but they did not move: {still}"
    assert not any(flow_changed[v.ref()] for v in flow_weights if v.ref() not in trained)
    for name in ("source", "predictor", "discriminator", "vgg"):
        assert not any(changed(before[name], after[name])), name
    assert set(history.history) == {"flow_loss", "correctness_loss", "regularization_loss"}
    assert all(np.isfinite(v[0]) for v in history.history.values())
    assert all(np.isfinite(w).all() for w in after["flow"])
    # L_flow is exactly the weighted sum of its reported terms.
    logs = {name: values[0] for name, values in history.history.items()}
    assert logs["flow_loss"] == pytest.approx(2.5 * logs["correctness_loss"] + 0.001 * logs["regularization_loss"],
                                              rel=1e-5)


@pytest.mark.slow
def test_full_stage_changes_generator_and_discriminator_not_vgg(networks):
    model, history, parts, before, after = fit_one_step("full", networks, 1)
    generator = networks.generator
    trainable = {v.ref() for v in generator.trainable_variables + networks.discriminator.trainable_variables}
    for name in ("flow", "source", "predictor", "discriminator"):
        weights = parts[name].weights
        moved = changed(before[name], after[name])
        still = [v.name for v, m in zip(weights, moved) if v.ref() in trainable and not m]
        assert not still, f"stage 2 trains these but they did not move: {still}"
        if name != "discriminator":  # (spectral norm's power-iteration vectors u, v move every forward pass)
            assert not any(m for v, m in zip(weights, moved) if v.ref() not in trainable), name
        assert all(np.isfinite(w).all() for w in after[name])
    assert not any(changed(before["vgg"], after["vgg"]))
    expected = {"generator_loss", "flow_loss", "correctness_loss", "regularization_loss", "l1_loss",
                "perceptual_loss", "style_loss", "adversarial_loss", "discriminator_loss"}
    assert set(history.history) == expected
    logs = {name: values[0] for name, values in history.history.items()}
    assert all(np.isfinite(v) for v in logs.values())
    total = (logs["flow_loss"] + 2.5 * logs["l1_loss"] + 0.25 * logs["perceptual_loss"] + 250 * logs["style_loss"]
             + 1.0 * logs["adversarial_loss"])
    assert logs["generator_loss"] == pytest.approx(total, rel=1e-4)


def test_test_step_reuses_the_loss_code_and_changes_nothing(networks):
    config = train_config(loss_weights=LossWeights(perceptual=0.0, style=0.0))
    model = compiled("full", config, networks)
    batch = random_batch(2)
    before = snapshot(networks.generator) + snapshot(networks.discriminator)
    results = model.evaluate(dataset_of([batch]), return_dict=True, verbose=0)
    assert not any(changed(before, snapshot(networks.generator) + snapshot(networks.discriminator)))
    inputs = {key: tf.constant(batch[key]) for key in ("source_images", "source_poses", "target_pose")}
    _, values, generated = model.generator_losses(inputs, tf.constant(batch["target_image"]), training=False)
    for name, value in values.items():
        assert results[name] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
    # (graph vs eager float32 rounding through the discriminator's 64x64 convolutions: ~2e-4 relative)
    assert results["discriminator_loss"] == pytest.approx(
        float(model.discriminator_loss(tf.constant(batch["target_image"]), generated, training=False)), rel=1e-3)
    assert "perceptual_loss" not in results and "style_loss" not in results
    # call() is inference only: the generated image.
    np.testing.assert_allclose(model(inputs).numpy(), generated.numpy(), atol=1e-5)


def test_compile_rejects_missing_pieces(networks):
    with pytest.raises(ValueError, match="need VGG features"):
        TrainingModel(networks.generator, networks.discriminator, None, stage="full").compile(
            generator_optimizer=tf.keras.optimizers.Adam(), discriminator_optimizer=tf.keras.optimizers.Adam())
    with pytest.raises(ValueError, match="unknown loss weights"):
        TrainingModel(networks.generator, networks.discriminator, networks.vgg).compile(
            generator_optimizer=tf.keras.optimizers.Adam(), loss_weights={"l2": 1.0})
    with pytest.raises(ValueError, match="needs a discriminator"):
        TrainingModel(networks.generator, None, networks.vgg).compile(generator_optimizer=tf.keras.optimizers.Adam())
    with pytest.raises(ValueError, match="stage must be one of"):
        TrainingModel(networks.generator, stage="both")
    # Stage 1 needs neither a discriminator nor content weights.
    model = TrainingModel(networks.generator, None, networks.vgg, stage="flow")
    model.compile(generator_optimizer=tf.keras.optimizers.Adam())
    assert model.loss_names == ("flow_loss", "correctness_loss", "regularization_loss")


_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from test_training import train_config, random_batch, dataset_of
    from tfrf.training import runner
    from tfrf.training.config import LossWeights
    from tfrf.training.model import TrainingModel

    class Record(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__(); self.logs = []
        def on_train_batch_end(self, batch, logs=None):
            self.logs.append({k: float(v) for k, v in logs.items()})

    batches = [random_batch(seed, batch=4) for seed in (10, 11)]
    out = {}
    for name, strategy in (("default", tf.distribute.get_strategy()),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        config = train_config(batch_size=4, loss_weights=LossWeights(perceptual=0.0, style=0.0))
        networks = runner.create_networks(config, strategy)
        record = {}
        for stage in ("full",):  # stage 2 has both optimisers and every L_flow term too
            with strategy.scope():
                # Plain SGD: unlike Adam, its step is proportional to the gradient, so a wrong
                # replica scaling of the loss would show in the second step's losses.
                model = TrainingModel(networks.generator, networks.discriminator, networks.vgg, stage=stage)
                model.compile(generator_optimizer=tf.keras.optimizers.SGD(0.05),
                              discriminator_optimizer=tf.keras.optimizers.SGD(0.05),
                              loss_weights=config.loss_weights)
            callback = Record()
            model.fit(dataset_of(batches), epochs=1, verbose=0, callbacks=[callback])
            record[stage] = callback.logs
        out[name] = {"replicas": strategy.num_replicas_in_sync, "logs": record}
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_default_strategy(tmp_path):
    """Two logical CPU devices (set before TF initialises them: a subprocess)."""
    script = tmp_path / "distributed.py"
    script.write_text(_DISTRIBUTED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run([sys.executable, str(script), os.path.dirname(__file__)], capture_output=True,
                               text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")][-1]
    result = json.loads(line[len("RESULT"):])
    assert result["default"]["replicas"] == 1 and result["mirrored"]["replicas"] == 2
    for stage in ("full",):
        default, mirrored = result["default"]["logs"][stage], result["mirrored"]["logs"][stage]
        assert len(default) == len(mirrored) == 2
        for name, first in default[0].items():
            assert mirrored[0][name] == pytest.approx(first, rel=1e-4, abs=1e-6), (stage, name)
            # Step 2 depends on step 1's update, which depends on how the replica gradients are
            # scaled and summed: a wrong 1/replicas factor would double or halve the change.
            change = default[1][name] - first
            assert abs(mirrored[1][name] - default[1][name]) <= 0.05 * abs(change) + 1e-6, (stage, name, change)
        assert abs(default[1]["flow_loss"] - default[0]["flow_loss"]) > 1e-5  # the first step moved


@pytest.mark.slow
def test_mixed_precision_step(networks):
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        config = train_config(loss_weights=LossWeights(perceptual=0.0, style=0.0))
        wrapped = runner.compile_stage("full", runner.Networks(networks.generator, networks.discriminator, None),
                                       config.replace(loss_weights=LossWeights(perceptual=0.0, style=0.0,
                                                                               correctness=0.0)))
        assert isinstance(wrapped.generator_optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        assert isinstance(wrapped.discriminator_optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        half = runner.create_networks(config)
        assert half.generator.compute_dtype == "float16" and half.generator.weights[0].dtype == tf.float32
        # A small initial loss scale, so that the first step does not overflow in float16 and
        # get skipped (the dynamic scale starts at 2^15 and halves on every overflow).
        model = TrainingModel(half.generator, half.discriminator, half.vgg, stage="full")
        model.compile(
            generator_optimizer=tf.keras.mixed_precision.LossScaleOptimizer(tf.keras.optimizers.Adam(1e-3),
                                                                            initial_scale=16.0),
            discriminator_optimizer=tf.keras.mixed_precision.LossScaleOptimizer(tf.keras.optimizers.Adam(1e-3),
                                                                                initial_scale=16.0),
            loss_weights=config.loss_weights)
        before = snapshot(half.generator) + snapshot(half.discriminator)
        history = model.fit(dataset_of([random_batch(3)]), epochs=1, verbose=0)
        assert all(np.isfinite(values[0]) for values in history.history.values())
        after = snapshot(half.generator) + snapshot(half.discriminator)
        assert int(model.generator_optimizer.iterations) == 1
        assert sum(changed(before, after)) >= 0.5 * len(after)
        assert all(np.isfinite(w).all() for w in after)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def _fixed_dataset_fn(start_step):
    return dataset_of([random_batch(seed) for seed in range(4)]).repeat()


class CountSteps(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


@pytest.mark.slow
def test_killed_run_resumes_at_the_step_it_reached(tmp_path):
    config = train_config(flow_steps=7, checkpoint_every=2, steps_per_epoch=3,
                          loss_weights=LossWeights(perceptual=0.0, style=0.0))
    out = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        runner.train_stage("flow", runner.create_networks(config), config, _fixed_dataset_fn, out,
                           extra_callbacks=[RaiseAtStep(5)], verbose=0)
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints", "flow")).endswith("ckpt-4")
    saved = tf.train.load_checkpoint(os.path.join(out, "checkpoints", "flow"))
    networks = runner.create_networks(config.replace(seed=99))  # different initial weights
    counter = CountSteps()
    result = runner.train_stage("flow", networks, config, _fixed_dataset_fn, out, extra_callbacks=[counter],
                                verbose=0)
    assert (result["start_step"], result["end_step"]) == (4, 7)
    assert counter.count == 3
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints", "flow")).endswith("ckpt-7")
    # Resumed from the checkpoint's weights: untouched parts equal the saved ones.
    key = [name for name in saved.get_variable_to_shape_map() if "source_extractor" in name and "kernel" in name][0]
    kernel = [v for v in networks.generator.source_extractor.weights if "kernel" in v.name][0]
    assert any(np.array_equal(saved.get_tensor(key), v.numpy()) for v in networks.generator.source_extractor.weights)
    assert kernel.dtype == tf.float32
    # A finished stage does nothing when run again.
    again = runner.train_stage("flow", networks, config, _fixed_dataset_fn, out, verbose=0)
    assert again["start_step"] == again["end_step"] == 7


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    config = train_config(full_steps=6, checkpoint_every=1, steps_per_epoch=6,
                          loss_weights=LossWeights(perceptual=0.0, style=0.0, correctness=0.0))
    batches = [random_batch(seed) for seed in range(6)]
    batches[2]["target_image"][:] = np.nan  # step 3

    def dataset_fn(start_step):
        return dataset_of(batches)

    out = str(tmp_path)
    networks = runner.create_networks(config)
    with pytest.raises(NonFiniteLossError, match=r"step 3: .*l1_loss=nan"):
        runner.train_stage("full", networks, config, dataset_fn, out, verbose=0)
    directory = os.path.join(out, "checkpoints", "full")
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-2")
    reader = tf.train.load_checkpoint(directory)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.isfinite(value).all(), name
    assert "l1_loss=nan" in capsys.readouterr().err


def test_stage_two_starts_from_stage_one_weights(tmp_path):
    config = train_config(flow_steps=1, loss_weights=LossWeights(perceptual=0.0, style=0.0))
    out = str(tmp_path)
    first = runner.create_networks(config)
    runner.train_stage("flow", first, config, _fixed_dataset_fn, out, verbose=0)
    trained = snapshot(first.generator.flow_extractor)
    second = runner.create_networks(config.replace(seed=5))
    assert any(changed(trained, snapshot(second.generator.flow_extractor)))
    result = runner.train_stage("full", second, config, _fixed_dataset_fn, out, steps=0, verbose=0)
    assert result["start_step"] == 0
    assert not any(changed(trained, snapshot(second.generator.flow_extractor)))
    assert os.path.isfile(os.path.join(out, "generator_flow.weights.h5"))


def test_train_config_presets_and_round_trip():
    paper = TrainConfig.preset("deepfashion")
    assert paper.loss_weights == LossWeights(l1=2.5, perceptual=0.25, style=250.0, correctness=2.5,
                                             regularization=0.001, adversarial=1.0)
    assert (paper.learning_rate, paper.beta_1, paper.beta_2, paper.batch_size) == (1e-4, 0.9, 0.999, 5)
    assert TrainConfig.preset("market1501").batch_size == 8
    assert TrainConfig.preset("market1501").model.image_size == (128, 64)
    demo = TrainConfig.preset("demo", flow_steps=3, model={"width_multiplier": 0.5}, loss_weights={"l1": 1.0})
    assert (demo.flow_steps, demo.model.width_multiplier, demo.loss_weights.l1) == (3, 0.5, 1.0)
    assert demo.vgg_weights is None
    assert TrainConfig.from_dict(json.loads(demo.to_json())) == demo
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        demo.replace(stepz=1)
    with pytest.raises(ValueError, match="gan_form"):
        demo.replace(gan_form="wgan")
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainConfig.preset("imagenet")


def test_build_networks_picks_vgg_layers():
    config = train_config().model
    _, _, vgg = build_networks(config, None, LossWeights(perceptual=0.0, style=0.0))
    assert vgg.layer_names == ("relu3_1", "relu4_1")
    _, _, none = build_networks(config, None, LossWeights(perceptual=0.0, style=0.0, correctness=0.0))
    assert none is None
