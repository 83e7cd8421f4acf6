"""GFLA through the unchanged export code: a SavedModel (core TF ops only, serving_default and
serving_uint8, K checked at run time) and a builtin-only TFLite model (encode_sources + render)
whose outputs equal the Keras GFLAGenerator's, at the Market preset's 128 x 64 and width 0.25."""
import numpy as np
import pytest
import tensorflow as tf

import tfrf
from tfrf.export import saved_model as saved_model_lib
from tfrf.export import tflite as tflite_lib
from tfrf.export.model import export_config
from tfrf.models import GFLAGenerator, build_generator

from gfla_reference import randomize_weights
from helpers import random_inputs

SAVED_MODEL_TOLERANCE = 1e-4  # as tests/test_export_saved_model.py
TFLITE_TOLERANCE = 1e-3  # as tests/test_export_tflite.py


def market_config():
    return tfrf.ModelConfig.preset("market1501", architecture="gfla", width_multiplier=0.25)


@pytest.fixture(scope="module")
def generator():
    model = build_generator(export_config(market_config(), tflite=True))
    assert isinstance(model, GFLAGenerator) and model.config.warp_backend == "gather"
    model(model.dummy_inputs())
    randomize_weights(model, seed=3)
    return model


def test_saved_model_matches_keras(generator, tmp_path):
    version_dir = saved_model_lib.export_saved_model(generator, str(tmp_path / "models" / "gfla"))
    ops = saved_model_lib.graph_op_types(version_dir)
    assert not [op for op in ops if op.startswith("Addons>")]
    assert {"GatherV2", "DepthToSpace", "Conv2DBackpropInput", "MirrorPad"} <= set(ops)
    loaded = tf.saved_model.load(version_dir)
    for batch, seed in ((1, 1), (2, 2)):
        inputs = random_inputs(generator.config, batch=batch, sources=1, seed=seed)
        served = loaded.signatures["serving_default"](**{key: tf.constant(value) for key, value in inputs.items()})
        expected = generator(inputs).numpy()
        assert expected.std() > 0.1
        np.testing.assert_allclose(served["image"].numpy(), expected, atol=SAVED_MODEL_TOLERANCE, rtol=0)
    two_sources = random_inputs(generator.config, batch=1, sources=2, seed=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="exactly one source"):
        loaded.signatures["serving_default"](**{key: tf.constant(value) for key, value in two_sources.items()})


def test_tflite_builtins_only_and_matches_keras(generator, tmp_path):
    path = tflite_lib.export_tflite(generator, 1, str(tmp_path / "gfla.tflite"))
    with open(path, "rb") as stream:
        names = tflite_lib.check_builtin_ops(stream.read())
    assert {"GATHER", "DEPTH_TO_SPACE", "TRANSPOSE_CONV", "MIRROR_PAD", "SOFTMAX"} <= set(names)
    interpreter = tflite_lib.load_interpreter(path)
    inputs = random_inputs(generator.config, batch=1, sources=1, seed=4)
    encoded = interpreter.get_signature_runner("encode_sources")(source_images=inputs["source_images"])
    features = generator.encode_sources(inputs["source_images"])
    for level in ("h8", "h4"):
        np.testing.assert_allclose(encoded[f"source_features_{level}"], features[level].numpy(), atol=1e-4, rtol=0)
    image = interpreter.get_signature_runner("render")(**inputs, **encoded)["image"]
    expected = generator(inputs).numpy()
    assert expected.std() > 0.1
    np.testing.assert_allclose(image, expected, atol=TFLITE_TOLERANCE, rtol=0)
    with pytest.raises(ValueError, match="K = 2"):
        tflite_lib.convert(generator, 2)
