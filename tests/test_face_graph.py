"""The in-graph landmark drawing: pixel for pixel Pillow's `draw_landmarks`, for 1-px Bresenham
lines and the wide-line polygons, on faces, random points (off the canvas too), half-integer
and coincident points; batched; in TFLite with only ops that TFLite's GPU delegate takes."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfrf.export.tflite_format import check_builtin_ops
from tfrf.export.tflite_gpu import gpu_warnings
from tfrf.pose import face
from tfrf.pose.face_graph import SORT8, default_line_width, draw_landmarks_graph

from helpers import DRAWING_SIZES, landmark_sets


def test_sorting_network_sorts_every_01_input():
    for bits in itertools.product([0, 1], repeat=8):
        values = list(bits)
        for a, b in SORT8:
            values[a], values[b] = min(values[a], values[b]), max(values[a], values[b])
        assert values == sorted(bits)


@pytest.mark.parametrize("height, width, line_width", DRAWING_SIZES)
def test_drawing_equals_pillow(height, width, line_width):
    points = landmark_sets(height, width, seed=height + width)
    drawn = draw_landmarks_graph(points, height, width, line_width).numpy()
    assert drawn.shape == (len(points), height, width, 3) and drawn.dtype == np.float32
    for index, landmarks in enumerate(points):
        reference = face.draw_landmarks(landmarks, height, width, line_width).astype(np.float32) / 255.0
        np.testing.assert_allclose(drawn[index], reference, atol=1e-5, rtol=0, err_msg=f"set {index}")
    assert drawn[0].max() == 1.0  # the face is drawn


def test_leading_dimensions_and_default_width():
    points = landmark_sets(32, 32, seed=1)[:6].reshape(2, 3, 68, 2)
    drawn = draw_landmarks_graph(tf.constant(points), 32, 32).numpy()
    assert drawn.shape == (2, 3, 32, 32, 3)
    np.testing.assert_array_equal(drawn[1, 2], face.draw_landmarks(points[1, 2], 32, 32) / 255.0)
    assert [default_line_width(size, size) for size in (64, 128, 192, 256, 512)] == [1, 1, 2, 2, 4]

    @tf.function(input_signature=[tf.TensorSpec([None, 68, 2], tf.float32)])
    def unknown_batch(landmarks):
        return draw_landmarks_graph(landmarks, 32, 32)

    np.testing.assert_array_equal(unknown_batch(points[0]).numpy(), drawn[0])


@pytest.mark.parametrize("shape", [(67, 2), (68, 3), (68,)])
def test_drawing_needs_68_points(shape):
    with pytest.raises(ValueError, match=r"\[\.\.\., 68, 2\]"):
        draw_landmarks_graph(np.zeros(shape, np.float32), 32, 32)
    with pytest.raises(ValueError, match="positive"):
        draw_landmarks_graph(np.zeros((68, 2), np.float32), 0, 32)


@pytest.mark.parametrize("size", [64, 192])
def test_tflite_drawing_is_exact_and_gpu_compatible(size):
    @tf.function(input_signature=[tf.TensorSpec([68, 2], tf.float32, name="landmarks")])
    def drawing(landmarks):
        return {"drawing": draw_landmarks_graph(landmarks, size, size)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([drawing.get_concrete_function()], drawing)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model = converter.convert()
    names = check_builtin_ops(model)
    assert "BATCH_MATMUL" in names and "GATHER" in names and "SELECT_V2" not in names
    assert gpu_warnings(model) == []
    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    for landmarks in landmark_sets(size, size, seed=size)[:4]:
        interpreter.set_tensor(source["index"], landmarks)
        interpreter.invoke()
        reference = face.draw_landmarks(landmarks, size, size).astype(np.float32) / 255.0
        np.testing.assert_allclose(interpreter.get_tensor(target["index"]), reference, atol=1e-5, rtol=0)
