"""Helpers shared by the tests (import with `from helpers import ...`; pytest puts tests/ on
sys.path): tiny model and training configs, random generator inputs, PSNR, numpy references (a
bilinear warp, PyTorch's conv2d), a saved tfa-warp generator, people photos with their pose files
and a free TCP port.

Each test keeps its own sizes and settings; they are passed here as arguments."""
import os

import numpy as np

import tfrf

SIZE = 64  # the tiny models' default image size
K = 2  # the default number of source views


def tiny_config(preset="voxceleb2", size=SIZE, width_multiplier=0.125, **changes):
    """ModelConfig `preset` at `size` x `size` and `width_multiplier` (None: the preset's own),
    with further field `changes` (which may also override image_height / image_width).

    The default, voxceleb2 at 64x64 and 1/8 width (Cp = 3), is a few MB and a few ms an example."""
    overrides = {"image_height": size, "image_width": size}
    if width_multiplier is not None:
        overrides["width_multiplier"] = width_multiplier
    return tfrf.ModelConfig.preset(preset, **{**overrides, **changes})


def tiny_train_config(size=SIZE, preset="synthetic", train_preset=None, **values):
    """A TrainConfig without VGG weights around `tiny_config(preset, size, warp_backend="gather")`.

    `values` are the other TrainConfig fields; with `train_preset`, they override that training
    preset's (`TrainConfig.preset`), else they go to `TrainConfig(...)` with its defaults."""
    from tfrf.training import TrainConfig

    values = {"model": tiny_config(preset, size, warp_backend="gather"), "vgg_weights": None, **values}
    if train_preset is not None:
        return TrainConfig.preset(train_preset, **values)
    return TrainConfig(**values)


def random_inputs(config, batch=1, sources=K, seed=0, height=None, width=None):
    """Images uniform in [-1, 1] and pose maps uniform in [0, 1], float32, the layout of docs/conventions.md."""
    rng = np.random.default_rng(seed)
    h, w, cp = height or config.image_height, width or config.image_width, config.pose_channels
    return {
        "source_images": rng.uniform(-1, 1, size=(batch, sources, h, w, 3)).astype(np.float32),
        "source_poses": rng.uniform(0, 1, size=(batch, sources, h, w, cp)).astype(np.float32),
        "target_pose": rng.uniform(0, 1, size=(batch, h, w, cp)).astype(np.float32),
    }


def make_inputs(batch=1, sources=K, seed=0):
    """`random_inputs` of the default `tiny_config()` (64x64, Cp = 3)."""
    return random_inputs(tiny_config(), batch, sources, seed)


def psnr(images, reference):
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = np.mean((np.asarray(images, np.float64) - reference) ** 2)
    return 10.0 * np.log10(4.0 / mse)


def numpy_bilinear_warp(features, flow, dtype=None):
    """Reference warp of `features` `[n, h, w, c]` by `flow` `[n, h, w, 2]` (x, y offsets): per
    pixel, four corners, zeros outside the map; the result in `dtype` (None: the features')."""
    n, h, w, _ = features.shape
    out = np.zeros_like(features, dtype=dtype)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                sx, sy = x + flow[b, y, x, 0], y + flow[b, y, x, 1]
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    if 0 <= xi < w and 0 <= yi < h:
                        weight = (1 - abs(sx - xi)) * (1 - abs(sy - yi))
                        out[b, y, x] += weight * features[b, yi, xi]
    return out


def saved_tfa_generator(root, seed):
    """A Generator of `tiny_config()` with training's tfa warp, built with weights from `seed` and
    saved to root/generator.weights.h5: (the generator, that path)."""
    import tensorflow as tf

    from tfrf.models import Generator

    tf.keras.utils.set_random_seed(seed)
    generator = Generator(tiny_config())  # warp_backend="tfa", as training uses
    generator(generator.dummy_inputs(1, K))
    weights = str(root / "generator.weights.h5")
    generator.save_weights(weights)
    return generator, weights


def numpy_conv2d(x, weight, stride, padding):
    """PyTorch's Conv2d without bias on NCHW in float64: zero padding `padding` (an int or a
    (rows, columns) pair), output floor((H + 2p - k) / s) + 1."""
    rows, columns = (padding, padding) if np.isscalar(padding) else padding
    x = np.pad(x, ((0, 0), (0, 0), (rows, rows), (columns, columns)))
    kh, kw = weight.shape[2:]
    out_h, out_w = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for u in range(kh):
        for v in range(kw):
            patch = x[:, :, u:u + stride * (out_h - 1) + 1:stride, v:v + stride * (out_w - 1) + 1:stride]
            out += np.tensordot(patch, weight[:, :, u, v].astype(np.float64), axes=([1], [1])).transpose(0, 3, 1, 2)
    return out


def save_photos_and_poses(source, indices, directory):
    """Writes the examples `indices` of a people data source as directory/person{i}.png and their
    keypoints as person{i}.json: (the photo paths, the pose paths)."""
    from PIL import Image

    from tfrf.pose import keypoints as keypoints_lib

    photos, poses = [], []
    for position, index in enumerate(indices):
        example = source[int(index)]
        photos.append(str(directory / f"person{position}.png"))
        Image.fromarray(example["image"]).save(photos[-1])
        poses.append(str(directory / f"person{position}.json"))
        keypoints_lib.save_pose_json(poses[-1], example["keypoints"], example["image"].shape[:2])
    return photos, poses


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def save_tiny_people_model(root, size=64):
    """A tiny deepfashion generator (size x size, random weights) saved under `root`:
    (generator, weights path, config.json path)."""
    from tfrf.models import Generator

    config = tiny_config("deepfashion", size)
    generator = Generator(config)
    generator(generator.dummy_inputs())
    weights = os.path.join(str(root), "generator.weights.h5")
    generator.save_weights(weights)
    config_path = os.path.join(str(root), "config.json")
    with open(config_path, "w", encoding="utf-8") as stream:
        stream.write(config.to_json())
    return generator, weights, config_path


# (H, W, line width) of the landmark drawing tests: the defaults (1 px at 64, 2 px at 256), wider, not square
DRAWING_SIZES = [(64, 64, None), (256, 256, None), (100, 150, 2), (128, 128, 3), (60, 90, 5)]


def landmark_sets(height, width, seed):
    """Faces, jittered faces, half-integer points (ties of the rounding), coincident and
    axis-aligned points, points spilling off the canvas, random scribbles."""
    from tfrf.pose import face

    rng = np.random.default_rng(seed)
    base = face.template_landmarks(height, width)
    sets = [base, base + rng.normal(0, 3, base.shape),
            np.round(base + rng.normal(0, 5, base.shape)) + rng.choice([0.0, 0.5, -0.5], base.shape),
            np.round(base / 8) * 8, base * 1.4 - [0.2 * width, 0.2 * height],
            rng.uniform(-20, max(height, width) + 20, base.shape),
            rng.integers(0, 12, base.shape) + np.array([width / 2, height / 2])]
    return np.stack(sets).astype(np.float32)
