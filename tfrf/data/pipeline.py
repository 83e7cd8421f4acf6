"""tf.data input pipeline: K+1 tuples of views -> DESIGN.md's example dict, batched.

A `ViewTable` is one prepared split with each image stored once: images (an in-memory array,
or an index -> image callable for data that does not fit in RAM), raw poses, groups and
optional frame order / target eligibility. `make_dataset` draws K+1 tuples over it
(`tfrf.data.tuples`), loads the images, encodes the poses with the table's pose encoder
(`tfrf.pose.encoder`) and yields

    {"source_images": [B,K,H,W,3], "source_poses": [B,K,H,W,Cp],
     "target_pose": [B,H,W,Cp], "target_image": [B,H,W,3]}

with images float32 in [-1, 1]. Training draws fresh random tuples every epoch (seed + epoch),
shuffled, forever; evaluation makes one pass over a fixed tuple list.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from tfrf import pose as pose_lib
from tfrf.data import tuples as tuples_lib

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
    """

    images: ArrayOrLoader
    poses: ArrayOrLoader
    groups: np.ndarray
    order: Optional[np.ndarray] = None
    targets_ok: Optional[np.ndarray] = None
    pose_encoder: str = "keypoints18"
    max_offset: Optional[int] = None

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
        for name in ("images", "poses"):
            value = getattr(self, name)
            if callable(value):
                continue
            value = np.asarray(value)
            if value.shape[:1] != (num_images,):
                raise ValueError(f"ViewTable.{name} must have N = {num_images} rows like groups, got shape {value.shape}")
            setattr(self, name, value)
        image = self.image(0) if num_images else None
        if image is not None and (image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8):
            raise ValueError(f"ViewTable.images must be uint8 [N, H, W, 3], got an image of {image.dtype} {image.shape}")
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


def _gatherer(values: ArrayOrLoader, read: Callable[[int], np.ndarray], example: np.ndarray):
    """A TF function `indices [K+1] -> values [K+1, ...]` over an array or a loader."""
    shape, dtype = example.shape, tf.as_dtype(example.dtype)
    if not callable(values):
        tensor = tf.convert_to_tensor(values)
        return lambda indices: tf.gather(tensor, indices)

    def load(indices: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(read(int(index)), dtype=example.dtype) for index in indices])

    def gather(indices):
        loaded = tf.numpy_function(load, [indices], dtype, stateful=False)
        return tf.ensure_shape(loaded, [None, *shape])

    return gather


def _tuple_indices(table: ViewTable, k: int, *, training: bool, seed: int, tuples, max_offset,
                   start_epoch: int, skip: int = 0) -> tf.data.Dataset:
    """A dataset of int64 [K+1] index rows: random per epoch (training) or a fixed list.

    Training: the rows of epoch e are a permutation of that epoch's draw (seed + e); the stream
    starts at epoch `start_epoch` and leaves out its first `skip` rows (which may run over
    several epochs), so a resumed run continues at exactly the tuple it had reached.
    """
    tuple_kwargs = table.tuple_kwargs(max_offset)
    if tuples is not None:
        tuples = tuples_lib.check_tuples(tuples, table.groups, k)
    elif not training:
        tuples = tuples_lib.fixed_test_tuples(table.groups, k, seed, **tuple_kwargs)
    if not training:
        if not len(tuples):
            raise ValueError(f"no test tuples with K = {k}: every group has fewer than {k + 1} usable images")
        return tf.data.Dataset.from_tensor_slices(tuples)

    def epoch_tuples(epoch: int) -> np.ndarray:
        rng = np.random.default_rng(seed + epoch)
        drawn = tuples if tuples is not None else tuples_lib.draw_tuples(table.groups, k, rng, **tuple_kwargs)
        return drawn[rng.permutation(len(drawn))]

    if not len(epoch_tuples(start_epoch)):
        raise ValueError(f"no training tuples with K = {k}: every group has fewer than {k + 1} usable images")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")

    def epochs():
        remaining = skip
        for epoch in itertools.count(start_epoch):
            drawn = epoch_tuples(epoch)
            if remaining >= len(drawn):
                remaining -= len(drawn)
                continue
            yield drawn[remaining:]
            remaining = 0

    signature = tf.TensorSpec([None, k + 1], tf.int64)
    return tf.data.Dataset.from_generator(epochs, output_signature=signature).unbatch()


def make_dataset(
    table: ViewTable,
    k: int,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    tuples: Optional[np.ndarray] = None,
    max_offset: Optional[int] = None,
    image_size: Optional[Sequence[int]] = None,
    drop_remainder: Optional[bool] = None,
    start_epoch: int = 0,
    skip: int = 0,
    augment=None,
    shard: Optional[Tuple[int, int]] = None,
) -> tf.data.Dataset:
    """The batched example dataset of K+1 tuples drawn from `table`.

    Args:
        table: the prepared split.
        k: number of sources K >= 1.
        batch_size: examples per batch.
        training: True: fresh random tuples every epoch (epoch e uses seed + e), shuffled,
            repeated forever. False: one pass over `tuples` (or `fixed_test_tuples(seed)`).
        seed: seed of the tuple draws.
        tuples: optional int [M, K+1] tuples to use instead of drawing them (training
            reshuffles them every epoch).
        max_offset: sources within this many `table.order` steps of the target (KITTI);
            default `table.max_offset` (what the prepared data says).
        image_size: optional (H, W) to resize images and pose maps to; poses are encoded at
            the stored size first, so keypoint heatmaps keep their relative width.
        drop_remainder: defaults to `training`.
        start_epoch: the epoch to start from (to resume the same sequence of tuple draws).
        skip: training only: leave out the first `skip` tuples of the stream from
            `start_epoch` on. Resuming at global step s with batch B: `skip = s * B`
            (`start_epoch = 0`) continues with exactly the tuple an uninterrupted run would see.
        augment: training only: a `tfrf.data.augment.AugmentConfig` (GFLA's Market augmentation)
            applied to each tuple's images and raw keypoints before the heatmaps are drawn, seeded
            by (seed, position of the tuple in the stream), so a resumed run augments alike.
            Needs keypoint poses.
        shard: training only: `(index, count)` to take, of every global batch of `batch_size`
            tuples, the contiguous part `[index * b, (index + 1) * b)` with `b = batch_size / count`
            (one worker's share under multi-worker training): every worker draws the same seeded
            stream and keeps its own slice, so the workers see disjoint tuples whose union is the
            single-process batch. Batches then hold `b` examples; images of the other parts are
            never loaded.

    Returns:
        A `tf.data.Dataset` of dicts: source_images [B,K,H,W,3], source_poses [B,K,H,W,Cp],
        target_pose [B,H,W,Cp], target_image [B,H,W,3], all float32.
    """
    if k < 1:
        raise ValueError(f"k (the number of sources) must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not len(table):
        raise ValueError("make_dataset: the ViewTable is empty")
    if drop_remainder is None:
        drop_remainder = training
    if max_offset is None:
        max_offset = table.max_offset
    stored_height, stored_width, _ = table.image_shape
    if image_size is not None:
        image_size = tuple(int(size) for size in image_size)
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (height, width), got {image_size}")
    if augment is not None and table.pose_encoder != "keypoints18":
        raise ValueError(f"augment transforms keypoints; this table's poses are {table.pose_encoder!r}")
    encode = pose_lib.encoder(table.pose_encoder)
    channels = table.pose_channels
    gather_images = _gatherer(table.images, table.image, table.image(0))
    gather_poses = _gatherer(table.poses, table.pose, np.asarray(table.pose(0)))

    def load(indices, position=None):
        images = tf.cast(gather_images(indices), tf.float32) / 127.5 - 1.0
        raw_poses = gather_poses(indices)
        if position is not None:
            from tfrf.data.augment import augment_example

            images, raw_poses = augment_example(images, raw_poses, tf.stack([tf.cast(seed, tf.int64), position]),
                                                augment)
        poses = tf.stack(
            [tf.cast(encode(raw_poses[i], stored_height, stored_width), tf.float32) for i in range(k + 1)]
        )
        poses = tf.ensure_shape(poses, [k + 1, stored_height, stored_width, channels])
        images = tf.ensure_shape(images, [k + 1, stored_height, stored_width, 3])
        if image_size is not None and image_size != (stored_height, stored_width):
            images = tf.clip_by_value(tf.image.resize(images, image_size, antialias=True), -1.0, 1.0)
            poses = tf.image.resize(poses, image_size, antialias=True)
        return {
            "source_images": images[:k],
            "source_poses": poses[:k],
            "target_pose": poses[k],
            "target_image": images[k],
        }

    indices = _tuple_indices(
        table, k, training=training, seed=seed, tuples=tuples, max_offset=max_offset, start_epoch=start_epoch,
        skip=skip,
    )
    if augment is not None and training:
        indices = indices.enumerate(start=skip).map(lambda position, row: (row, position))
    if shard is not None:
        indices, batch_size = _shard_rows(indices, batch_size, shard, training)
    dataset = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _shard_rows(rows: tf.data.Dataset, batch_size: int, shard: Tuple[int, int], training: bool):
    """(rows of part `index` of each global batch, the part's batch size): see `make_dataset`'s `shard`."""
    if not training:
        raise ValueError("make_dataset: shard is for training streams (training=True)")
    index, count = (int(value) for value in shard)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"make_dataset: shard must be (index, count) with 0 <= index < count, got {tuple(shard)}")
    if batch_size % count:
        raise ValueError(f"make_dataset: batch_size {batch_size} is not divisible by the shard count {count}")
    part = batch_size // count
    begin, end = index * part, (index + 1) * part

    def take(*element):
        sliced = tuple(value[begin:end] for value in element)
        return sliced if len(sliced) > 1 else sliced[0]

    return rows.batch(batch_size, drop_remainder=True).map(take).unbatch(), part


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
    random_access = _has_random_access(builder)
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


def _has_random_access(builder) -> bool:
    try:
        formats = builder.info.available_file_formats()
    except AttributeError:
        formats = {builder.info.file_format}
    return any(getattr(fmt, "value", fmt) == "array_record" for fmt in formats)


def read_split_columns(builder, split: str, keys: Sequence[str], skip_decoding: Sequence[str] = (),
                       chunk: int = 1024) -> Dict[str, list]:
    """Reads features `keys` of every example of a prepared split, in its stored order.

    Args:
        builder: a prepared `tfds.core.DatasetBuilder` (tfrecord or array_record).
        split: the split name.
        keys: top-level feature names to read.
        skip_decoding: features read as their encoded bytes (e.g. images not needed now).
        chunk: examples per random-access read.

    Returns:
        feature name -> list of numpy values, one per example.
    """
    import tensorflow_datasets as tfds

    decoders = {key: tfds.decode.SkipDecoding() for key in skip_decoding} or None
    columns: Dict[str, list] = {key: [] for key in keys}
    if _has_random_access(builder):
        source = builder.as_data_source(split=split, decoders=decoders)
        for start in range(0, len(source), chunk):
            for example in source.__getitems__(list(range(start, min(start + chunk, len(source))))):
                for key in keys:
                    columns[key].append(example[key])
        return columns
    dataset = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    for example in tfds.as_numpy(dataset):
        for key in keys:
            columns[key].append(example[key])
    return columns
