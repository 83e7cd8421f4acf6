"""A prepared TFDS split as a `ViewTable`: feature names, pose encoder and frame window from the
metadata stored with the data, images in memory or read on demand."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from tfrf.data.tfds_columns import has_random_access, read_split_columns
from tfrf.data.view_table import ArrayOrLoader, ViewTable


def table_from_tfds(
    builder_or_dataset,
    split: str,
    *,
    image_key: Optional[str] = None,
    pose_key: Optional[str] = None,
    group_key: Optional[str] = None,
    order_key: Optional[str] = None,
    targets_ok_key: Optional[str] = None,
    pose_encoder: Optional[str] = None,
    in_memory: Optional[bool] = None,
) -> ViewTable:
    """Loads a prepared TFDS split as a `ViewTable`.

    Feature names, the pose encoder and the frame window default to what the prepared data
    say (`tfrf.datasets.prepared.view_table_of`: the `view_table` metadata stored with the data,
    so a read-only `tfds.builder_from_directory` builder has them), else to "image", "pose",
    "group", none, none, "keypoints18", no window.

    Args:
        builder_or_dataset: a prepared `tfds.core.DatasetBuilder`, or a dataset name for
            `tfds.builder`.
        split: the split name, e.g. "train".
        image_key, pose_key, group_key, order_key, targets_ok_key: feature names.
        pose_encoder: the registry name of the pose encoder.
        in_memory: keep every image in RAM (default: only when the data is not stored in a
            random-access format). Otherwise images are read on demand through
            `builder.as_data_source` (array_record).
    """
    import tensorflow_datasets as tfds

    from tfrf.datasets.prepared import view_table_of

    builder = builder_or_dataset
    if isinstance(builder, str):
        import tfrf.datasets  # noqa: F401  registers the builders

        builder = tfds.builder(builder)
    defaults = {"image": "image", "pose": "pose", "group": "group", "order": None, "targets_ok": None,
                "pose_encoder": "keypoints18", "max_offset": None}
    defaults.update({key: value for key, value in view_table_of(builder).items() if value is not None})
    keys = {
        "image": image_key or defaults["image"],
        "pose": pose_key or defaults["pose"],
        "group": group_key or defaults["group"],
        "order": order_key or defaults["order"],
        "targets_ok": targets_ok_key or defaults["targets_ok"],
    }
    pose_encoder = pose_encoder or defaults["pose_encoder"]

    features = builder.info.features
    missing = [key for key in keys.values() if key is not None and key not in features]
    if missing:
        raise ValueError(f"{builder.name} has no features {missing}; it has {sorted(features.keys())}")
    random_access = has_random_access(builder)
    if in_memory is None:
        in_memory = not random_access
    if not in_memory and not random_access:
        raise ValueError(
            f"{builder.name} split {split!r} is stored as {builder.info.file_format}; reading images "
            "on demand needs array_record (prepare the builder with file_format='array_record')"
        )

    # Read on demand (not in memory): the images, and the poses too when they are images
    # themselves (VoxCeleb2's landmark drawings: 196 KB a frame).
    on_demand = set() if in_memory else {"image"}
    if not in_memory and isinstance(features[keys["pose"]], tfds.features.Image):
        on_demand.add("pose")
    wanted = [key for name, key in keys.items() if key is not None and name not in on_demand]
    columns = read_split_columns(builder, split, wanted, skip_decoding=[keys[name] for name in on_demand])
    if not len(columns[keys["group"]]):
        raise ValueError(f"{builder.name} split {split!r} is empty")
    column = lambda name: columns[keys[name]] if keys[name] is not None else None  # noqa: E731
    loaded: Dict[str, ArrayOrLoader] = {name: np.stack(column(name)) for name in ("image", "pose") if name not in on_demand}
    if on_demand:
        source = builder.as_data_source(split=split)
        for name in on_demand:
            loaded[name] = (lambda key: lambda index: source[index][key])(keys[name])
    return ViewTable(
        images=loaded["image"],
        poses=loaded["pose"],
        groups=np.asarray(column("group"), dtype=np.int64),
        order=column("order"),
        targets_ok=column("targets_ok"),
        pose_encoder=pose_encoder,
        max_offset=defaults["max_offset"] if keys["order"] is not None else None,
    )
