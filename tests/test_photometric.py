"""The photometric warping loss: zero where a source warped by its flow is the target, the
minimum over sources, and a gradient that moves a flow toward the true shift."""
import numpy as np
import tensorflow as tf

from tfrf.losses import photometric_loss
from tfrf.training.config import LossWeights


def smooth_image(seed, size=16):
    """Smooth colours inside, zero in a 3-pixel border (what the warp reads outside the map)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32)
    inside = tf.image.resize(small, (size - 6, size - 6), method="bicubic")
    return tf.pad(inside, [[0, 0], [3, 3], [3, 3], [0, 0]])


def shifted(image, dx):
    """The image moved right by `dx` whole pixels: target pixel x shows source x - dx."""
    return tf.concat([tf.zeros_like(image[:, :, :dx]), image[:, :, :-dx]], axis=2)


def test_zero_for_the_true_flow_and_positive_for_zero_flow():
    source = smooth_image(0)
    target = shifted(source, 2)
    flow = np.zeros((1, 1, 16, 16, 2), np.float32)
    flow[..., 0] = -2.0  # target (x, y) reads the source at (x - 2, y)
    sources = source[:, None]
    exact = float(photometric_loss(sources, target, flow))
    still = float(photometric_loss(sources, target, np.zeros_like(flow)))
    assert exact < 1e-5 and still > 0.05, (exact, still)


def test_minimum_over_sources_and_resize_to_the_flow_map():
    target = smooth_image(1)
    other = smooth_image(2)
    zero = np.zeros((1, 2, 4, 4, 2), np.float32)  # an H/4 flow of a 16 x 16 image
    both = float(photometric_loss(tf.stack([other, target], axis=1), target, zero))
    assert both < 1e-6
    alone = float(photometric_loss(other[:, None], target, zero[:, :1]))
    small = tf.image.resize(target, (4, 4), method="area"), tf.image.resize(other, (4, 4), method="area")
    np.testing.assert_allclose(alone, float(tf.reduce_mean(tf.abs(small[0] - small[1]))), rtol=1e-5)


def test_gradient_moves_the_flow_toward_the_shift():
    source = smooth_image(3)
    target = shifted(source, 1)
    flow = tf.Variable(np.zeros((1, 1, 16, 16, 2), np.float32))
    with tf.GradientTape() as tape:
        loss = photometric_loss(source[:, None], target, flow)
    gradient = tape.gradient(loss, flow).numpy()
    assert gradient[..., 0].sum() > 0  # descending lowers dx toward -1


def test_off_by_default():
    assert LossWeights().photometric == 0.0


def test_scales_add_the_loss_of_the_pooled_flow_on_coarser_maps():
    source = smooth_image(4)
    target = shifted(source, 2)
    flow = np.zeros((1, 1, 16, 16, 2), np.float32)
    flow[..., 0] = -2.0
    sources = source[:, None]
    pooled = np.full((1, 1, 8, 8, 2), 0.0, np.float32)
    pooled[..., 0] = -1.0  # the same shift in pixels of the 8 x 8 map
    expected = float(photometric_loss(sources, target, flow)) + float(photometric_loss(sources, target, pooled))
    np.testing.assert_allclose(float(photometric_loss(sources, target, flow, scales=2)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(photometric_loss(sources, target, flow, scales=1)),
                               float(photometric_loss(sources, target, flow)), rtol=1e-6)


def test_scales_pull_a_flow_four_pixels_off_harder():
    """A 4-px shift read with zero flow: the bilinear gradient at the flow's own map sees only the
    neighbouring pixels; with scales=3 the 2x and 4x coarser maps add a pull toward the shift
    (measured: 0.029 at scales=1, 0.089 at scales=3)."""
    source = smooth_image(5, size=32)
    target = shifted(source, 4)
    flow = tf.Variable(np.zeros((1, 1, 32, 32, 2), np.float32))
    pulls = []
    for scales in (1, 3):
        with tf.GradientTape() as tape:
            loss = photometric_loss(source[:, None], target, flow, scales=scales)
        pulls.append(float(tape.gradient(loss, flow).numpy()[..., 0].sum()))
    assert pulls[1] > 0 and pulls[1] > 2 * max(pulls[0], 0.0), pulls


def test_scales_must_be_a_positive_integer():
    source = smooth_image(6)
    for bad in (0, 1.5):
        try:
            photometric_loss(source[:, None], source, np.zeros((1, 1, 16, 16, 2), np.float32), scales=bad)
        except ValueError as error:
            assert "scales" in str(error)
        else:
            raise AssertionError(f"scales={bad} accepted")


def test_train_config_takes_the_pyramid_to_the_flow_losses():
    from tfrf.training import runner
    from tfrf.training.config import TrainConfig

    try:
        TrainConfig.preset("demo", photometric_scales=0)
    except ValueError as error:
        assert "photometric_scales" in str(error)
    else:
        raise AssertionError("photometric_scales=0 accepted")
    config = TrainConfig.preset("demo", photometric_scales=2,
                                loss_weights={"photometric": 1.0, "correctness": 0.0, "regularization": 0.0})
    assert TrainConfig.from_dict(config.to_dict()).photometric_scales == 2
    networks = runner.create_networks(config)
    model = runner.compile_stage("flow", networks, config)
    assert model.photometric_scales == 2
    rng = np.random.default_rng(7)
    sources = tf.constant(rng.uniform(-1, 1, (2, 2, 64, 64, 3)).astype(np.float32))
    target = tf.constant(rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32))
    flows = {"h8": rng.normal(0, 1, (2, 2, 8, 8, 2)).astype(np.float32),
             "h4": rng.normal(0, 2, (2, 2, 16, 16, 2)).astype(np.float32)}
    values = model.flow_losses(flows, None, None, (sources, target))
    expected = sum(float(photometric_loss(sources, target, flows[level], scales=2)) for level in ("h8", "h4"))
    np.testing.assert_allclose(float(values["photometric_loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(values["flow_loss"]), expected, rtol=1e-5)


def test_flow_loss_on_refined_scores_base_plus_residual_in_stage_two():
    """`TrainConfig.flow_loss_on="refined"`: stage 2's L_flow scores the flow each RF block warps
    with (base + residual), so the residual flow gets a gradient from it; "base" (the paper's)
    scores the extractor's flow, which the residual flow does not change."""
    from tfrf.training import runner
    from tfrf.training.config import TrainConfig

    weights = {"photometric": 1.0, "correctness": 0.0, "regularization": 0.0, "l1": 0.0, "adversarial": 0.0,
               "saturation": 0.0}
    try:
        TrainConfig.preset("demo", flow_loss_on="residual")
    except ValueError as error:
        assert "flow_loss_on" in str(error) and "refined" in str(error)
    else:
        raise AssertionError("flow_loss_on='residual' accepted")
    rng = np.random.default_rng(3)
    sources = tf.constant(rng.uniform(-1, 1, (1, 2, 64, 64, 3)).astype(np.float32))
    target = tf.constant(rng.uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32))
    results = {}
    for on in ("base", "refined"):
        config = TrainConfig.preset("demo", flow_loss_on=on, loss_weights=weights)
        assert TrainConfig.from_dict(config.to_dict()).flow_loss_on == on
        networks = runner.create_networks(config)
        model = runner.compile_stage("full", networks, config)
        inputs = {"source_images": sources, "source_poses": tf.zeros((1, 2, 64, 64, config.model.pose_channels)),
                  "target_pose": tf.zeros((1, 64, 64, config.model.pose_channels))}
        # A residual flow that is not zero: every RF block's residual-flow conv biased by one pixel.
        residual_convs = [layer.residual_conv for layer in networks.generator.submodules
                          if getattr(layer, "residual_conv", None) is not None]
        assert len(residual_convs) == len(model.levels)
        for conv in residual_convs:
            conv.bias.assign(tf.ones_like(conv.bias))
        outputs = networks.generator(inputs, return_intermediates=True)
        base = {level: outputs[level]["flows"] for level in model.levels}
        residual = {level: outputs[level]["residual_flows"] for level in model.levels}
        assert max(float(tf.reduce_max(tf.abs(r))) for r in residual.values()) > 0.5
        scored = {level: base[level] + residual[level] for level in model.levels} if on == "refined" else base
        expected = sum(float(photometric_loss(sources, target, scored[level], scales=config.photometric_scales))
                       for level in model.levels)
        with tf.GradientTape() as tape:
            total, values, _ = model.generator_losses(inputs, target)
        np.testing.assert_allclose(float(values["photometric_loss"]), expected, rtol=1e-4)
        residual_variables = [variable for conv in residual_convs for variable in conv.trainable_variables]
        gradients = tape.gradient(total, residual_variables)
        results[on] = sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients if g is not None)
    assert results["base"] == 0.0 and results["refined"] > 0.0, results


def test_full_trains_flow_false_keeps_the_warm_up_flow_in_stage_two():
    """`TrainConfig.full_trains_flow=False`: a stage-2 step leaves the flow extractor's flow
    variables as they were and trains the rest (attention and occlusion heads included); True
    (the paper's) trains them all."""
    from tfrf.training import runner
    from tfrf.training.config import TrainConfig

    from tests.helpers import tiny_train_config

    rng = np.random.default_rng(4)
    batch = {"source_images": rng.uniform(-1, 1, (2, 2, 32, 32, 3)).astype(np.float32),
             "target_image": rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)}
    weights = LossWeights(perceptual=0.0, style=0.0, correctness=0.0, adversarial=0.0, photometric=1.0)
    for trains in (True, False):
        config = tiny_train_config(size=32, loss_weights=weights, full_trains_flow=trains)
        assert TrainConfig.from_dict(config.to_dict()).full_trains_flow is trains
        networks = runner.create_networks(config)
        model = runner.compile_stage("full", networks, config)
        cp = config.model.pose_channels
        data = {**batch, "source_poses": rng.uniform(0, 1, (2, 2, 32, 32, cp)).astype(np.float32),
                "target_pose": rng.uniform(0, 1, (2, 32, 32, cp)).astype(np.float32)}
        extractor = networks.generator.flow_extractor
        flow_refs = {variable.ref() for variable in extractor.flow_variables()}
        heads = [variable for heads in extractor.heads.values() for layer in (heads.attention, heads.occlusion)
                 for variable in layer.trainable_variables]
        others = [variable for variable in networks.generator.trainable_variables if variable.ref() not in flow_refs]
        before = {variable.ref(): variable.numpy().copy() for variable in networks.generator.trainable_variables}
        model.train_on_batch(data)
        changed = {variable.ref() for variable in networks.generator.trainable_variables
                   if not np.array_equal(variable.numpy(), before[variable.ref()])}
        assert any(variable.ref() in changed for variable in heads)
        assert any(variable.ref() in changed for variable in others)
        assert (len(flow_refs & changed) > 0) is trains, (trains, len(flow_refs & changed))
