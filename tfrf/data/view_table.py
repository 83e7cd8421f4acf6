"""`ViewTable`: one prepared split with each image stored once, what `make_dataset` draws from.

A table holds the images (an in-memory array, or an index -> image callable for data that does
not fit in RAM), the raw poses, the groups and optional frame order / target eligibility, and
names its pose encoder (`tfrf.pose.encoder`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from tfrf import pose as pose_lib

ArrayOrLoader = Union[np.ndarray, Callable[[int], np.ndarray]]


@dataclasses.dataclass
class ViewTable:
    """One prepared split: every image once, with its raw pose and group.

    Attributes:
        images: uint8 [N, H, W, 3], or a callable `index -> uint8 [H, W, 3]` (random access,
            e.g. a `tfds.data_source`), for data that does not fit in memory.
        poses: raw poses [N, ...] as the pose encoder takes them (keypoints [18, 2], view
            bins [2], a 6-DOF vector [6], a landmark drawing [H, W, 3]), or a callable
            `index -> raw pose`.
        groups: int64 [N], the identity / object / sequence / video of each image.
        order: optional int [N] (e.g. frame numbers), for `max_offset` windows.
        targets_ok: optional bool [N]; images allowed as targets.
        pose_encoder: a name of the `tfrf.pose` encoder registry.
        max_offset: with `order`, the largest order offset between a source and its target
            (KITTI's frame window); the default of `make_dataset`'s `max_offset`.
        target_images: optional, like `images`: the image of each row where it is a tuple's
            target (e.g. the built-in chairs' `misaligned_sources` variant: sources from jittered
            cameras, targets at the camera their label names); default `images`.
    """

    images: ArrayOrLoader
    poses: ArrayOrLoader
    groups: np.ndarray
    order: Optional[np.ndarray] = None
    targets_ok: Optional[np.ndarray] = None
    pose_encoder: str = "keypoints18"
    max_offset: Optional[int] = None
    target_images: Optional[ArrayOrLoader] = None

    def __post_init__(self):
        self.groups = np.asarray(self.groups, dtype=np.int64)
        if self.groups.ndim != 1:
            raise ValueError(f"ViewTable.groups must have shape [N], got {self.groups.shape}")
        num_images = self.groups.shape[0]
        if self.order is not None:
            self.order = np.asarray(self.order, dtype=np.int64)
        if self.targets_ok is not None:
            self.targets_ok = np.asarray(self.targets_ok, dtype=bool)
        for name in ("order", "targets_ok"):
            value = getattr(self, name)
            if value is not None and value.shape != (num_images,):
                raise ValueError(f"ViewTable.{name} must have shape [N] = [{num_images}], got {value.shape}")
        for name in ("images", "poses", "target_images"):
            value = getattr(self, name)
            if value is None or callable(value):
                continue
            value = np.asarray(value)
            if value.shape[:1] != (num_images,):
                raise ValueError(f"ViewTable.{name} must have N = {num_images} rows like groups, got shape {value.shape}")
            setattr(self, name, value)
        image = self.image(0) if num_images else None
        if image is not None and (image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8):
            raise ValueError(f"ViewTable.images must be uint8 [N, H, W, 3], got an image of {image.dtype} {image.shape}")
        if self.target_images is not None and num_images:
            target = self.target_image(0)
            if target.dtype != np.uint8 or target.shape != image.shape:
                raise ValueError(f"ViewTable.target_images must be uint8 [N, {', '.join(map(str, image.shape))}] like "
                                 f"images, got an image of {target.dtype} {target.shape}")
        pose_lib.encoder_channels(self.pose_encoder)  # raises for an unknown name
        if self.max_offset is not None and self.order is None:
            raise ValueError("ViewTable.max_offset needs ViewTable.order (e.g. frame numbers)")

    def __len__(self) -> int:
        return int(self.groups.shape[0])

    def image(self, index: int) -> np.ndarray:
        """The uint8 [H, W, 3] image `index`."""
        if callable(self.images):
            return np.asarray(self.images(int(index)))
        return self.images[index]

    def target_image(self, index: int) -> np.ndarray:
        """The uint8 [H, W, 3] image `index` where it is a target (`target_images`, else `image`)."""
        if self.target_images is None:
            return self.image(index)
        if callable(self.target_images):
            return np.asarray(self.target_images(int(index)))
        return self.target_images[index]

    def pose(self, index: int) -> np.ndarray:
        """The raw pose of image `index`."""
        if callable(self.poses):
            return np.asarray(self.poses(int(index)))
        return self.poses[index]

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        if not len(self):
            raise ValueError("ViewTable is empty")
        return tuple(self.image(0).shape)

    @property
    def pose_channels(self) -> int:
        return pose_lib.encoder_channels(self.pose_encoder)

    def tuple_kwargs(self, max_offset: Optional[int] = None) -> Dict[str, Any]:
        """Keyword arguments of `draw_tuples` / `fixed_test_tuples` for this table."""
        kwargs: Dict[str, Any] = {"targets_ok": self.targets_ok}
        if max_offset is not None:
            if self.order is None:
                raise ValueError("max_offset needs ViewTable.order (e.g. frame numbers)")
            kwargs.update(order=self.order, max_offset=max_offset)
        return kwargs
