"""Procedural chairs built from boxes, with random proportions, parts and per-face textures.

A chair is a seat, a base (four legs, or a pedestal column on a cross foot), a back (a solid
slab, or a top rail over vertical slats) and, sometimes, two armrests. Each part gets a
material (two colours and a pattern: solid, stripes, checks or gradient) and about half of the
faces get their own texture, so that the front, back and sides of a chair look different.
Everything is drawn from one `np.random.Generator`, so an object depends only on its seed.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from tfrf.data.synthetic_render import NUM_PATTERNS, TexturedBoxes

Box = Tuple[Tuple[float, float, float], Tuple[float, float, float]]


def _box(x0, x1, y0, y1, z0, z1) -> Box:
    return ((min(x0, x1), min(y0, y1), min(z0, z1)), (max(x0, x1), max(y0, y1), max(z0, z1)))


def _geometry(rng: np.random.Generator) -> Tuple[List[Box], List[int]]:
    """Boxes of one chair (y up, front towards +z) and the part index of each box."""
    width = rng.uniform(0.8, 1.2)
    depth = rng.uniform(0.7, 1.1)
    seat_thickness = rng.uniform(0.08, 0.2)
    seat_height = rng.uniform(0.55, 1.0)
    half_w, half_d = width / 2, depth / 2
    boxes: List[Box] = [_box(-half_w, half_w, seat_height, seat_height + seat_thickness, -half_d, half_d)]
    parts = [0]

    if rng.uniform() < 0.8:  # four legs
        leg = rng.uniform(0.06, 0.14)
        inset = rng.uniform(0.0, 0.08)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x = sx * (half_w - inset - leg / 2)
                z = sz * (half_d - inset - leg / 2)
                boxes.append(_box(x - leg / 2, x + leg / 2, 0.0, seat_height, z - leg / 2, z + leg / 2))
                parts.append(1)
    else:  # pedestal on a cross foot
        column = rng.uniform(0.1, 0.2)
        foot = rng.uniform(0.04, 0.08)
        reach = rng.uniform(0.35, 0.55)
        boxes.append(_box(-column / 2, column / 2, foot, seat_height, -column / 2, column / 2))
        boxes.append(_box(-reach, reach, 0.0, foot, -column / 2, column / 2))
        boxes.append(_box(-column / 2, column / 2, 0.0, foot, -reach, reach))
        parts += [1, 1, 1]

    back_height = rng.uniform(0.6, 1.1)
    back_thickness = rng.uniform(0.06, 0.15)
    back_bottom = seat_height + seat_thickness
    back_top = back_bottom + back_height
    z_back = -half_d
    if rng.uniform() < 0.6:  # solid slab
        boxes.append(_box(-half_w, half_w, back_bottom, back_top, z_back, z_back + back_thickness))
        parts.append(2)
    else:  # top rail over slats
        rail = rng.uniform(0.12, 0.25) * back_height
        boxes.append(_box(-half_w, half_w, back_top - rail, back_top, z_back, z_back + back_thickness))
        parts.append(2)
        num_slats = int(rng.integers(2, 5))
        slat = rng.uniform(0.06, 0.12)
        for x in np.linspace(-half_w + slat / 2, half_w - slat / 2, num_slats):
            boxes.append(
                _box(x - slat / 2, x + slat / 2, back_bottom, back_top - rail, z_back, z_back + back_thickness)
            )
            parts.append(2)

    if rng.uniform() < 0.35:  # armrests with a front post
        arm_height = rng.uniform(0.2, 0.35)
        arm = rng.uniform(0.06, 0.12)
        top = back_bottom + arm_height
        for sx in (-1, 1):
            x = sx * (half_w - arm / 2)
            boxes.append(_box(x - arm / 2, x + arm / 2, top - arm, top, z_back + back_thickness, half_d))
            boxes.append(_box(x - arm / 2, x + arm / 2, back_bottom, top - arm, half_d - arm, half_d))
            parts += [3, 3]
    return boxes, parts


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """A random colour: hue uniform, mostly saturated, never too dark to shade."""
    hue = rng.uniform()
    saturation = rng.uniform(0.3, 0.9)
    value = rng.uniform(0.5, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _material(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, int, float, int]:
    return (
        _random_color(rng),
        _random_color(rng),
        int(rng.integers(NUM_PATTERNS)),
        float(rng.uniform(2.0, 6.0)),
        int(rng.integers(3)),
    )


def random_chair(rng: np.random.Generator) -> TexturedBoxes:
    """One random chair, centred at the origin and scaled to a bounding sphere of radius 1."""
    boxes, parts = _geometry(rng)
    corners = np.asarray(boxes, np.float64)  # [B, 2, 3]
    low, high = corners[:, 0].min(axis=0), corners[:, 1].max(axis=0)
    corners = (corners - (low + high) / 2) / (np.linalg.norm(high - low) / 2)

    part_materials = [_material(rng) for _ in range(4)]
    num_boxes = corners.shape[0]
    color_a = np.zeros((num_boxes, 6, 3))
    color_b = np.zeros((num_boxes, 6, 3))
    pattern = np.zeros((num_boxes, 6), np.int64)
    frequency = np.zeros((num_boxes, 6))
    direction = np.zeros((num_boxes, 6), np.int64)
    # Faces of the same part share their per-face textures, so slats and legs look alike.
    face_materials = [
        [_material(rng) if rng.uniform() < 0.5 else part_materials[part] for _ in range(6)] for part in range(4)
    ]
    for b, part in enumerate(parts):
        for f in range(6):
            color_a[b, f], color_b[b, f], pattern[b, f], frequency[b, f], direction[b, f] = face_materials[part][f]
    return TexturedBoxes(
        corners.astype(np.float32), color_a.astype(np.float32), color_b.astype(np.float32), pattern,
        frequency.astype(np.float32), direction,
    )
