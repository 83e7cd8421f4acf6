"""The RGB drawing of 68 face landmarks in TensorFlow ops: `tfrf.pose.face.draw_landmarks` in a graph.

    drawing = draw_landmarks_graph(landmarks, 256, 256)  # [..., 68, 2] -> float32 [..., 256, 256, 3]

An exported model that takes landmark coordinates draws its pose with this (the TFLite face
export's `encode_crops` / `render_landmarks`, a SavedModel's `photos` signature): equal to
`draw_landmarks(points, H, W) / 255` pixel for pixel, since a trained network saw exactly those
drawings. `draw_landmarks` draws with Pillow, so this re-does Pillow's rasterisation (its
`ImagingDrawLine` / `ImagingDrawWideLine`, as in Pillow 13; tests/test_face_graph.py checks it
against the installed Pillow):

- points are rounded half to even (`np.round`) to integer pixels;
- line width 1: Bresenham per segment without its end point, plus the last point of each line;
- wider: each segment is the quadrilateral of `ImagingDrawWideLine`, filled by Pillow's scan
  line (`polygon_generic`: per row, the float32 crossings of its edges, its corner rule, sorted,
  filled pairwise from `ROUND_UP` to `ROUND_DOWN`, horizontal edges drawn whole).

Everything is computed per segment and row (`[N, S, H]`, S = 63 segments): each segment covers
at most four x-spans of a row (one for width 1). Spans become +1/-1 events whose running sum
along x is the coverage of a part; the sum is one small matrix product per part (x = B q + r:
an event e <= x iff q_e < q, or q_e = q and r_e <= r). A part's pixels take its colour over the
parts drawn before it (Pillow draws jaw, brows, nose, eyes, lips in that order).

Only builtin TFLite ops that TFLite's GPU delegate accepts: float32 arithmetic on integer-valued
pixels (exact), FLOOR, comparisons, GATHER of constant 1-D indices, BATCH_MATMUL, SUM, no
SELECT (blends by 0/1 factors). Non-finite landmarks are not checked in the graph (the numpy
`draw_landmarks` refuses them).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfrf.pose.face import FACE_PARTS, NUM_LANDMARKS, PART_COLORS, part_polylines

BIG = 60000.0  # an x that sorts after every real crossing (exact in float16 too)
# 8-input sorting network (19 compare-exchanges; checked on all 0/1 inputs in the tests)
SORT8 = ((0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3), (4, 5), (6, 7),
         (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6))


def default_line_width(height: int, width: int) -> int:
    """`draw_landmarks`' default: max(1, round(min(H, W) / 128)) (2 px at 256)."""
    return max(1, int(round(min(height, width) / 128)))


def segment_table() -> Tuple[List[int], List[int], List[Tuple[str, int, int]]]:
    """(start landmark of every segment, its end landmark, (part, first, end) segment ranges per
    part in drawing order); segments of one part are contiguous."""
    starts, ends, ranges = [], [], []
    for part in FACE_PARTS:
        first = len(starts)
        for name, indices in part_polylines():
            if name == part:
                starts += indices[:-1].tolist()
                ends += indices[1:].tolist()
        ranges.append((part, first, len(starts)))
    return starts, ends, ranges


def _f(condition) -> tf.Tensor:
    return tf.cast(condition, tf.float32)


# Indicators of integer-valued floats as clipped differences: float ops that XNNPACK runs (it runs
# no comparison) and that need no CAST.
def _ge(a, b):
    return tf.clip_by_value(a - b + 1.0, 0.0, 1.0)


def _gt(a, b):
    return tf.clip_by_value(a - b, 0.0, 1.0)


def _eq(a, b):
    return tf.nn.relu(1.0 - tf.abs(a - b))


def _pick(condition, if_true, if_false):
    """`where` as a 0/1 blend (exact for finite values; broadcasts as MUL/ADD do)."""
    return condition * if_true + (1.0 - condition) * if_false


def _round_half_even(values):
    floor = tf.floor(values)
    fraction = values - floor
    odd = floor - 2.0 * tf.floor(floor * 0.5)
    return floor + _f(fraction > 0.5) + _f(tf.equal(fraction, 0.5)) * odd


def _roundf(values):
    """C's roundf: half away from zero, on float32."""
    magnitude = tf.abs(values)
    whole = tf.floor(magnitude)
    rounded = whole + _f(magnitude - whole >= 0.5)
    return (2.0 * _f(values >= 0.0) - 1.0) * rounded


def _round_up(values):
    """Pillow's ROUND_UP of a float: floor(f + 0.5F) in float32 for f >= 0, -floor(fabs(f) +
    0.5F) in double (exact) for f < 0."""
    magnitude = tf.abs(values)
    whole = tf.floor(magnitude)
    negative = -(whole + _f(magnitude - whole >= 0.5))
    return _pick(_f(values >= 0.0), tf.floor(values + 0.5), negative)


def _round_down(values):
    """Pillow's ROUND_DOWN of a float: ceil(f - 0.5F) in float32 for f >= 0, -ceil(fabs(f) -
    0.5F) in double (exact) for f < 0."""
    magnitude = tf.abs(values)
    whole = tf.floor(magnitude)
    negative = -(whole + _f(magnitude - whole > 0.5))
    return _pick(_f(values >= 0.0), -tf.floor(0.5 - values), negative)


def _floor_div(numerator, denominator):
    """floor(n / d) of integer-valued floats, d >= 1 (the half keeps it off integer quotients)."""
    return tf.floor((numerator + 0.5) / denominator)


def _sign(values):  # of integers; 1 for 0
    return 1.0 - 2.0 * _gt(0.0, values)


def _bresenham_spans(x0, y0, x1, y1, rows):
    """The x-span [a, b] of each row that Pillow's 1-px `line` (end point excluded) covers, and
    whether it is non-empty: three `[N, S, H]` tensors."""
    dx, dy = x1 - x0, y1 - y0
    adx, ady, xs = tf.abs(dx), tf.abs(dy), _sign(dx)
    step = (rows - y0) * _sign(dy)  # rows advanced along the line
    # x-major: the steps i whose row is `step` are ceil(adx (2t - 1) / 2ady) ... ceil(adx (2t + 1) / 2ady) - 1
    two_dy = tf.maximum(2.0 * ady, 1.0)
    first = _floor_div(adx * (2.0 * step - 1.0) + two_dy - 1.0, two_dy)
    last = _floor_div(adx * (2.0 * step + 1.0) + two_dy - 1.0, two_dy) - 1.0
    flat = _eq(ady, 0.0)  # horizontal: every step lies in row y0
    on_row = _eq(step, 0.0)
    first = _pick(flat, _pick(on_row, 0.0, BIG), tf.maximum(first, 0.0))
    last = tf.minimum(_pick(flat, adx - 1.0, last), adx - 1.0)
    ends = (x0 + xs * first, x0 + xs * last)
    x_major = (tf.minimum(ends[0], ends[1]), tf.maximum(ends[0], ends[1]), _ge(last, first))
    # y-major (adx <= ady, ady > 0): one pixel per row, x advanced floor((2 adx t + ady) / 2 ady)
    column = x0 + xs * _floor_div(2.0 * adx * step + ady, tf.maximum(2.0 * ady, 1.0))
    y_valid = _ge(step, 0.0) * _gt(ady, step)
    major = _gt(adx, ady)
    return (_pick(major, x_major[0], column), _pick(major, x_major[1], column),
            _pick(major, x_major[2], y_valid) * _gt(tf.maximum(adx, ady), 0.0))


def _round_down_ratio(radius: int, along, squared_length):
    """ROUND_DOWN(radius / hypot * along) for along >= 0, exactly: the odd m < 2 radius with
    m^2 hypot^2 < 4 radius^2 along^2 (0.0 for radius 0)."""
    terms = [_gt(4.0 * radius * radius * along * along, odd * odd * squared_length) for odd in range(1, 2 * radius, 2)]
    return tf.add_n(terms) if len(terms) > 1 else (terms[0] if terms else 0.0)


def _wide_spans(x0, y0, x1, y1, rows, line_width: int):
    """Pillow's `ImagingDrawWideLine` per row: four (a, b, valid) spans, `[N, S, H]` each."""
    half = (line_width - 1) / 2.0
    r_max, r_min = int(math.floor(half + 0.5)), int(math.ceil(half - 0.5))
    dx, dy = x1 - x0, y1 - y0
    squared = dx * dx + dy * dy
    def offset(radius, along):  # ROUND_DOWN(radius / hypot * along), signed
        return _sign(along) * _round_down_ratio(radius, tf.abs(along), squared) if radius else 0.0

    dx_min, dx_max, dy_min, dy_max = offset(r_min, dy), offset(r_max, dy), offset(r_min, dx), offset(r_max, dx)
    vertices = [(x0 - dx_min, y0 + dy_max), (x1 - dx_min, y1 + dy_max), (x1 + dx_max, y1 - dy_min),
                (x0 + dx_max, y0 - dy_min)]
    edges = []
    for index in range(4):
        (ex0, ey0), (ex1, ey1) = vertices[index], vertices[(index + 1) % 4]
        flat = _eq(ey0, ey1)
        slope = (ex1 - ex0) / (ey1 - ey0 + flat)  # float32, as Pillow's add_edge
        edges.append({"x0": ex0, "y0": ey0, "ymin": tf.minimum(ey0, ey1), "ymax": tf.maximum(ey0, ey1),
                      "xmin": tf.minimum(ex0, ex1), "xmax": tf.maximum(ex0, ex1), "flat": flat, "dx": slope,
                      "slanted": 1.0 - _eq(ex0, ex1), "x": (rows - ey0) * slope + ex0})
    top = tf.maximum(tf.maximum(edges[0]["ymax"], edges[1]["ymax"]), tf.maximum(edges[2]["ymax"], edges[3]["ymax"]))
    values, count = [], 0.0
    for i, edge in enumerate(edges):
        active = (1.0 - edge["flat"]) * _ge(rows, edge["ymin"]) * _ge(edge["ymax"], rows)
        at_top = _eq(rows, edge["ymax"])
        double = active * at_top * _gt(top, rows)
        corner = active * (1.0 - double) * tf.maximum(_eq(rows, edge["ymin"]), at_top) * edge["slanted"]
        value, done = edge["x"], 0.0
        beside = rows + 1.0 - 2.0 * at_top  # the next row, or the previous one at the edge's end
        for other in edges[:i]:  # Pillow's "connect discontiguous corners"
            joins = (corner * (1.0 - done) * (1.0 - other["flat"]) * other["slanted"]
                     * tf.maximum(_eq(rows, other["ymin"]), _eq(rows, other["ymax"]))
                     * _eq(_roundf(value), _roundf(other["x"])))
            hit = joins * _ge(beside, other["ymin"]) * _ge(other["ymax"], beside)
            mine = (beside - edge["y0"]) * edge["dx"] + edge["x0"]
            theirs = (beside - other["y0"]) * other["dx"] + other["x0"]
            up = _f(value > mine + 1.0) * _f(value > theirs + 1.0)
            down = (1.0 - up) * _f(value < mine - 1.0) * _f(value < theirs - 1.0)
            moved = (up * (_roundf(tf.maximum(mine, theirs)) + 1.0) + down * (_roundf(tf.minimum(mine, theirs)) - 1.0)
                     + (1.0 - up - down) * value)
            value = _pick(hit, moved, value)
            done = tf.maximum(done, hit)
        values += [_pick(active, value, BIG), _pick(double, edge["x"], BIG)]
        count = count + active + double
    for a, b in SORT8:
        values[a], values[b] = tf.minimum(values[a], values[b]), tf.maximum(values[a], values[b])
    spans = [(_round_up(values[2 * p]), _round_down(values[2 * p + 1]), _gt(count, 2 * p + 1)) for p in range(4)]
    # A wide line's quadrilateral has two horizontal edges (0 and 2, or 1 and 3) or none; with
    # two, at most two crossings pairs are left, so their spans take the last two slots.
    flat_pair = tf.maximum(edges[0]["flat"], edges[1]["flat"])
    for slot, (first, second) in ((2, (0, 1)), (3, (2, 3))):
        a = _pick(edges[first]["flat"], edges[first]["xmin"], edges[second]["xmin"])
        b = _pick(edges[first]["flat"], edges[first]["xmax"], edges[second]["xmax"])
        row = _pick(edges[first]["flat"], edges[first]["ymin"], edges[second]["ymin"])
        valid = _eq(rows, row)
        spans[slot] = tuple(_pick(flat_pair, mine, theirs) for mine, theirs in zip((a, b, valid), spans[slot]))
    return spans


def _coverage(spans, width: int):
    """Pixels `[N, H, W]` (0/1) covered by any span of `spans` ((a, b, valid) `[N, J, H]` each)."""
    block = 2 ** int(math.ceil(math.log2(max(2.0, math.sqrt(width)))))
    blocks = -(-width // block)
    events, signs = [], []
    for a, b, valid in spans:
        end = tf.clip_by_value(b + 1.0, 0.0, float(width))
        start = tf.minimum(tf.clip_by_value(a, 0.0, float(width)), end)
        events += [valid * start, valid * end]
        signs += [np.full(int(a.shape[1]), 1.0, np.float32), np.full(int(a.shape[1]), -1.0, np.float32)]
    events = tf.transpose(tf.concat(events, axis=1), [0, 2, 1])  # [N, H, J]
    sign = np.concatenate(signs)  # +1 per start, -1 per end
    quotient = tf.floor(events * (1.0 / block))
    remainder = events - block * quotient
    q = np.arange(blocks, dtype=np.float32).reshape(1, 1, blocks, 1)
    r = np.arange(block, dtype=np.float32).reshape(1, 1, 1, block)
    # Indicators of integers by clipped differences (float ops that XNNPACK runs, unlike compares)
    quotient = tf.expand_dims(quotient, 2)  # [N, H, 1, J]
    before = tf.reduce_sum(tf.clip_by_value(q - quotient, 0.0, 1.0) * sign, axis=3, keepdims=True)  # q_e < q
    same_block = tf.nn.relu(1.0 - tf.abs(quotient - q)) * sign  # q_e == q: [N, H, Q, J]
    within = tf.clip_by_value(r - tf.expand_dims(remainder, 3) + 1.0, 0.0, 1.0)  # r_e <= r: [N, H, J, R]
    total = before + tf.matmul(same_block, within)  # [N, H, Q, R]
    flat = tf.reshape(total, [-1, int(total.shape[1]), blocks * block])
    if blocks * block > width:
        flat = flat[:, :, :width]
    return tf.minimum(flat, 1.0)


def draw_landmarks_graph(landmarks, height: int, width: int, line_width: Optional[int] = None) -> tf.Tensor:
    """The drawing of 68 landmarks as the pose map a face model takes, in TensorFlow ops.

    Args:
        landmarks: float `[..., 68, 2]` (x, y) pixel coordinates in the H x W frame (pixel
            centres at integers, |x|, |y| < 30000), any leading batch dimensions.
        height, width: the drawing's size (static ints).
        line_width: pixels; default `draw_landmarks`' (max(1, round(min(H, W) / 128))).

    Returns:
        float32 `[..., H, W, 3]` in {0, 1}: equal to `tfrf.pose.face.draw_landmarks(points, H, W,
        line_width) / 255` for each `[68, 2]` of finite points.
    """
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    if landmarks.shape.rank is None or landmarks.shape.rank < 2 or tuple(landmarks.shape[-2:]) != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape [..., 68, 2] (x, y per iBUG-68 point), got {landmarks.shape}")
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"drawing size must be positive, got height={height}, width={width}")
    line_width = default_line_width(height, width) if line_width is None else int(line_width)
    if line_width < 1:
        raise ValueError(f"line_width must be >= 1, got {line_width}")
    points = _round_half_even(tf.reshape(landmarks, [-1, NUM_LANDMARKS, 2]))
    starts, ends, ranges = segment_table()
    begin, finish = tf.gather(points, starts, axis=1), tf.gather(points, ends, axis=1)  # [N, S, 2]
    x0, y0, x1, y1 = begin[:, :, :1], begin[:, :, 1:], finish[:, :, :1], finish[:, :, 1:]
    rows = tf.constant(np.arange(height, dtype=np.float32).reshape(1, 1, height))
    if line_width == 1:
        spans = [_bresenham_spans(x0, y0, x1, y1, rows)]
    else:
        spans = _wide_spans(x0, y0, x1, y1, rows, line_width)
    canvas = None
    colors = {part: np.asarray(PART_COLORS[part], np.float32) / 255.0 for part in PART_COLORS}
    for part, first, last in ranges:
        part_spans = [tuple(value[:, first:last] for value in span) for span in spans]
        if line_width == 1:  # Pillow's 1-px lines end with their last point
            tips = tf.gather(points, [int(indices[-1]) for name, indices in part_polylines() if name == part], axis=1)
            tip_x, tip_y = tips[:, :, :1], tips[:, :, 1:]
            part_spans.append((tip_x + 0.0 * rows, tip_x + 0.0 * rows, _eq(rows, tip_y)))
        mask = tf.expand_dims(_coverage(part_spans, width), -1)  # [N, H, W, 1]
        painted = mask * colors[part]
        canvas = painted if canvas is None else canvas * (1.0 - mask) + painted
    leading = landmarks.shape[:-2]
    if leading.is_fully_defined():  # static shapes (an export): no shape ops in the graph
        return tf.reshape(canvas, leading.concatenate([height, width, 3]))
    drawing = tf.reshape(canvas, tf.concat([tf.shape(landmarks)[:-2], [height, width, 3]], axis=0))
    return tf.ensure_shape(drawing, leading.concatenate([height, width, 3]))
