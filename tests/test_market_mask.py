"""GFLA's Mask-LPIPS body mask against a pixel-loop reference and hand-computed shapes, and
Mask-LPIPS itself (scikit-image, when installed, is a second reference for the closed rule)."""
import math

import numpy as np
import pytest

from tfrf.metrics import LPIPS, market_mask, masked_lpips
from tfrf.metrics.market_mask import LIMBS, disk_mask, polygon_mask

# A standing person at 128 x 64 (y, x), COCO-18 order; eyes, one ear, left wrist and both ankles
# missing, the right hand at the left border (clipping).
PERSON = np.array([
    [14, 30], [26, 31], [27, 20], [44, 14], [58, 0], [26, 43], [44, 48], [-1, -1], [66, 24], [88, 23],
    [-1, -1], [66, 38], [88, 40], [-1, -1], [-1, -1], [-1, -1], [15, 25], [-1, -1]])


# --- pixel-loop reference -----------------------------------------------------------------------
def inside_half_open(rows, cols, y, x):
    """pnpoly (scikit-image < 0.18): edges half-open in y, strictly left of the crossing."""
    inside = False
    j = len(rows) - 1
    for i in range(len(rows)):
        if ((rows[i] <= y < rows[j]) or (rows[j] <= y < rows[i])) and \
                x < (cols[j] - cols[i]) * (y - rows[i]) / (rows[j] - rows[i]) + cols[i]:
            inside = not inside
        j = i
    return inside


def inside_closed(rows, cols, y, x):
    """O'Rourke's test (scikit-image >= 0.18): inside, on an edge or on a vertex."""
    right = left = 0
    x1, y1 = cols[-1] - x, rows[-1] - y
    for i in range(len(rows)):
        x0, y0 = cols[i] - x, rows[i] - y
        if abs(x0) < 1e-12 and abs(y0) < 1e-12:
            return True
        if (y0 > 0) != (y1 > 0) and (x0 * y1 - x1 * y0) / (y1 - y0) > 0:
            right += 1
        if (y0 < 0) != (y1 < 0) and (x0 * y1 - x1 * y0) / (y1 - y0) < 0:
            left += 1
        x1, y1 = x0, y0
    return bool(right % 2 or left % 2)


def loop_mask(keypoints, height, width, rule):
    inside = inside_half_open if rule == "half_open" else inside_closed
    mask = [[False] * width for _ in range(height)]
    present = [not (point[0] == -1 or point[1] == -1) for point in keypoints]
    for start, end in LIMBS:
        if not (present[start] and present[end]):
            continue
        (y0, x0), (y1, x1) = keypoints[start], keypoints[end]
        length = math.hypot(y0 - y1, x0 - x1)
        normal_y, normal_x = -(x0 - x1) * 4 / length, (y0 - y1) * 4 / length
        rows = [y0 + normal_y, y0 - normal_y, y1 - normal_y, y1 + normal_y]
        cols = [x0 + normal_x, x0 - normal_x, x1 - normal_x, x1 + normal_x]
        for y in range(height):
            for x in range(width):
                if inside(rows, cols, float(y), float(x)):
                    mask[y][x] = True
    for (row, col), is_present in zip(keypoints, present):
        if is_present:
            for y in range(height):
                for x in range(width):
                    if (y - row) ** 2 + (x - col) ** 2 < 16:
                        mask[y][x] = True

    def window(source, y, x, reduce):  # 5x5 window clipped at the border
        return reduce(source[v][u] for v in range(max(0, y - 2), min(height, y + 3))
                      for u in range(max(0, x - 2), min(width, x + 3)))

    dilated = [[window(mask, y, x, any) for x in range(width)] for y in range(height)]
    return np.array([[window(dilated, y, x, all) for x in range(width)] for y in range(height)])


# --- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["half_open", "closed"])
def test_mask_matches_the_loop_reference(rule):
    expected = loop_mask(PERSON.tolist(), 128, 64, rule)
    mask = market_mask(PERSON, 128, 64, polygon_rule=rule)
    assert mask.dtype == bool and mask.shape == (128, 64)
    np.testing.assert_array_equal(mask, expected)
    assert 600 < mask.sum() < 3000  # a body, not the frame
    assert mask[58, 0] and not mask[120, 5]  # the hand at the border is in; the floor is out


def test_rules_differ_only_on_polygon_boundaries():
    square_rows, square_cols = [2, 2, 5, 5], [1, 3, 3, 1]  # axis-aligned square, integer corners
    half_open = polygon_mask(square_rows, square_cols, 8, 6, "half_open")
    closed = polygon_mask(square_rows, square_cols, 8, 6, "closed")
    expected_half_open = np.zeros((8, 6), bool)
    expected_half_open[2:5, 1:3] = True  # top and left edges in, bottom and right out
    expected_closed = np.zeros((8, 6), bool)
    expected_closed[2:6, 1:4] = True  # every edge pixel in
    np.testing.assert_array_equal(half_open, expected_half_open)
    np.testing.assert_array_equal(closed, expected_closed)


def test_disk_of_radius_four_holds_45_pixels_and_clips():
    assert disk_mask(10, 10, 4, 32, 32).sum() == 45  # integer points with dy^2 + dx^2 < 16
    assert not disk_mask(10, 10, 4, 32, 32)[10, 14]  # distance exactly 4 is out
    assert disk_mask(0, 0, 4, 32, 32).sum() == 4 + 4 + 4 + 3  # the quarter disk left at the corner (rows 0..3)


def test_missing_keypoints_draw_nothing():
    assert not market_mask(np.full((18, 2), -1)).any()
    lone_joint = np.full((18, 2), -1)
    lone_joint[0] = [-1, 20]  # one coordinate missing is missing
    lone_joint[5] = [60, 30]
    mask = market_mask(lone_joint)
    np.testing.assert_array_equal(mask, binary_close_of_disk(60, 30))
    with pytest.raises(ValueError, match=r"\[18, 2\]"):
        market_mask(np.zeros((17, 2)))


def binary_close_of_disk(row, col):
    return loop_mask([[row, col]] + [[-1, -1]] * 17, 128, 64, "half_open")


def test_mask_matches_scikit_image_closed_rule():
    draw = pytest.importorskip("skimage.draw")
    morphology = pytest.importorskip("skimage.morphology")
    rng = np.random.default_rng(0)
    for _ in range(20):
        keypoints = np.stack([rng.integers(0, 128, 18), rng.integers(0, 64, 18)], axis=1)
        keypoints[rng.random(18) < 0.2] = -1
        expected = np.zeros((128, 64), bool)
        for start, end in LIMBS:  # GFLA's produce_ma_mask, with disk for the removed circle
            if -1 in keypoints[start] or -1 in keypoints[end]:
                continue
            normal = keypoints[start] - keypoints[end]
            normal = np.array([-normal[1], normal[0]])
            normal = 4 * normal / np.linalg.norm(normal)
            corners = np.array([keypoints[start] + normal, keypoints[start] - normal,
                                keypoints[end] - normal, keypoints[end] + normal])
            expected[draw.polygon(corners[:, 0], corners[:, 1], shape=(128, 64))] = True
        for point in keypoints:
            if -1 not in point:
                expected[draw.disk((point[0], point[1]), 4, shape=(128, 64))] = True
        expected = morphology.erosion(morphology.dilation(expected, np.ones((5, 5))), np.ones((5, 5)))
        np.testing.assert_array_equal(market_mask(keypoints, polygon_rule="closed"), expected)


def test_masked_lpips_ignores_the_background():
    lpips = LPIPS("alex")
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, (2, 128, 64, 3)).astype(np.float32)
    keypoints = np.stack([PERSON, PERSON])
    mask = market_mask(PERSON)[None, :, :, None]
    generated = np.where(mask, target, rng.uniform(-1, 1, target.shape)).astype(np.float32)  # background differs
    assert np.all(lpips(generated, target).numpy() > 0)
    np.testing.assert_array_equal(masked_lpips(lpips, generated, target, keypoints), 0.0)
    changed = generated.copy()
    changed[0, 40:60, 20:40] = -changed[0, 40:60, 20:40]  # inside the body
    values = masked_lpips(lpips, changed, target, keypoints)
    expected = lpips(changed * mask, target * mask).numpy()
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert values[0] > 0 and values[1] == 0
    with pytest.raises(ValueError, match=r"\[B, 18, 2\]"):
        masked_lpips(lpips, generated, target, keypoints[:1])
