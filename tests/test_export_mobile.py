"""TFLite export kernels, full-int8 and the mobile preset.

- TFLite's LEAKY_RELU keeps its slope after a conv + bias + residual add (the pattern TF's
  oneDNN rewrite breaks), checked against a numpy convolution;
- the export kernels (padded corner warp, folded instance norm, split residual conv, eq. 6
  folded into the gather weights, LEAKY_RELU) equal numpy references and the training graph;
- every exported variant (float32, float16, dynamic-int8, full-int8, the mobile preset in
  float32 and full-int8) has builtin ops only and matches its Keras model within a per-variant
  bound; the mobile preset (full_resolution="space_to_depth") has no convolution at H x W.

Random-initialised tiny models (64x64): the bounds say how far quantisation moves the output
of this network, not a trained face model's quality (see serving/README.md for that).
"""
import numpy as np
import pytest
import tensorflow as tf

import tfrf
from tfrf.export import export_generator
from tfrf.export import tflite as tflite_lib
from tfrf.benchmarks.flops import tflite_op_flops
from tfrf.benchmarks.tflite_profile import op_census, profile_signature, summarize
from tfrf.layers.activations import LeakyReLU
from tfrf.layers.normalization import InstanceNormalization
from tfrf.models import rebuild_generator
from tfrf.ops.warp import pad_for_warp, warp_gather, warp_padded

from helpers import K, SIZE, make_inputs, numpy_bilinear_warp, psnr, tiny_config

# Max abs error bound (float32) or PSNR floor in dB against the Keras float32 model.
FLOAT32_ATOL = 1e-3
# full-int8 on this random-initialised model: 12.4-13.0 dB (a trained demo model: 25-35 dB,
# serving/README.md); the floor only catches a broken calibration or a quantised index path.
# dynamic-int8 on this random model: 29-31 dB under ai-edge-litert, 26.6 dB under TF 2.15's
# tf.lite interpreter (its hybrid kernels quantise activations per call): the floor holds for both.
# The random mobile preset (space-to-depth stems, 4 channels) in full-int8: 25.0-26.2 dB.
PSNR_FLOORS = {"float16": 40.0, "dynamic-int8": 24.0, "full-int8": 10.0, "mobile-full-int8": 18.0}


def numpy_conv_same(x, kernel, bias):
    """3x3 'SAME' convolution by explicit loops over the kernel taps; x `[h, w, Ci]`."""
    h, w, _ = x.shape
    kh, kw, _, co = kernel.shape
    padded = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros((h, w, co)) + bias
    for i in range(kh):
        for j in range(kw):
            out += padded[i:i + h, j:j + w] @ kernel[i, j]
    return out


def test_tflite_leaky_relu_keeps_slope_after_conv_bias_add():
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.5, (3, 3, 4, 4)).astype(np.float32)
    bias = rng.normal(0, 0.5, (4,)).astype(np.float32)
    slope = 0.1

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 4], tf.float32), tf.TensorSpec([1, 8, 8, 4], tf.float32)])
    def block(x, residual):
        y = tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias) + residual
        return tf.nn.leaky_relu(y, alpha=slope)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([block.get_concrete_function()], block)
    model = converter.convert()
    assert "LEAKY_RELU" in tflite_lib.check_builtin_ops(model)
    interpreter = tflite_lib.load_interpreter(model)
    interpreter.allocate_tensors()
    x = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
    residual = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], residual if "residual" in detail["name"] else x)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    pre = numpy_conv_same(x[0].astype(np.float64), kernel, bias) + residual[0]
    expected = np.where(pre > 0, pre, slope * pre)
    assert (pre < -0.5).sum() > 20  # the slope matters on many outputs
    np.testing.assert_allclose(output[0], expected, atol=2e-5, rtol=0)
    # A wrong slope (the oneDNN symptom drops it to 0) would be off by > 0.05 somewhere.
    assert np.abs(np.maximum(pre, 0.0) - expected).max() > 0.05


def test_leaky_relu_layer_export_kernel_is_identical():
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 5, 5, 3)).astype(np.float32))
    training = LeakyReLU(0.1)(x).numpy()
    exported = LeakyReLU(0.1, impl="export")(x).numpy()
    np.testing.assert_array_equal(exported, training)
    np.testing.assert_array_equal(training, np.where(x.numpy() > 0, x.numpy(), np.float32(0.1) * x.numpy()))


def test_instance_norm_export_kernel_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, (2, 6, 5, 4)).astype(np.float32)
    layer, export_layer = InstanceNormalization(), InstanceNormalization(impl="export")
    layer.build(x.shape)
    layer.gamma.assign(rng.normal(size=4))
    layer.beta.assign(rng.normal(size=4))
    export_layer.build(x.shape)
    export_layer.set_weights(layer.get_weights())
    training = layer(x).numpy()
    exported = export_layer(x).numpy()
    mean = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
    variance = x.astype(np.float64).var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(variance + 1e-5) * layer.gamma.numpy() + layer.beta.numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(exported, training, atol=1e-5, rtol=0)


def test_padded_corner_warp_matches_numpy_including_far_outside():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    flow = rng.uniform(-3, 3, (2, 5, 7, 2)).astype(np.float32)
    flow[0, 0, 0] = [-40.0, 0.3]  # far left
    flow[0, 1, 1] = [50.0, -0.2]  # far right
    flow[1, 4, 6] = [0.5, 30.0]  # far below, the last pixel of the last map
    flow[1, 2, 3] = [-1.5, -2.7]  # straddling the top-left border
    flow[1, 3, 2] = [4.6, 1.4]  # straddling the bottom-right corner
    expected = numpy_bilinear_warp(features.astype(np.float64), flow.astype(np.float64))
    padded = warp_padded(pad_for_warp(tf.constant(features)), tf.constant(flow), 5, 7).numpy()
    np.testing.assert_allclose(padded, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(padded, warp_gather(features, flow).numpy(), atol=1e-5, rtol=0)
    assert np.all(padded[0, 0, 0] == 0) and np.all(padded[1, 4, 6] == 0)


@pytest.fixture(scope="module")
def voxceleb_model():
    tf.keras.utils.set_random_seed(7)
    generator = export_generator(tiny_config(), tflite=True)
    return generator


def test_export_kernels_equal_training_graph_with_intermediates(voxceleb_model):
    generator = voxceleb_model
    inputs = make_inputs(seed=11)
    training = generator(inputs, return_intermediates=True)
    export_built = rebuild_generator(generator, "export")
    layers = [layer for layer in export_built.submodules if hasattr(layer, "impl")]
    assert len(layers) > 40 and all(layer.impl == "export" for layer in layers)
    assert not any(getattr(layer, "impl", "default") == "export" for layer in generator.submodules)
    exported = export_built(inputs, return_intermediates=True)
    assert training["image"].numpy().std() > 0.2
    np.testing.assert_allclose(exported["image"].numpy(), training["image"].numpy(), atol=1e-4, rtol=0)
    for level in ("h8", "h4"):
        for name in ("residual_flows", "attention", "occlusions"):
            np.testing.assert_allclose(exported[level][name].numpy(), training[level][name].numpy(), atol=1e-5)
    # Each ablation switch has its own export branch.
    for variant in ("no_residual_flow", "no_occlusion", "no_attention"):
        config = tfrf.ModelConfig.ablation(tiny_config(), variant)
        ablated = export_generator(config, tflite=True)
        reference = ablated(inputs).numpy()
        exported = rebuild_generator(ablated, "export")(inputs).numpy()
        np.testing.assert_allclose(exported, reference, atol=1e-4, rtol=0, err_msg=variant)


def test_export_kernels_cut_render_ops(voxceleb_model):
    plain = op_census(tflite_lib.convert(voxceleb_model, K, export_kernels=False), "render")
    exported = op_census(tflite_lib.convert(voxceleb_model, K), "render")
    assert sum(exported.values()) < 0.75 * sum(plain.values()), (plain, exported)
    assert exported["GATHER"] == 4 and plain["GATHER"] == 16  # two gathers per fusing level
    assert exported["DEPTH_TO_SPACE"] == 6 and exported["RESIZE_NEAREST_NEIGHBOR"] == plain["RESIZE_NEAREST_NEIGHBOR"] // 2
    assert exported.get("LOGICAL_AND", 0) == 0 and exported["LEAKY_RELU"] > 20


@pytest.fixture(scope="module")
def variants(voxceleb_model):
    """Every exported variant of the tiny voxceleb2 model and of the mobile preset."""
    calibration = [make_inputs(seed=seed) for seed in range(20, 26)]
    flatbuffers = {
        quantize: tflite_lib.convert(voxceleb_model, K, quantize, representative_inputs=calibration)
        for quantize in ("none", "float16", "dynamic-int8", "full-int8")
    }
    tf.keras.utils.set_random_seed(8)
    mobile = export_generator(tiny_config("voxceleb2_mobile", width_multiplier=None), tflite=True)
    flatbuffers["mobile"] = tflite_lib.convert(mobile, K)
    flatbuffers["mobile-full-int8"] = tflite_lib.convert(mobile, K, "full-int8", representative_inputs=calibration)
    return {"flatbuffers": flatbuffers, "keras": {"mobile": mobile, "mobile-full-int8": mobile},
            "default": voxceleb_model}


def run_tflite(flatbuffer, inputs):
    interpreter = tflite_lib.load_interpreter(flatbuffer)
    encoded = interpreter.get_signature_runner("encode_sources")(source_images=inputs["source_images"])
    return interpreter.get_signature_runner("render")(**inputs, **encoded)["image"]


@pytest.mark.slow
def test_every_variant_is_builtin_and_matches_keras(variants, record_property):
    examples = [make_inputs(seed=seed) for seed in (31, 32)]
    for name, flatbuffer in variants["flatbuffers"].items():
        names = tflite_lib.check_builtin_ops(flatbuffer)
        assert "CONV_2D" in names and "GATHER" in names, name
        model = variants["keras"].get(name, variants["default"])
        for example in examples:
            reference = model(example).numpy()
            assert reference.std() > 0.1, name
            image = run_tflite(flatbuffer, example)
            if name in ("none", "mobile"):
                np.testing.assert_allclose(image, reference, atol=FLOAT32_ATOL, rtol=0, err_msg=name)
            else:
                value = psnr(image, reference)
                record_property(f"psnr_{name}_db", round(float(value), 2))
                print(f"{name}: PSNR vs Keras float32 {value:.1f} dB (floor {PSNR_FLOORS[name]})")
                assert value >= PSNR_FLOORS[name], (name, value)
    for name in ("full-int8", "mobile-full-int8"):
        full_int8 = tflite_lib.operator_names(variants["flatbuffers"][name])
        assert "QUANTIZE" in full_int8 and "DEQUANTIZE" in full_int8


def conv_input_sizes(flatbuffer, signature):
    """(H, W) of the input of every CONV_2D of one signature."""
    from tensorflow.lite.tools import flatbuffer_utils

    from tfrf.benchmarks.tflite_profile import _opcode_names, _subgraph_index

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    names = _opcode_names(model)
    subgraph = model.subgraphs[_subgraph_index(model, signature)]
    return [tuple(subgraph.tensors[op.inputs[0]].shape[1:3]) for op in subgraph.operators
            if names[op.opcodeIndex] == "CONV_2D"]


@pytest.mark.parametrize("name", ["mobile", "mobile-full-int8"])
@pytest.mark.slow
def test_mobile_export_has_no_full_resolution_convolution(variants, name):
    flatbuffer = variants["flatbuffers"][name]
    for signature, stems in (("render", 2), ("encode_sources", 1)):
        census = op_census(flatbuffer, signature)
        sizes = conv_input_sizes(flatbuffer, signature)
        assert len(sizes) == census["CONV_2D"] > 5
        assert max(sizes) == (SIZE // 2, SIZE // 2), (signature, sizes)  # the stems and the head run at H/2
        assert census["SPACE_TO_DEPTH"] == stems, (signature, census)  # render: flow and pose stems
    assert (SIZE, SIZE) in conv_input_sizes(variants["flatbuffers"]["none"], "render")  # the paper's network


@pytest.mark.slow
def test_full_int8_weights_are_int8(variants):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(variants["flatbuffers"]["full-int8"]))
    schema_int8 = 9  # TensorType.INT8
    for subgraph in model.subgraphs:
        conv_code = [i for i, code in enumerate(model.operatorCodes) if max(code.builtinCode, code.deprecatedBuiltinCode) == 3]
        convs = [op for op in subgraph.operators if op.opcodeIndex in conv_code]
        assert convs
        for op in convs:
            assert subgraph.tensors[op.inputs[0]].type == schema_int8  # activations
            assert subgraph.tensors[op.inputs[1]].type == schema_int8  # weights


def test_mobile_preset_keeps_the_method():
    mobile = tfrf.ModelConfig.preset("voxceleb2_mobile")
    assert (mobile.image_height, mobile.image_width, mobile.pose_channels) == (256, 256, 3)
    assert mobile.use_residual_flow and mobile.use_occlusion and mobile.use_attention
    assert mobile.channels(64) < tfrf.ModelConfig.preset("voxceleb2").channels(64)
    assert mobile.full_resolution == "space_to_depth" and mobile.architecture == "rf"


def test_profile_times_every_op_and_counts_flops(voxceleb_model):
    flatbuffer = tflite_lib.convert(voxceleb_model, K)
    inputs = make_inputs(seed=41)
    timings = profile_signature(flatbuffer, "encode_sources", {"source_images": inputs["source_images"]},
                                threads=1, repeats=2)
    census = op_census(flatbuffer, "encode_sources")
    assert len(timings) == sum(census.values())
    table = {row["op_type"]: row for row in summarize(timings)}
    assert {name: row["count"] for name, row in table.items()} == census
    # conv FLOPs: 2 * outputs * kh * kw * C_in, by hand for the first conv (3 -> 8 channels, 64x64, K=2).
    assert tflite_op_flops("CONV_2D", [[2, 64, 64, 3], [8, 3, 3, 3]], [[2, 64, 64, 8]]) == 2 * (2 * 64 * 64 * 8) * 27
    assert abs(sum(row["flop_share"] for row in table.values()) - 1.0) < 1e-9
    assert table["CONV_2D"]["flop_share"] > 0.9


@pytest.mark.slow
def test_runtime_is_reported_by_the_face_renderer(voxceleb_model, tmp_path):
    from tfrf.animation.face import FaceRenderer

    try:
        from importlib import metadata

        import ai_edge_litert.interpreter  # noqa: F401

        expected = f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except ImportError:
        expected = f"tf.lite (TF {tf.__version__})"
    assert tflite_lib.runtime_name() == expected
    path = tflite_lib.export_tflite(voxceleb_model, K, str(tmp_path / "face.tflite"))
    renderer = FaceRenderer(path, num_threads=1)
    assert renderer.runtime == expected and renderer.num_sources == K and renderer.size == SIZE


@pytest.mark.parametrize("block_class, in_channels, filters", [("ResBlockUp", 5, 3), ("ResBlockDown", 4, 6), ("ResBlock", 4, 6)])
def test_residual_block_export_kernel_equals_training_path(block_class, in_channels, filters):
    from tfrf.layers import blocks

    rng = np.random.default_rng(4)
    block, export_block = getattr(blocks, block_class)(filters), getattr(blocks, block_class)(filters, impl="export")
    x = tf.constant(rng.normal(size=(2, 6, 8, in_channels)).astype(np.float32))
    block(x)
    for variable in block.trainable_variables:
        variable.assign(rng.normal(size=variable.shape))
    export_block(x)
    export_block.set_weights(block.get_weights())
    training = block(x).numpy()
    exported = export_block(x).numpy()
    assert np.abs(training).max() > 5.0
    np.testing.assert_allclose(exported, training, atol=1e-5 * np.abs(training).max(), rtol=0)
    if block_class == "ResBlockUp":  # the upsampling conv by hand: nearest 2x, then the layer's own conv
        upsampled = np.repeat(np.repeat(np.random.default_rng(5).normal(size=(1, 3, 4, in_channels)), 2, 1), 2, 2)
        reference = block.conv1(tf.constant(upsampled, tf.float32)).numpy()
        small = tf.constant(upsampled[:, ::2, ::2], tf.float32)
        np.testing.assert_allclose(blocks._upsampling_conv(small, block.conv1).numpy(), reference, atol=1e-4, rtol=0)


def test_interleaved_timing_gives_every_runner_its_turn():
    from tfrf.benchmarks.tflite_mobile import interleaved_render_seconds

    order = []
    runners = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    best = interleaved_render_seconds(runners, rounds=2, calls_per_turn=2)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 2  # one warm-up each, then turns of two calls
    assert set(best) == {"a", "b"} and all(0.0 <= seconds < 1.0 for seconds in best.values())
