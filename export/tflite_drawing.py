"""The drawing model: a small float32 TFLite model that does what a face export's landmark
signatures do before the network, for a full-int8 face export (which has none).

    model = drawing_model(config, k)  # bytes; or drawing_model_for("face-int8.tflite")

| signature | inputs | outputs |
|---|---|---|
| `draw_crops` | `source_crops` uint8 `[K,H,W,3]`, `source_landmarks` `[K,68,2]` | `source_images` `[1,K,H,W,3]` in [-1, 1], `source_poses` `[1,K,H,W,3]` |
| `draw_target` | `target_landmarks` `[68,2]` | `target_pose` `[1,H,W,3]` |

Chained with a full-int8 export (`draw_crops` -> `encode_sources`, `draw_target` -> `render`) it
gives what `encode_crops` / `render_landmarks` of a float export give: the same functions
(`tfrf.export.tflite.draw_sources` / `draw_target`, i.e. `tfrf.pose.face_graph.draw_landmarks_graph`)
traced in float32, so the landmark drawing is exact while the network runs in int8. It holds no
weights, only the drawing's small constant tables (about 100 KB at 64 x 64), and converts in
seconds (`drawing_model_for` reads H, W and K from the int8 export). For a native app; in the
browser, `tfrf web`'s page draws the same poses in JavaScript (10 ms as this model there, 1.5 ms
in JavaScript, 256 x 256).
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf

from tfrf.export.tflite import (ENCODE_SIGNATURE, FACE_POSE_CHANNELS, RENDER_SIGNATURE, draw_sources, draw_target,
                                landmark_input_specs, load_interpreter, module_flatbuffer)

DRAW_CROPS_SIGNATURE = "draw_crops"
DRAW_TARGET_SIGNATURE = "draw_target"


def drawing_module(config, k: int) -> tf.Module:
    """A `tf.Module` with `draw_crops` and `draw_target` at `config`'s H x W and K = `k`."""
    if config.pose_channels != FACE_POSE_CHANNELS:
        raise ValueError(f"the drawing model is for face models (pose channels {FACE_POSE_CHANNELS}), "
                         f"got pose channels {config.pose_channels}")
    if k < 1:
        raise ValueError(f"num_sources (K) must be >= 1, got {k}")
    h, w = config.image_height, config.image_width
    specs = landmark_input_specs(k, h, w)
    module = tf.Module(name="tfrf_face_drawing")

    @tf.function(input_signature=[specs["source_crops"], specs["source_landmarks"]])
    def draw_crops(source_crops, source_landmarks):
        images, poses = draw_sources(source_crops, source_landmarks, h, w)
        return {"source_images": images, "source_poses": poses}

    @tf.function(input_signature=[specs["target_landmarks"]])
    def draw_target_pose(target_landmarks):
        return {"target_pose": draw_target(target_landmarks, h, w)}

    module.draw_crops, module.draw_target = draw_crops, draw_target_pose
    module.tflite_signatures = {DRAW_CROPS_SIGNATURE: draw_crops, DRAW_TARGET_SIGNATURE: draw_target_pose}
    return module


def drawing_model(config, k: int) -> bytes:
    """The float32 TFLite flatbuffer of `drawing_module(config, k)` (builtin ops only)."""
    return module_flatbuffer(drawing_module(config, k))


def int8_face_shapes(interpreter, name: str) -> Tuple[int, int, int]:
    """(H, W, K) of a face export without landmark signatures (a full-int8 face export), read from
    its `render` signature; ValueError naming `name` when it has no `encode_sources` / `render`
    or its pose is not the 3-channel face drawing."""
    signatures = interpreter.get_signature_list()
    missing = [key for key in (ENCODE_SIGNATURE, RENDER_SIGNATURE) if key not in signatures]
    if missing:
        raise ValueError(f"{name} is not a tfrf export: no {' / '.join(missing)} signature "
                         f"(signatures {sorted(signatures)})")
    details = interpreter.get_signature_runner(RENDER_SIGNATURE).get_input_details()
    if "source_poses" not in details or "source_images" not in details:
        raise ValueError(f"{name}: its render signature lacks source_images / source_poses (inputs {sorted(details)})")
    _, k, h, w, _ = (int(dim) for dim in details["source_images"]["shape"])
    channels = int(details["source_poses"]["shape"][-1])
    if channels != FACE_POSE_CHANNELS:
        raise ValueError(f"{name} is not a face export: its pose has {channels} channels, "
                         f"not {FACE_POSE_CHANNELS} (the landmark drawing)")
    return h, w, k


def drawing_model_for(model, name: str = "the TFLite model") -> bytes:
    """The drawing model for the face export `model` (a path, flatbuffer bytes or an interpreter),
    its H, W and K read from the model (`int8_face_shapes`)."""
    from types import SimpleNamespace

    if isinstance(model, (str, bytes, bytearray)):
        if isinstance(model, str):
            name = f"TFLite model {model}"
        model = load_interpreter(model)
    h, w, k = int8_face_shapes(model, name)
    return drawing_model(SimpleNamespace(image_height=h, image_width=w, pose_channels=FACE_POSE_CHANNELS), k)
