"""Static shape checks of op and layer inputs: a ValueError that names the caller, the tensor and
the expected layout.

Only known (static) dimensions are checked, so traced functions with unknown sizes pass through.
"""
from __future__ import annotations

from typing import Optional


def check_rank(tensor, rank: int, where: str, name: str, layout: str, last: Optional[int] = None) -> None:
    """Raises `ValueError("{where}: {name} must be {layout}, got shape {shape}")` when `tensor`'s
    static rank is not `rank` or, with `last`, its static last dimension is not `last`."""
    shape = tensor.shape
    if shape.rank is not None and (shape.rank != rank or (last is not None and shape[-1] not in (None, last))):
        raise ValueError(f"{where}: {name} must be {layout}, got shape {shape}")


def check_same_first_dimension(where: str, first_name: str, first, second_name: str, second, what: str) -> None:
    """Raises `ValueError("{where}: {first_name} {shape} and {second_name} {shape} must have the
    same {what}")` when the static sizes of axis 0 of `first` and `second` are known and differ."""
    size, other = first.shape[0], second.shape[0]
    if size is not None and other is not None and size != other:
        raise ValueError(
            f"{where}: {first_name} {first.shape} and {second_name} {second.shape} must have the same {what}"
        )
