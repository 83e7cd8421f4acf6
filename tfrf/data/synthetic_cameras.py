"""Cameras of the built-in chairs, their jitter (the misaligned variant) and ground-truth flow.

A camera looks at the object's centre from azimuth a and elevation e (degrees, as in
`synthetic_render`) at a distance, turned about its viewing axis by a roll, with its principal
point moved by an image-plane shift. The aligned data uses the nominal cameras of the 54 view
bins (distance 3.5, no roll, no shift). The misaligned variant (`CameraJitter`) renders every
image from its own true camera: the bin's angles plus up to +-8 degrees, the distance times
1 +- 0.15, a shift of up to 6 % of the image side on each axis and a roll of up to +-5 degrees,
each uniform and drawn per image from the stream `(seed, split, object, JITTER_STREAM)`; the pose
label stays the nominal bin.

Geometry: for a camera with origin O, unit forward f and the rolled right/up vectors r, u, a
point P projects to screen coordinates x = (P - O).r / (P - O).f + px and y = (P - O).u /
(P - O).f + py (tangents; x right, y up), (px, py) = (2 t sx, -2 t sy) with t = tan(fov / 2) and
(sx, sy) the shift as a fraction of the image side (positive: the picture moves right, down).
Pixel (column c, row r) of an S x S image has its centre at x = ((c + 0.5) / S * 2 - 1) t,
y = (1 - (r + 0.5) / S * 2) t, so pixel centres sit at integer coordinates as in the flow
convention of docs/conventions.md.

Ground truth (`pair_ground_truth`): for every target pixel the ray through its centre is cast
against the boxes (float64, exact nearest hit); its surface point P is projected into the source
camera, which gives the backward flow (dx, dy) = (source column - x, source row - y) in pixels of
the S x S map; P is visible in the source when it lies in the source frame and no surface lies
between the source camera and P (the ray from the source camera reaches P first). Target pixels
that show the background are not visible. At size S / 4 or S / 8 the same rays through the
centres of the coarse pixels give the flow in that level's pixels (`ground_truth_levels`).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np

from tfrf.data.synthetic_render import TexturedBoxes, _slabs

JITTER_STREAM = 7  # the random stream of the jitter: (seed, split, object, JITTER_STREAM)
CAMERA_FIELDS = ("azimuth", "elevation", "distance", "roll", "shift_x", "shift_y")
_CHUNK = 1 << 14
_VISIBILITY_TOLERANCE = 1e-6  # relative: the source ray may reach P this much before it


@dataclasses.dataclass(frozen=True)
class CameraJitter:
    """How far the true camera of a misaligned image is from its bin (uniform, per image).

    Attributes:
        azimuth_deg, elevation_deg: largest angle offset off the bin, degrees.
        distance: largest relative change of the camera distance.
        shift: largest image-plane shift per axis, as a fraction of the image side.
        roll_deg: largest roll about the viewing axis, degrees.
    """

    azimuth_deg: float = 8.0
    elevation_deg: float = 8.0
    distance: float = 0.15
    shift: float = 0.06
    roll_deg: float = 5.0

    def cache_key(self) -> str:
        values = (self.azimuth_deg, self.elevation_deg, self.distance, self.shift, self.roll_deg)
        return "jit" + "_".join(f"{value:g}" for value in values)


MISALIGNED = CameraJitter()


@dataclasses.dataclass
class Cameras:
    """V cameras: float64 [V] arrays (angles in degrees, distance in object units, shift as a
    fraction of the image side) and the shared field of view in degrees."""

    azimuth: np.ndarray
    elevation: np.ndarray
    distance: np.ndarray
    roll: np.ndarray
    shift_x: np.ndarray
    shift_y: np.ndarray
    fov_deg: float

    def __post_init__(self):
        for name in CAMERA_FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), np.float64).reshape(-1))

    def __len__(self) -> int:
        return int(self.azimuth.shape[0])

    def take(self, indices) -> "Cameras":
        indices = np.asarray(indices).reshape(-1)
        return Cameras(*(getattr(self, name)[indices] for name in CAMERA_FIELDS), fov_deg=self.fov_deg)

    def as_array(self) -> np.ndarray:
        """float64 [V, 6]: azimuth, elevation, distance, roll, shift_x, shift_y."""
        return np.stack([getattr(self, name) for name in CAMERA_FIELDS], axis=-1)

    @classmethod
    def from_array(cls, values: np.ndarray, fov_deg: float) -> "Cameras":
        values = np.asarray(values, np.float64)
        return cls(*(values[:, i] for i in range(len(CAMERA_FIELDS))), fov_deg=fov_deg)

    @property
    def half(self) -> float:
        """tan(fov / 2): the screen half-width."""
        return float(np.tan(np.radians(self.fov_deg) / 2.0))

    def basis(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Origins, forward, right and up vectors, float64 [V, 3] (right and up rolled)."""
        azimuth, elevation = np.radians(self.azimuth), np.radians(self.elevation)
        direction = np.stack([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                              np.cos(elevation) * np.cos(azimuth)], axis=-1)
        origins = self.distance[:, None] * direction
        forward = -direction
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
        right /= np.linalg.norm(right, axis=-1, keepdims=True)
        up = np.cross(right, forward)
        roll = np.radians(self.roll)[:, None]
        rolled_right = np.cos(roll) * right + np.sin(roll) * up
        rolled_up = -np.sin(roll) * right + np.cos(roll) * up
        return origins, forward, rolled_right, rolled_up

    def principal(self) -> np.ndarray:
        """float64 [V, 2]: the principal point (px, py) in screen units."""
        return np.stack([2.0 * self.half * self.shift_x, -2.0 * self.half * self.shift_y], axis=-1)

    def is_nominal(self) -> bool:
        return not (np.any(self.roll) or np.any(self.shift_x) or np.any(self.shift_y))


def nominal_cameras(azimuths_deg, elevations_deg, distance: float, fov_deg: float) -> Cameras:
    """The look-at cameras of the bins: no roll, no shift."""
    azimuths = np.asarray(azimuths_deg, np.float64)
    zeros = np.zeros_like(azimuths)
    return Cameras(azimuths, np.asarray(elevations_deg, np.float64), np.full_like(azimuths, distance), zeros, zeros,
                   zeros, fov_deg=fov_deg)


def jitter_cameras(cameras: Cameras, rng: np.random.Generator, jitter: CameraJitter = MISALIGNED) -> Cameras:
    """`cameras` moved off their bins by uniform draws within `jitter` (one row of 6 per camera)."""
    draws = rng.uniform(-1.0, 1.0, (len(cameras), len(CAMERA_FIELDS)))
    return Cameras(
        azimuth=cameras.azimuth + jitter.azimuth_deg * draws[:, 0],
        elevation=cameras.elevation + jitter.elevation_deg * draws[:, 1],
        distance=cameras.distance * (1.0 + jitter.distance * draws[:, 2]),
        roll=cameras.roll + jitter.roll_deg * draws[:, 3],
        shift_x=cameras.shift_x + jitter.shift * draws[:, 4],
        shift_y=cameras.shift_y + jitter.shift * draws[:, 5],
        fov_deg=cameras.fov_deg,
    )


def render_kwargs(cameras: Cameras) -> Dict[str, object]:
    """Keyword arguments of `synthetic_render.render_views` for `cameras` (the angle arguments
    are still needed; `basis` and `principal` carry the true cameras)."""
    return {"basis": tuple(v.astype(np.float32) for v in cameras.basis()),
            "principal": cameras.principal().astype(np.float32)}


def _pixel_rays(cameras: Cameras, size: int):
    """Origins [V, 3] and directions [V, size * size, 3] (float64) through the pixel centres."""
    origins, forward, right, up = cameras.basis()
    half = cameras.half
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    x = ((cols.ravel() + 0.5) / size * 2.0 - 1.0) * half
    y = (1.0 - (rows.ravel() + 0.5) / size * 2.0) * half
    principal = cameras.principal()
    x = x[None] - principal[:, 0, None]
    y = y[None] - principal[:, 1, None]
    directions = forward[:, None] + x[..., None] * right[:, None] + y[..., None] * up[:, None]
    return origins, directions


def _nearest_hit(corners: np.ndarray, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance (in units of `directions`) to the nearest box along each ray, inf for none:
    origins [N, 3] and directions [N, 3] -> [N], in chunks of `_CHUNK` rays."""
    nearest = np.empty(directions.shape[0], np.float64)
    for start in range(0, directions.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        t_enter, t_exit, _ = _slabs(corners[None], origins[rows, None, :], directions[rows, None, :])
        nearest[rows] = np.where((t_exit >= t_enter) & (t_enter > 0), t_enter, np.inf).min(axis=-1)
    return nearest


def project(cameras: Cameras, points: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns, rows (pixel centres at integers of an S x S image) and depths of points
    [V, N, 3] seen by the V cameras, each [V, N]."""
    origins, forward, right, up = cameras.basis()
    relative = points - origins[:, None]
    depth = np.einsum("vnc,vc->vn", relative, forward)
    principal = cameras.principal()
    x = np.einsum("vnc,vc->vn", relative, right) / depth + principal[:, 0, None]
    y = np.einsum("vnc,vc->vn", relative, up) / depth + principal[:, 1, None]
    half = cameras.half
    return (x / half + 1.0) / 2.0 * size - 0.5, (1.0 - y / half) / 2.0 * size - 0.5, depth


def surface_points(boxes: TexturedBoxes, cameras: Cameras, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The surface point seen through every pixel centre: float64 [V, S*S, 3] and bool hit [V, S*S]."""
    corners = boxes.corners.astype(np.float64)
    origins, directions = _pixel_rays(cameras, size)
    views, pixels = directions.shape[:2]
    depth = _nearest_hit(corners, np.repeat(origins, pixels, axis=0), directions.reshape(-1, 3)).reshape(views, pixels)
    hit = np.isfinite(depth)
    # A pixel that shows the background gets the object's centre (any point in front of every camera).
    points = np.where(hit[..., None], origins[:, None] + np.where(hit, depth, 0.0)[..., None] * directions, 0.0)
    return points, hit


def pair_ground_truth(boxes: TexturedBoxes, source: Cameras, target: Cameras,
                      size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward flow and visibility of V (source, target) camera pairs at S x S.

    Returns:
        flow float32 [V, S, S, 2] (target pixel (x, y) sees source pixel (x + dx, y + dy); 0 where
        the target shows the background), visible bool [V, S, S] and shown bool [V, S, S] (the
        target pixel's centre ray hits the object).
    """
    if len(source) != len(target):
        raise ValueError(f"pair_ground_truth: {len(source)} source and {len(target)} target cameras")
    points, hit = surface_points(boxes, target, size)
    cols, rows, depth = project(source, points, size)
    grid_rows, grid_cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    flow = np.stack([cols - grid_cols.ravel()[None], rows - grid_rows.ravel()[None]], axis=-1)
    in_frame = (cols >= -0.5) & (cols <= size - 0.5) & (rows >= -0.5) & (rows <= size - 0.5) & (depth > 0)
    origins = source.basis()[0]
    corners = boxes.corners.astype(np.float64)
    views, pixels = hit.shape
    to_point = (points - origins[:, None]).reshape(-1, 3)  # the source ray reaches P at distance 1
    reached = _nearest_hit(corners, np.repeat(origins, pixels, axis=0), to_point).reshape(views, pixels)
    visible = hit & in_frame & (reached >= 1.0 - _VISIBILITY_TOLERANCE)
    flow = np.where(hit[..., None], flow, 0.0)
    return (flow.reshape(views, size, size, 2).astype(np.float32), visible.reshape(views, size, size),
            hit.reshape(views, size, size))


LEVELS = {"h": 1, "h4": 4, "h8": 8}


def level_sizes(image_size: int) -> Dict[str, int]:
    """{"h": S, "h4": S / 4, "h8": S / 8}: the sizes of the ground-truth levels."""
    if image_size % 8:
        raise ValueError(f"ground-truth levels need an image size divisible by 8, got {image_size}")
    return {level: image_size // stride for level, stride in LEVELS.items()}
