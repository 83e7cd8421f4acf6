"""tf.data input pipeline: K+1 tuples of views -> the generator's example dict, batched.

`make_dataset` draws K+1 tuples over a `ViewTable` (`tfrf.data.view_table`; from prepared TFDS
data: `tfrf.data.tfds_table.table_from_tfds`) with `tfrf.data.tuples`, loads the images, encodes
the poses with the table's pose encoder (`tfrf.pose.encoder`) and yields

    {"source_images": [B,K,H,W,3], "source_poses": [B,K,H,W,Cp],
     "target_pose": [B,H,W,Cp], "target_image": [B,H,W,3]}

with images float32 in [-1, 1]. Training draws fresh random tuples every epoch (seed + epoch),
shuffled, forever; evaluation makes one pass over a fixed tuple list.

`ViewTable`, `table_from_tfds` and `read_split_columns` are importable from here too.
"""
from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrf import pose as pose_lib
from tfrf.data import tuples as tuples_lib
from tfrf.data.tfds_columns import read_split_columns
from tfrf.data.tfds_table import table_from_tfds
from tfrf.data.view_table import ArrayOrLoader, ViewTable

__all__ = ["ViewTable", "make_dataset", "read_split_columns", "table_from_tfds"]


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
    gather_target = (None if table.target_images is None
                     else _gatherer(table.target_images, table.target_image, table.target_image(0)))
    gather_poses = _gatherer(table.poses, table.pose, np.asarray(table.pose(0)))

    def load(indices, position=None):
        images = gather_images(indices)
        if gather_target is not None:  # the target from the table's target images
            images = tf.concat([images[:k], gather_target(indices[k:])], axis=0)
        images = tf.cast(images, tf.float32) / 127.5 - 1.0
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
