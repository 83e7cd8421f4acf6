"""A small numpy ray caster for objects made of axis-aligned textured boxes.

Every pixel's camera ray is intersected with every box at once (slab method), the nearest hit
wins (an exact z-buffer), and the hit face is textured and Lambert-shaded. All views of one
object are rendered in one vectorised pass; no Python loop runs over pixels, faces or views.

Conventions: object coordinates with y up and the object's front facing +z. A camera at
azimuth a and elevation e sits at distance d in direction (cos e sin a, sin e, cos e cos a) and
looks at the origin, so azimuth 0 sees the front and the camera moves counter-clockwise (seen
from above) as the azimuth grows. Box faces are numbered 2 * axis + side (side 0 = the min
face, normal -axis; side 1 = the max face, normal +axis).
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Texture patterns of a face.
SOLID, STRIPES, CHECKS, GRADIENT = 0, 1, 2, 3
NUM_PATTERNS = 4

_LIGHTS = (  # (direction towards the light, strength), fixed in object coordinates
    (np.array([0.45, 0.8, 0.6]), 0.55),
    (np.array([-0.6, 0.3, -0.5]), 0.2),
)
_AMBIENT = 0.35


@dataclasses.dataclass
class TexturedBoxes:
    """An object as boxes with one texture per face.

    Attributes:
        corners: float [B, 2, 3], min and max corner of each box.
        color_a: float [B, 6, 3] in [0, 1], first colour of each face.
        color_b: float [B, 6, 3], second colour (stripes, checks, gradient end).
        pattern: int [B, 6], one of SOLID, STRIPES, CHECKS, GRADIENT.
        frequency: float [B, 6], cycles per object unit of stripes and checks.
        direction: int [B, 6], stripes/gradient along the face's first (0) or second (1)
            in-plane axis, or diagonally (2).
    """

    corners: np.ndarray
    color_a: np.ndarray
    color_b: np.ndarray
    pattern: np.ndarray
    frequency: np.ndarray
    direction: np.ndarray


def _cameras(azimuths_deg, elevations_deg, distance: float):
    """Origins, forward, right and up vectors, each float32 [V, 3], of cameras looking at the origin."""
    azimuth = np.radians(np.asarray(azimuths_deg, np.float64))
    elevation = np.radians(np.asarray(elevations_deg, np.float64))
    origins = distance * np.stack(
        [np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)], axis=-1
    )
    forward = -origins / np.linalg.norm(origins, axis=-1, keepdims=True)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(right, forward)
    return tuple(v.astype(np.float32) for v in (origins, forward, right, up))


def _pixel_screen(rows, cols, size: int, half: float):
    """Screen coordinates (x right, y up, scaled by tan(fov / 2)) of pixel centres."""
    x = ((cols + 0.5) / size * 2.0 - 1.0) * half
    y = (1.0 - (rows + 0.5) / size * 2.0) * half
    return x.astype(np.float32), y.astype(np.float32)


_CORNER_SELECT = np.array(
    [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]]
)  # min (0) or max (1) corner per coordinate, for the 8 corners of a box


def _project_corners(corners: np.ndarray, origins, forward, right, up):
    """Screen x, y (tangents of the angle off the view axis) of every box corner: 2 x [V, B, 8]."""
    corner_points = corners[:, _CORNER_SELECT, np.arange(3)]  # [B, 8, 3]
    relative = corner_points[None] - origins[:, None, None, :]  # [V, B, 8, 3]
    depth = np.einsum("vbkc,vc->vbk", relative, forward)
    return (np.einsum("vbkc,vc->vbk", relative, right) / depth,
            np.einsum("vbkc,vc->vbk", relative, up) / depth)


def fit_field_of_view(boxes: TexturedBoxes, azimuths_deg, elevations_deg, distance: float, fill: float = 0.9) -> float:
    """The field of view (degrees) at which the object spans `fill` of the frame in its widest view."""
    cameras = _cameras(azimuths_deg, elevations_deg, distance)
    screen_x, screen_y = _project_corners(boxes.corners.astype(np.float32), *cameras)
    widest = max(float(np.abs(screen_x).max()), float(np.abs(screen_y).max()))
    return float(np.degrees(2.0 * np.arctan(widest / fill)))


def camera_rays(azimuths_deg, elevations_deg, size: int, distance: float, fov_deg: float):
    """Ray origins [V, 3] and (unnormalised) directions [V, size*size, 3] of V pinhole cameras."""
    origins, forward, right, up = _cameras(azimuths_deg, elevations_deg, distance)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    x, y = _pixel_screen(rows.ravel(), cols.ravel(), size, np.tan(np.radians(fov_deg) / 2.0))
    directions = forward[:, None, :] + x[None, :, None] * right[:, None, :] + y[None, :, None] * up[:, None, :]
    return origins, directions


def _slabs(corners: np.ndarray, origins: np.ndarray, directions: np.ndarray):
    """Ray-box intersection (slab method), broadcasting over leading dims.

    Returns the entry distance, the exit distance and the per-axis entry distances [..., 3].
    """
    safe = np.where(np.abs(directions) < 1e-9, np.float32(1e-9), directions)
    inverse = np.float32(1.0) / safe
    t_low = (corners[..., 0, :] - origins) * inverse
    t_high = (corners[..., 1, :] - origins) * inverse
    t_enter_axes = np.minimum(t_low, t_high)
    t_exit_axes = np.maximum(t_low, t_high)
    # Explicit three-way max/min: reductions over a trailing axis of 3 are slow in numpy.
    t_enter = np.maximum(np.maximum(t_enter_axes[..., 0], t_enter_axes[..., 1]), t_enter_axes[..., 2])
    t_exit = np.minimum(np.minimum(t_exit_axes[..., 0], t_exit_axes[..., 1]), t_exit_axes[..., 2])
    return t_enter, t_exit, t_enter_axes


def _face_texture(boxes: TexturedBoxes, box: np.ndarray, face: np.ndarray, axis: np.ndarray, points: np.ndarray):
    """Albedo [N, 3] of N hit points `points` [N, 3] on faces (box, face) whose normal is `axis`."""
    first_axis = (axis + 1) % 3
    second_axis = (axis + 2) % 3
    rows = np.arange(points.shape[0])
    low = boxes.corners[box, 0]  # [N, 3]
    extent = np.maximum(boxes.corners[box, 1] - low, 1e-6)
    u = points[rows, first_axis] - low[rows, first_axis]
    v = points[rows, second_axis] - low[rows, second_axis]
    direction = boxes.direction[box, face]
    along = np.where(direction == 0, u, np.where(direction == 1, v, (u + v) * 0.7071))
    first_extent, second_extent = extent[rows, first_axis], extent[rows, second_axis]
    along_extent = np.where(
        direction == 0, first_extent, np.where(direction == 1, second_extent, (first_extent + second_extent) * 0.7071)
    )
    frequency = boxes.frequency[box, face]
    stripes = np.floor(along * frequency) % 2
    checks = (np.floor(u * frequency) + np.floor(v * frequency)) % 2
    gradient = np.clip(along / along_extent, 0.0, 1.0)
    pattern = boxes.pattern[box, face]
    mix = np.select([pattern == STRIPES, pattern == CHECKS, pattern == GRADIENT], [stripes, checks, gradient], 0.0)
    return boxes.color_a[box, face] * (1.0 - mix[:, None]) + boxes.color_b[box, face] * mix[:, None]


def _shade(boxes, box, axis, directions, points, image, view_index, pixel_index):
    """Texture and Lambert-shade the visible hits, writing them into `image` [V, P, 3]."""
    side = (directions[np.arange(box.size), axis] < 0).astype(np.int64)  # entered through the max face
    face = 2 * axis + side
    albedo = _face_texture(boxes, box, face, axis, points)
    normals = np.zeros((box.size, 3), np.float32)
    normals[np.arange(box.size), axis] = np.where(side == 1, 1.0, -1.0)
    shade = np.full(box.size, _AMBIENT, np.float32)
    for light, strength in _LIGHTS:
        shade += strength * np.maximum(normals @ (light / np.linalg.norm(light)).astype(np.float32), 0.0)
    image[view_index, pixel_index] = np.clip(albedo * shade[:, None], 0.0, 1.0)


def _to_uint8(image: np.ndarray, num_views: int, size: int, supersample: int) -> np.ndarray:
    image = image.reshape(num_views, size, supersample, size, supersample, 3)
    total = sum(image[:, :, i, :, j] for i in range(supersample) for j in range(supersample))
    return np.round(total * np.float32(255.0 / supersample**2)).astype(np.uint8)


def render_views(
    boxes: TexturedBoxes,
    azimuths_deg: np.ndarray,
    elevations_deg: np.ndarray,
    size: int,
    distance: float,
    fov_deg: float,
    background: float = 1.0,
    supersample: int = 1,
    basis=None,
    principal=None,
) -> np.ndarray:
    """Render V views of `boxes`: uint8 [V, size, size, 3].

    Only the pixels inside each box's projected bounding rectangle are tested against that
    box (a flat, ragged list of (view, box, pixel) candidates), and the nearest hit per pixel
    is found with `np.minimum.at`; `render_views_reference` tests every ray against every box.
    The camera must be outside every box.

    Args:
        boxes: the object.
        azimuths_deg, elevations_deg: [V] camera angles in degrees.
        size: output height and width in pixels.
        distance: camera distance from the origin (object units).
        fov_deg: full field of view.
        background: grey level in [0, 1] where no box is hit.
        supersample: render at `size * supersample` and average blocks (anti-aliasing).
        basis: optional (origins, forward, right, up), each float32 [V, 3], of cameras that are
            not the look-at cameras of the angles (`synthetic_cameras`: jittered distance and
            roll); the angles and `distance` are then ignored.
        principal: optional float32 [V, 2], the principal point (x, y) of each view in screen
            units (tangents, x right, y up): the image of the object shifts by it.
    """
    render_size = size * supersample
    half = np.float32(np.tan(np.radians(fov_deg) / 2.0))
    if basis is None:
        origins, forward, right, up = _cameras(azimuths_deg, elevations_deg, distance)
    else:
        origins, forward, right, up = (np.asarray(v, np.float32) for v in basis)
    num_views, num_boxes = origins.shape[0], boxes.corners.shape[0]
    corners = boxes.corners.astype(np.float32)

    # Projected bounding rectangle of every (view, box): pixel rows/cols [V, B].
    screen_x, screen_y = _project_corners(corners, origins, forward, right, up)
    if principal is not None:
        principal = np.asarray(principal, np.float32)
        screen_x, screen_y = screen_x + principal[:, 0, None, None], screen_y + principal[:, 1, None, None]
    screen_x, screen_y = screen_x / half, screen_y / half
    cols = (screen_x + 1.0) / 2.0 * render_size - 0.5
    rows = (1.0 - screen_y) / 2.0 * render_size - 0.5
    col0 = np.clip(np.floor(cols.min(-1)), 0, render_size - 1).astype(np.int64).ravel()
    col1 = np.clip(np.ceil(cols.max(-1)), 0, render_size - 1).astype(np.int64).ravel()
    row0 = np.clip(np.floor(rows.min(-1)), 0, render_size - 1).astype(np.int64).ravel()
    row1 = np.clip(np.ceil(rows.max(-1)), 0, render_size - 1).astype(np.int64).ravel()
    widths = col1 - col0 + 1
    areas = widths * (row1 - row0 + 1)

    # One candidate per (view, box, pixel in the rectangle).
    pair = np.repeat(np.arange(num_views * num_boxes), areas)
    offset = np.arange(pair.size) - np.repeat(np.cumsum(areas) - areas, areas)
    row = row0[pair] + offset // widths[pair]
    col = col0[pair] + offset % widths[pair]
    view, box = pair // num_boxes, pair % num_boxes
    x, y = _pixel_screen(row, col, render_size, half)
    if principal is not None:
        x, y = x - principal[view, 0], y - principal[view, 1]
    directions = forward[view] + x[:, None] * right[view] + y[:, None] * up[view]
    t_enter, t_exit, t_enter_axes = _slabs(corners[box], origins[view], directions)
    hit = np.nonzero((t_exit >= t_enter) & (t_enter > 0))[0]
    pixel = (row * render_size + col)[hit]
    key = view[hit] * render_size * render_size + pixel
    depth_buffer = np.full(num_views * render_size * render_size, np.inf, np.float32)
    np.minimum.at(depth_buffer, key, t_enter[hit])
    front = hit[t_enter[hit] == depth_buffer[key]]
    # Ties (touching boxes) go to the lowest box index, as argmin does in the reference.
    winner = np.full(depth_buffer.size, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(winner, view[front] * render_size * render_size + row[front] * render_size + col[front], front)
    chosen = winner[winner != np.iinfo(np.int64).max]

    image = np.full((num_views, render_size * render_size, 3), background, np.float32)
    if chosen.size:
        points = origins[view[chosen]] + t_enter[chosen, None] * directions[chosen]
        axis = t_enter_axes[chosen].argmax(axis=-1)
        _shade(boxes, box[chosen], axis, directions[chosen], points, image,
               view[chosen], row[chosen] * render_size + col[chosen])
    return _to_uint8(image, num_views, size, supersample)


def render_views_reference(
    boxes: TexturedBoxes,
    azimuths_deg: np.ndarray,
    elevations_deg: np.ndarray,
    size: int,
    distance: float,
    fov_deg: float,
    background: float = 1.0,
    supersample: int = 1,
) -> np.ndarray:
    """Plain reference of `render_views`: every ray against every box, argmin depth."""
    render_size = size * supersample
    origins, directions = camera_rays(azimuths_deg, elevations_deg, render_size, distance, fov_deg)
    num_views, num_pixels, _ = directions.shape
    corners = boxes.corners.astype(np.float32)
    t_enter, t_exit, t_enter_axes = _slabs(
        corners[None, None], origins[:, None, None, :], directions[:, :, None, :]
    )  # [V, P, B]
    depth = np.where((t_exit >= t_enter) & (t_enter > 0), t_enter, np.inf)
    nearest = depth.argmin(axis=-1)
    nearest_depth = np.take_along_axis(depth, nearest[..., None], axis=-1)[..., 0]
    image = np.full((num_views, num_pixels, 3), background, np.float32)
    view_index, pixel_index = np.nonzero(np.isfinite(nearest_depth))
    if view_index.size:
        box = nearest[view_index, pixel_index]
        ray = directions[view_index, pixel_index]
        points = origins[view_index] + nearest_depth[view_index, pixel_index, None] * ray
        axis = t_enter_axes[view_index, pixel_index, box].argmax(axis=-1)
        _shade(boxes, box, axis, ray, points, image, view_index, pixel_index)
    return _to_uint8(image, num_views, size, supersample)
