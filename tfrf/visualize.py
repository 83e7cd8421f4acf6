"""Figures of a run, drawn with numpy and PIL: the gallery and the generator's internals.

- `gallery`: one row per example — the K sources | the target pose | generated | ground truth.
- `internals`: the paper's fig. 7 — per example and source, the flow (colour wheel: hue is the
  direction, saturation the length relative to the largest flow shown), the occlusion mask
  (white = the target feature is used) and the attention weight (after the softmax over K), at
  every level the generator outputs (H/8, H/4), upsampled (nearest) to the image size; a key
  below it (`color_wheel` and what black and white mean). For GFLA
  (no attention over K): the flow, GFLA's mask m (white = the local-attention output is used)
  and where its local attention looks inside the k x k patch (`attention_offset`, colour wheel).
- `save_png`: atomic PNG writing.

Images are [-1, 1] floats; figures are uint8 [H, W, 3].
"""
from __future__ import annotations

import io
from typing import List, Mapping, Optional, Sequence

import numpy as np

from tfrf.io import atomic_write_bytes

LEVELS = ("h8", "h4")
LEVEL_NAMES = {"h8": "H/8", "h4": "H/4"}
_LABEL_HEIGHT = 14
_BACKGROUND = 255


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] // height).clip(0, image.shape[0] - 1)
    cols = (np.arange(width) * image.shape[1] // width).clip(0, image.shape[1] - 1)
    return image[rows][:, cols]


def _gray(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A [h, w] or [h, w, 1] map in [0, 1] -> uint8 [height, width, 3]."""
    values = np.asarray(values, np.float32).reshape(values.shape[0], values.shape[1])
    return np.repeat(_resize_nearest(to_uint8(values * 2.0 - 1.0), height, width)[..., None], 3, axis=-1)


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all in [0, 1]."""
    sector = np.floor(hue * 6.0).astype(int) % 6
    fraction = hue * 6.0 - np.floor(hue * 6.0)
    p = value * (1.0 - saturation)
    q = value * (1.0 - fraction * saturation)
    t = value * (1.0 - (1.0 - fraction) * saturation)
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    rgb = np.zeros(hue.shape + (3,), np.float32)
    for index, channels in enumerate(choices):
        mask = sector == index
        for channel in range(3):
            rgb[..., channel][mask] = channels[channel][mask]
    return rgb


def flow_to_color(flow: np.ndarray, max_magnitude: Optional[float] = None) -> np.ndarray:
    """Flow [h, w, 2] (dx, dy) -> uint8 [h, w, 3] on the colour wheel: white = no motion,
    hue = direction (red = +x), saturation = length / `max_magnitude` (default: the largest)."""
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow_to_color: flow must be [h, w, 2], got shape {flow.shape}")
    dx, dy = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(dx, dy)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max())
    saturation = np.clip(magnitude / max(max_magnitude, 1e-6), 0.0, 1.0)
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
    rgb = _hsv_to_rgb(hue, saturation, np.ones_like(hue))
    return np.round(rgb * 255).astype(np.uint8)


def pose_to_image(pose: np.ndarray) -> np.ndarray:
    """A pose map [H, W, Cp] drawn as uint8 [H, W, 3].

    21 channels (view one-hots): a dial, the azimuth as a needle whose length shrinks with the
    elevation. 3 channels (a landmark drawing): shown as it is. Otherwise (keypoint heatmaps,
    camera maps): each channel in its own hue, the maximum over channels.
    """
    pose = np.asarray(pose, np.float32)
    if pose.ndim != 3:
        raise ValueError(f"pose_to_image: pose must be [H, W, Cp], got shape {pose.shape}")
    height, width, channels = pose.shape
    if channels == 21:
        return _view_dial(pose[0, 0], height, width)
    if channels == 3:
        return np.round(np.clip(pose, 0.0, 1.0) * 255).astype(np.uint8)
    hues = np.arange(channels) / channels
    colours = _hsv_to_rgb(hues, np.ones(channels), np.ones(channels))  # [Cp, 3]
    strength = np.clip(pose, 0.0, 1.0)
    strongest = strength.argmax(axis=-1)
    rgb = colours[strongest] * strength.max(axis=-1, keepdims=True)
    return np.round((1.0 - rgb.max(axis=-1, keepdims=True)) * 255 + rgb * 255).clip(0, 255).astype(np.uint8)


def _view_dial(vector: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    azimuth_bin = int(np.argmax(vector[:18]))
    elevation_bin = int(np.argmax(vector[18:21]))
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    cx, cy, radius = width / 2, height / 2, 0.42 * min(width, height)
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=(120, 120, 120))
    angle = np.deg2rad(azimuth_bin * 20.0)
    length = radius * (1.0 - 0.25 * elevation_bin)
    draw.line([cx, cy, cx + length * np.sin(angle), cy - length * np.cos(angle)], fill=(200, 30, 30), width=2)
    draw.text((2, height - 11), f"{azimuth_bin * 20}/{elevation_bin * 10}", fill=(0, 0, 0))
    return np.asarray(image)


def _grid(rows: List[List[Optional[np.ndarray]]], labels: Sequence[str], tile: int, scale: int) -> np.ndarray:
    """Tiles (uint8 [tile, tile, 3] or None for blank) in rows, a label row on top, scaled."""
    from PIL import Image, ImageDraw

    columns = max(len(row) for row in rows)
    size = tile * scale
    canvas = np.full((_LABEL_HEIGHT + len(rows) * size, columns * size, 3), _BACKGROUND, np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            if cell is not None:
                y = _LABEL_HEIGHT + r * size
                canvas[y:y + size, c * size:(c + 1) * size] = np.kron(cell, np.ones((scale, scale, 1), np.uint8))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for c, label in enumerate(labels):
        draw.text((c * size + 2, 1), label, fill=(0, 0, 0))
    return np.asarray(image)


def gallery(examples: Mapping[str, np.ndarray], generated: np.ndarray, max_rows: int = 8, scale: int = 2) -> np.ndarray:
    """Sources | target pose | generated | ground truth, one row per example: uint8 [H', W', 3].

    Args:
        examples: a batch dict of `tfrf.data.pipeline.make_dataset` with numpy arrays.
        generated: [B, H, W, 3] in [-1, 1].
        max_rows: at most this many examples.
        scale: integer upscaling of every tile.
    """
    sources = np.asarray(examples["source_images"])
    if sources.ndim != 5:
        raise ValueError(f"gallery: source_images must be [B, K, H, W, 3], got shape {sources.shape}")
    generated = np.asarray(generated)
    batch, k, height, width, _ = sources.shape
    if generated.shape != (batch, height, width, 3):
        raise ValueError(f"gallery: generated must be [B, H, W, 3] = {(batch, height, width, 3)}, got {generated.shape}")
    if height != width:
        scale_tiles = lambda image: _resize_nearest(image, height, height)  # noqa: E731
    else:
        scale_tiles = lambda image: image  # noqa: E731
    rows = []
    for b in range(min(batch, max_rows)):
        row = [scale_tiles(to_uint8(sources[b, i])) for i in range(k)]
        row.append(scale_tiles(pose_to_image(examples["target_pose"][b])))
        row.append(scale_tiles(to_uint8(generated[b])))
        row.append(scale_tiles(to_uint8(examples["target_image"][b])))
        rows.append(row)
    labels = [f"source {i + 1}" for i in range(k)] + ["target pose", "generated", "truth"]
    return _grid(rows, labels, height, scale)


def attention_offset(coefficients: np.ndarray) -> np.ndarray:
    """GFLA's local-attention coefficients `[..., k*k]` (entry i*k + j weighs the source sample at
    offset (j - k//2, i - k//2)) -> the expected offset (dx, dy) `[..., 2]`, in pixels of the level."""
    coefficients = np.asarray(coefficients, np.float32)
    k = int(round(np.sqrt(coefficients.shape[-1])))
    if k * k != coefficients.shape[-1]:
        raise ValueError(f"attention_offset: the last axis must be k*k, got shape {coefficients.shape}")
    rows, cols = np.meshgrid(np.arange(k) - k // 2, np.arange(k) - k // 2, indexing="ij")
    dx = coefficients @ cols.ravel().astype(np.float32)
    dy = coefficients @ rows.ravel().astype(np.float32)
    return np.stack([dx, dy], axis=-1)


def _level_columns(level_outputs: Mapping) -> List[str]:
    """The maps shown at one level: rf flow, occl., attn.; GFLA flow, mask, attn. offset."""
    if "attention" in level_outputs:
        return ["flows", "occlusions", "attention"]
    columns = ["flows", "masks" if "masks" in level_outputs else "occlusions"]
    return columns + (["local_attention"] if "local_attention" in level_outputs else [])


_COLUMN_LABELS = {"flows": "flow", "occlusions": "occl.", "attention": "attn.", "masks": "mask",
                  "local_attention": "attn. offset"}


def internals(examples: Mapping[str, np.ndarray], outputs: Mapping, max_examples: int = 2, scale: int = 2) -> np.ndarray:
    """The generator's flows, occlusion and attention at each level it outputs (paper fig. 7).

    One row per (example, source): source | per level (H/8, H/4 where present) the flow, the
    occlusion and the attention over K (rf) — or the flow, GFLA's mask and its local-attention
    offset (GFLA) | and, on the example's first row, generated and ground truth.

    Args:
        examples: a batch dict with numpy arrays.
        outputs: `generator(inputs, return_intermediates=True)` of a `Generator` or `GFLAGenerator`.
        max_examples: at most this many examples.
    """
    sources = np.asarray(examples["source_images"])
    batch, k, height, width, _ = sources.shape
    tile = height
    image = np.asarray(outputs["image"])
    levels = [level for level in LEVELS if isinstance(outputs.get(level), Mapping)]
    if not levels:
        raise ValueError(f"internals: outputs hold none of the levels {LEVELS}; pass return_intermediates=True")
    columns = {level: _level_columns(outputs[level]) for level in levels}
    maps = {level: {name: np.asarray(outputs[level][name]) for name in columns[level]} for level in levels}
    rows = []
    for b in range(min(batch, max_examples)):
        # Flows are in pixels of their own level: rescale to image pixels, one wheel for all.
        flows = {level: maps[level]["flows"][b] * (height / maps[level]["flows"].shape[2]) for level in levels}
        limit = max(max(float(np.hypot(flow[..., 0], flow[..., 1]).max()) for flow in flows.values()), 1e-3)
        for i in range(k):
            row = [_resize_nearest(to_uint8(sources[b, i]), tile, tile)]
            for level in levels:
                for name in columns[level]:
                    if name == "flows":
                        cell = flow_to_color(flows[level][i], limit)
                    elif name == "local_attention":
                        coefficients = maps[level][name][b, i]
                        patch = int(round(np.sqrt(coefficients.shape[-1])))
                        cell = flow_to_color(attention_offset(coefficients), max(patch // 2, 1))
                    else:
                        cell = _gray(maps[level][name][b, i], tile, tile)
                    row.append(_resize_nearest(cell, tile, tile))
            if i == 0:
                row += [_resize_nearest(to_uint8(image[b]), tile, tile),
                        _resize_nearest(to_uint8(examples["target_image"][b]), tile, tile)]
            rows.append(row)
    labels = ["source"] + [f"{_COLUMN_LABELS[name]} {LEVEL_NAMES[level]}" for level in levels
                           for name in columns[level]]
    labels += ["generated", "truth"]
    grid = _grid(rows, labels, tile, scale)
    gfla = any(name == "local_attention" for level in levels for name in columns[level])
    return np.concatenate([grid, _legend(grid.shape[1], tile * scale, gfla)], axis=0)


def color_wheel(size: int) -> np.ndarray:
    """uint8 [size, size, 3]: `flow_to_color` of a flow pointing from the centre to each pixel,
    with the disc's radius as the largest length (white outside the disc)."""
    centre = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([x - centre, y - centre], axis=-1)
    wheel = flow_to_color(flow, max(centre, 1e-3))
    wheel[np.hypot(flow[..., 0], flow[..., 1]) > centre] = _BACKGROUND
    return wheel


def _legend(width: int, size: int, gfla: bool) -> np.ndarray:
    """The key below `internals`: the flow colour wheel and what the grey maps mean, the text
    wrapped to the figure's width."""
    import textwrap

    from PIL import Image, ImageDraw

    maps = ("mask: white = GFLA's local-attention output is used, black = the warped source. attn. offset: "
            "where in its k x k patch the local attention looks (colour wheel).") if gfla else (
            "occl.: white = the source is occluded there and the target feature is used, black = the warped "
            "source is used. attn.: the source's weight over the K sources, black 0 to white 1.")
    text = ("flow: where each pixel reads its source, on the colour wheel at the left: hue = direction "
            "(red = +x, right; yellow-green = +y, down), saturation = length up to the example's largest "
            f"flow, white = no motion. {maps} The H/8 and H/4 maps are shown at the image size.")
    lines = textwrap.wrap(text, max(20, (width - size - 16) // 6))
    canvas = np.full((max(size, 12 * len(lines)) + 8, width, 3), _BACKGROUND, np.uint8)
    canvas[4:4 + size, 4:4 + size] = color_wheel(size)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((size + 12, 4 + 12 * index), line, fill=(0, 0, 0))
    return np.asarray(image)


def save_png(path: str, image: np.ndarray) -> None:
    """Write uint8 [H, W, 3] as a PNG, atomically."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"save_png: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
