"""Mask-LPIPS on Market-1501: LPIPS inside a body mask drawn from the target keypoints.

The mask is GFLA's (`produce_ma_mask` in RenYurui/Global-Flow-Local-Attention
`script/metrics.py`), reproduced without scikit-image:

1. For each of the 23 limbs whose two ends are present, the quadrilateral with corners at each
   end +- 4 px along the segment's normal, rasterised as `skimage.draw.polygon` does: a pixel
   (r, c) is inside when the crossing-number test of the point (x=c, y=r) is odd, with
   half-open edges (`y_i <= y < y_j`) and `x < x_intersection` strictly.
2. For each present joint, the disk `skimage.draw.disk` (`circle`) draws: (r - r0)^2 + (c - c0)^2
   < 4^2, strictly.
3. A 5x5 binary dilation, then a 5x5 binary erosion (skimage's `dilation`/`erosion` with
   `square(5)`: windows clipped at the border, the 'reflect' mode of the grey-value filters).

Keypoints are `[18, 2]` (y, x) in the COCO-18 order of the annotation CSVs, -1 where missing.
Both images are multiplied by the mask (the background becomes 0 in [-1, 1]) and ordinary LPIPS
(AlexNet, v0.1) is taken. A limb whose two ends coincide has no normal; it is skipped (its disks
still cover it), where scikit-image would fail on NaN corners.
"""
from __future__ import annotations

import numpy as np

# 0-based COCO-18 limb pairs of GFLA's mask (its 1-based list minus one).
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 16), (1, 17), (8, 11), (11, 5),
         (8, 2), (16, 17))
NUM_KEYPOINTS = 18
MISSING = -1
POINT_RADIUS = 4
MORPHOLOGY_SIZE = 5
POLYGON_RULES = ("half_open", "closed")
VERTEX_TOLERANCE = 1e-12


def _missing(point) -> bool:
    return point[0] == MISSING or point[1] == MISSING


def polygon_mask(rows, cols, height: int, width: int, rule: str = "half_open") -> np.ndarray:
    """Pixels of the polygon with vertices (rows[i], cols[i]), as `skimage.draw.polygon`: bool
    `[height, width]`, the test of each pixel centre (x=c, y=r) in float64 with scikit-image's
    arithmetic.

    rule "half_open" — scikit-image < 0.18, which GFLA ran (it imports `circle` and
    `compare_ssim`, both gone by 0.19): the even-odd crossing test with edges half-open in y
    (`y_i <= y < y_j`) and `x < (x_j - x_i) * (y - y_i) / (y_j - y_i) + x_i` strictly, so pixels
    on the right or lower boundary are left out.
    rule "closed" — scikit-image >= 0.18 (O'Rourke's test): vertices (within 1e-12) and edge
    pixels are included.
    """
    if rule not in POLYGON_RULES:
        raise ValueError(f"polygon_mask: unknown rule {rule!r}; expected one of {POLYGON_RULES}")
    rows = np.asarray(rows, np.float64)
    cols = np.asarray(cols, np.float64)
    y = np.arange(height, dtype=np.float64)[:, None]
    x = np.arange(width, dtype=np.float64)[None, :]
    count = len(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule == "half_open":
            inside = np.zeros((height, width), bool)
            for i in range(count):
                j = (i - 1) % count
                y_i, y_j, x_i, x_j = rows[i], rows[j], cols[i], cols[j]
                spans = ((y_i <= y) & (y < y_j)) | ((y_j <= y) & (y < y_i))
                inside ^= spans & (x < (x_j - x_i) * (y - y_i) / (y_j - y_i) + x_i)
            return inside
        vertex = np.zeros((height, width), bool)
        right = np.zeros((height, width), bool)  # parity of crossings right of the pixel
        left = np.zeros((height, width), bool)
        x_previous, y_previous = cols[-1] - x, rows[-1] - y
        for i in range(count):
            x_current, y_current = cols[i] - x, rows[i] - y
            vertex |= (-VERTEX_TOLERANCE < x_current) & (x_current < VERTEX_TOLERANCE) \
                & (-VERTEX_TOLERANCE < y_current) & (y_current < VERTEX_TOLERANCE)
            crossing = (x_current * y_previous - x_previous * y_current) / (y_previous - y_current)
            right ^= ((y_current > 0) != (y_previous > 0)) & (crossing > 0)
            left ^= ((y_current < 0) != (y_previous < 0)) & (crossing < 0)
            x_previous, y_previous = x_current, y_current
        return vertex | right | left


def disk_mask(row: float, col: float, radius: float, height: int, width: int) -> np.ndarray:
    """Pixels strictly inside the circle, as `skimage.draw.disk((row, col), radius, shape)`:
    bool `[height, width]`. Distances are taken from the clipped bounding box's corner, as there."""
    inside = np.zeros((height, width), bool)
    top = max(int(np.ceil(row - radius)), 0)
    left = max(int(np.ceil(col - radius)), 0)
    bottom = min(int(np.floor(row + radius)), height - 1)
    right = min(int(np.floor(col + radius)), width - 1)
    if bottom < top or right < left:
        return inside
    r = np.arange(bottom - top + 1, dtype=np.float64)[:, None] - (row - top)
    c = np.arange(right - left + 1, dtype=np.float64)[None, :] - (col - left)
    inside[top:bottom + 1, left:right + 1] = (r / radius) ** 2 + (c / radius) ** 2 < 1
    return inside


def _window_reduce(mask: np.ndarray, size: int, reduce, fill: bool) -> np.ndarray:
    half = size // 2
    padded = np.pad(mask, half, constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return reduce(windows, axis=(-2, -1))


def binary_dilation(mask: np.ndarray, size: int = MORPHOLOGY_SIZE) -> np.ndarray:
    """Any pixel set in the `size` x `size` window (windows clipped at the border)."""
    return _window_reduce(mask, size, np.any, False)


def binary_erosion(mask: np.ndarray, size: int = MORPHOLOGY_SIZE) -> np.ndarray:
    """Every pixel of the `size` x `size` window set (windows clipped at the border)."""
    return _window_reduce(mask, size, np.all, True)


def market_mask(keypoints, height: int = 128, width: int = 64, point_radius: int = POINT_RADIUS,
                polygon_rule: str = "half_open") -> np.ndarray:
    """GFLA's Mask-LPIPS body mask: bool `[height, width]`.

    Args:
        keypoints: `[18, 2]` (y, x) pixel coordinates at `height` x `width`, -1 where missing.
        height, width: mask size (Market-1501: 128 x 64).
        point_radius: half-width of the limb quadrilaterals and radius of the joint disks.
        polygon_rule: "half_open" (scikit-image < 0.18, GFLA's published figures) or "closed"
            (scikit-image >= 0.18, limb boundaries included); see `polygon_mask`.
    """
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"market_mask: keypoints must be [18, 2] (y, x), got shape {keypoints.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"market_mask: height and width must be positive, got {height} x {width}")
    mask = np.zeros((height, width), bool)
    for start, end in LIMBS:
        if _missing(keypoints[start]) or _missing(keypoints[end]):
            continue
        direction = keypoints[start] - keypoints[end]
        length = np.linalg.norm(direction)
        if length == 0:
            continue
        normal = point_radius * np.array([-direction[1], direction[0]]) / length
        corners = np.array([keypoints[start] + normal, keypoints[start] - normal,
                            keypoints[end] - normal, keypoints[end] + normal])
        mask |= polygon_mask(corners[:, 0], corners[:, 1], height, width, polygon_rule)
    for point in keypoints:
        if not _missing(point):
            mask |= disk_mask(point[0], point[1], point_radius, height, width)
    return binary_erosion(binary_dilation(mask))


def masked_images(images, keypoints) -> np.ndarray:
    """`images [B, H, W, 3]` in [-1, 1] times the market mask of `keypoints [B, 18, 2]`."""
    images = np.asarray(images, np.float32)
    keypoints = np.asarray(keypoints)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"masked_lpips: images must be [B, H, W, 3] in [-1, 1], got shape {images.shape}")
    if keypoints.shape != (images.shape[0], NUM_KEYPOINTS, 2):
        raise ValueError(f"masked_lpips: keypoints must be [B, 18, 2] with B = {images.shape[0]}, got shape "
                         f"{keypoints.shape}")
    masks = np.stack([market_mask(points, images.shape[1], images.shape[2]) for points in keypoints])
    return images * masks[..., None].astype(np.float32)


def masked_lpips(lpips, generated, target, keypoints, batch_size: int = 64) -> np.ndarray:
    """Mask-LPIPS per image, float64 `[B]`.

    Args:
        lpips: a `tfrf.metrics.LPIPS` (AlexNet for the published figures).
        generated, target: `[B, H, W, 3]` in [-1, 1].
        keypoints: the *target* keypoints `[B, 18, 2]` (y, x) at H x W, -1 where missing.
    """
    generated = np.asarray(generated, np.float32)
    target = np.asarray(target, np.float32)
    if generated.shape != target.shape:
        raise ValueError(f"masked_lpips: generated {generated.shape} and target {target.shape} must match")
    return lpips.distances(masked_images(generated, keypoints), masked_images(target, keypoints), batch_size)
