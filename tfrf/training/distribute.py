"""Distribution strategies of `tfrf train`: creation, worker identity, the per-worker data and
where each worker writes.

    default       one device (`tf.distribute.get_strategy()`)
    mirrored      `MirroredStrategy` over the local GPUs (the CPU when there is none)
    multi-worker  `MultiWorkerMirroredStrategy` from `TF_CONFIG` (CPU/GPU collectives, RING or NCCL
                  as TF's AUTO picks); create it before any other TensorFlow op runs
    tpu           `TPUStrategy` from `TPUClusterResolver` (untested here: no TPU)

Global batch semantics: the run's `batch_size` is the global batch B; each of the R replicas
trains on B / R examples (B must be divisible by R). Every loss is a mean over the replica's
examples and the `TrainingModel` divides the optimised totals by R, so the summed gradients are
those of the global mean: the learning rate is that of batch B, whatever the number of workers
(no scaling rule is applied).

Data: every worker draws the same seeded stream of global batches (`make_dataset` with the run's
seed and `skip = step * B`, so a resumed run continues at exactly the tuple it had reached) and
keeps its own contiguous part of each (`make_dataset(shard=(worker, workers))`, examples
`[worker * B/W, (worker + 1) * B/W)`); a worker with several local replicas splits its part into
per-replica batches of B / R in order. The workers thus see disjoint tuples whose union is the
single-process global batch.

Writes: only the chief (task "chief", else worker 0) writes the run directory (config, data
record, checkpoints, TensorBoard logs, generator weights). The other workers take part in every
save (MultiWorkerMirroredStrategy may run collectives while saving) into a temporary directory
of their own, deleted right after. The run directory must be readable by every worker (a shared
file system) so that all of them restore the same checkpoint.
"""
from __future__ import annotations

import dataclasses
import errno
import fnmatch
import json
import os
import re
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Union

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    """This process's place in the cluster (`TF_CONFIG`): task type and index, worker count, chief."""

    task_type: Optional[str] = None
    task_id: int = 0
    num_workers: int = 1
    is_chief: bool = True


def parse_tf_config(text: Optional[str] = None) -> WorkerIdentity:
    """The identity that `TF_CONFIG` (the JSON `text`, default the environment's) describes.

    `{"cluster": {"chief": [...]?, "worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}`;
    the chief is task "chief", or worker 0 when the cluster has no "chief" task. No TF_CONFIG: one
    worker, the chief.

    Raises:
        ValueError: TF_CONFIG is not JSON, lacks "cluster" or "task", or names a task it lacks.
    """
    text = os.environ.get("TF_CONFIG", "") if text is None else text
    if not text.strip():
        return WorkerIdentity()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error})") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task:
        raise ValueError('TF_CONFIG needs {"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": I}}')
    task_type, task_id = str(task["type"]), int(task.get("index", 0))
    if task_type not in cluster or not 0 <= task_id < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task {task_type}:{task_id} is not in its cluster {sorted(cluster)}")
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return WorkerIdentity(task_type, task_id, workers, chief)


def create_strategy(name: str = "default", tpu: Optional[str] = None) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy `name` (one of `STRATEGIES`).

    "multi-worker" must be created before any TensorFlow op has run in the process (TF
    configures its collectives at start-up); `TF_CONFIG` is checked first.

    Raises:
        ValueError: an unknown name, a malformed TF_CONFIG, or "tpu" without a reachable TPU.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        parse_tf_config()  # a clear error before TF reads it
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        try:
            return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as error:
            raise RuntimeError(f"--strategy multi-worker must be created before any other TensorFlow op ({error})") \
                from None
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise ValueError(f"--strategy tpu: no TPU found ({str(error).splitlines()[0] if str(error) else error}); "
                             "run on a TPU VM or set TPU_NAME") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")


def identity(strategy: Optional[tf.distribute.Strategy] = None) -> WorkerIdentity:
    """This worker's identity under `strategy`: the `TF_CONFIG` one for a multi-worker strategy,
    else a single chief."""
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return parse_tf_config()
    return WorkerIdentity()


def is_chief(strategy: Optional[tf.distribute.Strategy] = None) -> bool:
    """Whether this process writes the run directory."""
    return identity(strategy).is_chief


def check_global_batch(batch_size: int, strategy: Union[None, int, tf.distribute.Strategy] = None) -> int:
    """The per-replica batch of the global `batch_size` under `strategy` (or a replica count).

    Raises:
        ValueError: `batch_size` is not divisible by the replica count.
    """
    if isinstance(strategy, int):
        replicas = strategy
    else:
        replicas = (strategy or tf.distribute.get_strategy()).num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(f"--batch-size {batch_size} (the global batch) is not divisible by the {replicas} replicas "
                         f"of this strategy; use a multiple of {replicas}")
    return batch_size // replicas


def distributed_dataset_fn(dataset_of: Callable[..., tf.data.Dataset], batch_size: int,
                           strategy: Optional[tf.distribute.Strategy] = None) -> Callable[[int], object]:
    """`start_step -> ` the training input of `strategy` for `model.fit`.

    Args:
        dataset_of: `(start_step, shard) -> ` the batched training dataset, with `shard` None (all of
            each global batch) or `(worker, workers)`: e.g. `make_dataset(..., skip=start_step * B,
            shard=shard)`.
        batch_size: the global batch B.
        strategy: default: the current one. With one replica the plain dataset is returned;
            otherwise a `DistributedDataset` of `distribute_datasets_from_function`, each worker's
            part split into per-replica batches of B / R.
    """
    strategy = strategy or tf.distribute.get_strategy()
    per_replica = check_global_batch(batch_size, strategy)
    if strategy.num_replicas_in_sync == 1 and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return lambda start_step: dataset_of(start_step, None)

    def dataset_fn(start_step: int):
        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            workers = context.num_input_pipelines
            dataset = dataset_of(start_step, (context.input_pipeline_id, workers) if workers > 1 else None)
            if context.num_replicas_in_sync // workers > 1:  # local replicas take consecutive per-replica batches
                dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
            return dataset.prefetch(tf.data.AUTOTUNE)

        return strategy.distribute_datasets_from_function(per_worker)

    return dataset_fn


class WorkerWrites:
    """Where this worker writes: the run directory for the chief, else a temporary directory of
    its own, deleted by `clean()` (and after each `save_into`).

    Args:
        out_dir: the run directory.
        chief: whether this worker is the chief.
    """

    def __init__(self, out_dir: str, chief: bool = True):
        self.out_dir = out_dir
        self.chief = chief

    def save_into(self, relative: str, save: Callable[[str], object]) -> None:
        """Call `save(path)` with `OUT/relative` on the chief, or with the same name in a fresh
        temporary directory (deleted at once) on another worker."""
        if self.chief:
            save(os.path.join(self.out_dir, relative))
            return
        temporary = tempfile.mkdtemp(prefix="tfrf-worker-")
        try:
            save(os.path.join(temporary, relative))
        finally:
            shutil.rmtree(temporary, ignore_errors=True)


CHECKPOINT_STATE = "checkpoint"  # the state file tf.train.CheckpointManager keeps in its directory
# What a killed or failed tf.train checkpoint write leaves in the directory: the shards' folder
# `PREFIX_temp/` (older TF: `PREFIX_temp_UUID/`), the state file's `checkpoint.tmpUUID`, and the
# `*.tempstate*` files TF's file writers rename into place.
CHECKPOINT_TEMPORARIES = ("*_temp", "*_temp_*", CHECKPOINT_STATE + ".tmp*", "*.tempstate*")


def remove_checkpoint_temporaries(directory: str) -> List[str]:
    """Delete what killed checkpoint writes left in `directory` (`CHECKPOINT_TEMPORARIES`); returns
    the names removed. Only for a directory no other process is writing."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in CHECKPOINT_TEMPORARIES):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
            removed.append(name)
    return removed


def recorded_checkpoints(directory: str) -> List[str]:
    """The checkpoint prefixes (`ckpt-N` basenames) that `directory`'s state file records; none
    when it is missing or unreadable."""
    path = os.path.join(directory, CHECKPOINT_STATE)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError):
        return []
    return [os.path.basename(name) for name in
            re.findall(r'^\s*(?:model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"([^"]*)"', text, re.M)]


def sync_checkpoint(prefix: str) -> None:
    """fsync a written checkpoint's files, its directory's state file and the directory."""
    directory = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix)
    for name in os.listdir(directory):
        if name == CHECKPOINT_STATE or name == base + ".index" or name.startswith(base + ".data-"):
            with open(os.path.join(directory, name), "rb") as stream:
                os.fsync(stream.fileno())
    from tfrf.io import fsync_directory

    fsync_directory(directory)


_ERROR_CODES = {"PermissionDeniedError": errno.EACCES, "NotFoundError": errno.ENOENT,
                "AlreadyExistsError": errno.EEXIST}


def write_failure(path: str, error: BaseException, what: str = "write") -> OSError:
    """An OSError naming `path` for a failed write (`error`: a TensorFlow OpError or an OSError),
    e.g. "[Errno 28] checkpoint write failed: No space left on device: 'RUN/checkpoints/full/ckpt-4'"."""
    text = str(getattr(error, "message", None) or error).strip()
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    if code is None:
        code = errno.ENOSPC if "No space left on device" in text else _ERROR_CODES.get(type(error).__name__)
    reason = os.strerror(code) if code else (text.splitlines()[0] if text else type(error).__name__)
    return OSError(code or errno.EIO, f"{what} failed: {reason}", path)


class ChiefCheckpointManager:
    """A `tf.train.CheckpointManager` for the chief; on the other workers, the same `save` calls
    write into a temporary directory that is deleted after each save.

    Every worker must call `save` at the same steps. `latest_checkpoint` is the run directory's
    on every worker (they all restore the chief's checkpoints). The chief's checkpoints are
    fsynced once written; a failed write (a full disk) leaves none of its files and raises
    `write_failure`'s OSError naming the checkpoint.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, max_to_keep: int = 3, chief: bool = True):
        self.checkpoint = checkpoint
        self.directory = directory
        self.chief = chief
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep) if chief else None

    @property
    def latest_checkpoint(self) -> Optional[str]:
        if self.manager is not None:
            return self.manager.latest_checkpoint
        return tf.train.latest_checkpoint(self.directory)

    def save(self, checkpoint_number: Optional[int] = None) -> Optional[str]:
        if self.manager is not None:
            number = int(self.checkpoint.save_counter) + 1 if checkpoint_number is None else checkpoint_number
            prefix = os.path.join(self.directory, f"ckpt-{number}")
            try:
                path = self.manager.save(checkpoint_number=checkpoint_number)
            except (tf.errors.OpError, OSError) as error:
                self._remove_partial(prefix)
                raise write_failure(prefix, error, "checkpoint write") from None
            sync_checkpoint(path)
            return path
        temporary = tempfile.mkdtemp(prefix="tfrf-worker-")
        try:  # the very calls of the chief (its first save creates the checkpoint's save counter everywhere)
            manager = tf.train.CheckpointManager(self.checkpoint, temporary, max_to_keep=1)
            manager.save(checkpoint_number=checkpoint_number)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return None

    def _remove_partial(self, prefix: str) -> None:
        remove_checkpoint_temporaries(self.directory)
        base = os.path.basename(prefix)
        if base in recorded_checkpoints(self.directory):
            return
        for name in os.listdir(self.directory):
            if name == base + ".index" or name.startswith(base + ".data-"):
                try:
                    os.remove(os.path.join(self.directory, name))
                except FileNotFoundError:
                    pass


def describe(strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, object]:
    """A summary of the strategy for the run's options file and messages."""
    strategy = strategy or tf.distribute.get_strategy()
    return {"strategy": strategy_name(strategy), "replicas": strategy.num_replicas_in_sync,
            "workers": identity(strategy).num_workers}


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The `STRATEGIES` name of a strategy object ("default" for any other)."""
    for kind, name in ((tf.distribute.MultiWorkerMirroredStrategy, "multi-worker"),
                       (tf.distribute.MirroredStrategy, "mirrored"), (tf.distribute.TPUStrategy, "tpu")):
        if isinstance(strategy, kind):
            return name
    return "default"
