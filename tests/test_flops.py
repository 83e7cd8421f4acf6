"""FLOP counting of traced training steps (`tfrf.benchmarks.flops`) against hand counts."""
import numpy as np
import pytest
import tensorflow as tf

from tfrf.benchmarks import flops


def test_counts_live_convolutions_and_products_by_part_and_direction():
    rng = np.random.default_rng(0)
    kernel = tf.Variable(rng.normal(size=(3, 3, 4, 8)), dtype=tf.float32)
    frozen = tf.constant(rng.normal(size=(3, 3, 8, 5)), tf.float32)
    unused = tf.Variable(rng.normal(size=(1, 1, 4, 6)), dtype=tf.float32)
    n, h, w = 2, 10, 12

    @tf.function
    def step(images, matrix):
        with tf.GradientTape() as tape:
            with tf.name_scope("generator"):
                features = tf.nn.conv2d(images, kernel, 1, "SAME")
            with tf.name_scope("block1_conv1"):  # a frozen VGG-like conv: only its input gradient
                frozen_features = tf.nn.conv2d(features, frozen, 1, "SAME")
            tf.nn.conv2d(images, unused, 1, "SAME")  # computed by nobody: pruned, not counted
            product = tf.matmul(matrix, tf.reshape(frozen_features, [n * h * w, 5]))  # [3, 5]
            loss = tf.reduce_sum(product)
        gradient = tape.gradient(loss, kernel)
        kernel.assign_sub(0.1 * gradient)
        return loss

    graph = step.get_concrete_function(tf.TensorSpec([n, h, w, 4]), tf.TensorSpec([3, n * h * w])).graph
    counts = flops.step_flops(graph)
    conv1 = 2 * n * h * w * 8 * 3 * 3 * 4
    conv2 = 2 * n * h * w * 5 * 3 * 3 * 8
    product = 2 * 3 * 5 * (n * h * w)
    assert counts["generator"]["forward"] == conv1
    assert counts["generator"]["backward"] == conv1  # filter gradient only: the images need none
    assert counts["vgg"]["forward"] == conv2
    assert counts["vgg"]["backward"] == conv2  # input gradient only: the kernel is a constant
    assert counts["losses"]["forward"] == product
    assert counts["losses"]["backward"] == product  # d loss / d frozen_features through the product
    assert counts["discriminator"] == {"forward": 0.0, "backward": 0.0}
    assert counts["total"]["forward"] == conv1 + conv2 + product


def test_parts_of_op_names():
    assert flops.part_of("block4_conv1/Conv2D_1") == "vgg"
    assert flops.part_of("vgg_features/block2_conv2/Conv2D") == "vgg"
    assert flops.part_of("discriminator/down1/conv1_sn/conv1/Conv2D") == "discriminator"
    assert flops.part_of("gfla_generator/flow/Conv2D") == "generator"
    assert flops.part_of("MatMul_3") == "losses"
    scopes = {"generator": ("generator", "flow_confidence_extractor")}
    assert flops.part_of("flow_confidence_extractor/down1/Conv2D", scopes) == "generator"
    assert flops.part_of("flow_confidence_extractor_1/down1/Conv2D", scopes) == "generator"
    assert flops.part_of("flow_confidence_extractor/down1/Conv2D") == "losses"


def test_training_scopes_name_the_sub_networks():
    from tfrf.config import ModelConfig
    from tfrf.training import TrainingModel
    from tfrf.models import build_discriminator, build_generator

    config = ModelConfig.preset("synthetic", width_multiplier=0.125)
    model = TrainingModel(build_generator(config), build_discriminator(config), None, stage="flow")
    scopes = flops.training_scopes(model)
    assert {"generator", "flow_confidence_extractor", "source_appearance_extractor",
            "target_image_predictor"} <= set(scopes["generator"])
    assert scopes["discriminator"][0] == model.discriminator.name


def test_dynamic_shapes_are_refused():
    kernel = tf.constant(np.ones((3, 3, 2, 2)), tf.float32)
    graph = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME")).get_concrete_function(
        tf.TensorSpec([None, 8, 8, 2])).graph
    with pytest.raises(ValueError, match="static"):
        flops.step_flops(graph)
