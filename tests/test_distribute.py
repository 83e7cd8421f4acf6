"""Distributed `tfrf train`: two MultiWorkerMirroredStrategy workers on 127.0.0.1 against
the single-process run, a killed worker and a restarted cluster, the per-worker shards of the
data, the TF_CONFIG parsing, callbacks that count steps without reading the optimiser, and the
`--xla` / `--mixed-precision` execution options.

The worker processes are `tests/distribute_worker.py` (the real command and train step, plus a
record of each step's losses and of the examples each replica trained on)."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tfrf.data.pipeline import ViewTable, make_dataset
from tfrf.training import LossWeights, distribute, runner
from tfrf.training.callbacks import RaiseAtStep, StepCountingCallback

from helpers import tiny_train_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "distribute_worker.py")
BATCH, STEPS = 4, 4
TRAIN_ARGS = ["--data-dir", "synthetic", "--train-objects", "2", "--test-objects", "1", "--width-multiplier", "0.125",
              "--image-size", "32", "32", "--vgg-weights", "none", "--warp-backend", "gather", "--k", "1",
              "--batch-size", str(BATCH), "--stage", "flow", "--steps", str(STEPS), "--checkpoint-every", "2",
              "--summary-every", "1", "--steps-per-epoch", "3", "--quiet"]
# Measured: the two workers' step losses equal the single process's to 1.5e-7 relative (float32 sums
# in another order); 1e-5 leaves room for other CPUs.
LOSS_TOLERANCE = 1e-5


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def start_worker(record, out, cache, *extra, tf_config=None, tmpdir=None, kill_at=None, log=None):
    command = [sys.executable, WORKER, "--record", str(record)]
    if kill_at is not None:
        command += ["--kill-at-step", str(kill_at)]
    command += ["--", *TRAIN_ARGS, "--cache-dir", str(cache), "--out", str(out), *extra]
    env = environment(**({"TF_CONFIG": json.dumps(tf_config)} if tf_config else {}),
                      **({"TMPDIR": str(tmpdir)} if tmpdir else {}))
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=str(out.parent))


def start_cluster(tmp_path, name, out, cache, kill_worker_at=None):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tmpdir = tmp_path / f"tmp{index}"
        tmpdir.mkdir(exist_ok=True)
        processes.append(start_worker(tmp_path / f"{name}{index}.jsonl", out, cache, "--strategy", "multi-worker",
                                      tf_config={"cluster": cluster, "task": {"type": "worker", "index": index}},
                                      tmpdir=tmpdir, kill_at=kill_worker_at if index == 1 else None,
                                      log=tmp_path / f"{name}{index}.log"))
    return processes


def wait(process, timeout, log):
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"a training process ran past {timeout} s:\n{open(log).read()[-3000:]}")


def wait_for_step(path, step, process, timeout):
    """Until `path` records `step`, the process ends or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if step in records(path):
                return
        except (OSError, ValueError):  # not written yet, or a line being written
            pass
        time.sleep(0.2)


def records(path):
    """{step: record}, each record's "losses" the step's own (Keras logs are means since the epoch
    began: loss of batch b = (b + 1) * mean_b - b * mean_(b-1))."""
    with open(path, encoding="utf-8") as stream:
        lines = {line["step"]: line for line in map(json.loads, stream)}
    for step, line in lines.items():
        batch = line["batch"]
        previous = lines[step - 1]["logs"] if batch else {}
        line["losses"] = {name: (batch + 1) * mean - batch * previous.get(name, 0.0)
                          for name, mean in line["logs"].items()}
    return lines


def assert_losses_equal(actual, expected):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=LOSS_TOLERANCE, abs=1e-9), name


def listing(directory):
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, _, names in os.walk(directory) for name in names)


@pytest.mark.slow
def test_two_workers_match_one_process_and_resume_after_a_kill(tmp_path):
    cache, single_out, out = tmp_path / "cache", tmp_path / "single", tmp_path / "multi"
    # The single-process reference runs beside the cluster. Worker 1 dies (SIGKILL) when step 3 ends;
    # the chief then waits on it in step 4's collectives and is killed too.
    cache.mkdir()
    single = start_worker(tmp_path / "single.jsonl", single_out, cache, log=tmp_path / "single.log")
    chief, worker = start_cluster(tmp_path, "killed", out, cache, kill_worker_at=3)
    assert wait(worker, 150, tmp_path / "killed1.log") == -9, open(tmp_path / "killed1.log").read()[-3000:]
    # Step 3's collectives ended on both workers, but the chief may not have written its record yet.
    wait_for_step(tmp_path / "killed0.jsonl", 3, chief, 60)
    chief.kill()
    chief.wait()
    assert wait(single, 150, tmp_path / "single.log") == 0, open(tmp_path / "single.log").read()[-3000:]
    reference = records(tmp_path / "single.jsonl")
    assert sorted(reference) == [1, 2, 3, 4] and all(len(reference[s]["examples"]) == BATCH for s in reference)
    assert tf.train.latest_checkpoint(str(out / "checkpoints" / "flow")).endswith("ckpt-2")
    first = [records(tmp_path / f"killed{index}.jsonl") for index in range(2)]
    # The chief's step-3 record can be lost: its step-end logs read the killed worker's replica.
    assert sorted(first[1]) == [1, 2, 3] and sorted(first[0])[:2] == [1, 2]
    for step in sorted(set(first[0]) & {1, 2, 3}):
        parts = [first[index][step]["examples"] for index in range(2)]
        # Each worker trains on its contiguous half of the single process's global batch.
        assert parts[0] == reference[step]["examples"][:BATCH // 2], step
        assert parts[1] == reference[step]["examples"][BATCH // 2:], step
        assert not set(parts[0]) & set(parts[1])
        for index in range(2):  # the reported losses are global means, the same on both workers
            assert_losses_equal(first[index][step]["losses"], reference[step]["losses"])

    # The restarted cluster resumes at the last checkpoint (step 2), at exactly the tuple reached.
    processes = start_cluster(tmp_path, "resumed", out, cache)
    for index, process in enumerate(processes):
        log = tmp_path / f"resumed{index}.log"
        assert wait(process, 120, log) == 0, open(log).read()[-3000:]
        assert "stage flow: steps 2 -> 4" in open(log).read()
    resumed = [records(tmp_path / f"resumed{index}.jsonl") for index in range(2)]
    for step in (3, 4):
        assert resumed[0][step]["examples"] + resumed[1][step]["examples"] == reference[step]["examples"]
        for index in range(2):
            assert_losses_equal(resumed[index][step]["losses"], reference[step]["losses"])
    assert sorted(resumed[0]) == sorted(resumed[1]) == [3, 4]
    assert resumed[0][3]["batch"] == 0 and reference[3]["batch"] == 2  # the resumed epoch starts at step 3

    # One set of outputs, the chief's; the other worker's temporary saves are gone.
    files = listing(out)
    expected = {"checkpoints/flow/checkpoint", "checkpoints/flow/ckpt-2.data-00000-of-00001",
                "checkpoints/flow/ckpt-2.index", "checkpoints/flow/ckpt-4.data-00000-of-00001",
                "checkpoints/flow/ckpt-4.index", "config.json", "data.json", "generator_flow.weights.h5",
                "train_options.json"}
    events = [name for name in files if name.startswith("logs/flow/events.out.tfevents")]
    assert set(files) == expected | set(events) and len(events) == 2  # one per chief start
    options = json.load(open(out / "train_options.json"))
    assert (options["strategy"], options["replicas"], options["workers"]) == ("multi-worker", 2, 2)
    for index in range(2):
        assert not [name for name in os.listdir(tmp_path / f"tmp{index}") if name.startswith("tfrf-worker-")]


def id_table(size=8, images=9):
    """Image i is filled with the value i (groups of 3): a batch's target says which image it was."""
    pixels = np.stack([np.full((size, size, 3), index, np.uint8) for index in range(images)])
    poses = np.stack([[index % 18, index % 3] for index in range(images)]).astype(np.int64)
    return ViewTable(images=pixels, poses=poses, groups=np.arange(images) // 3, pose_encoder="view21")


def target_ids(batch):
    return [int(round((value + 1) * 127.5)) for value in batch["target_image"][:, 0, 0, 0].numpy()]


@pytest.mark.parametrize("skip", [0, 5])
def test_shards_are_the_global_batch_in_order(skip):
    table = id_table()
    whole = [target_ids(batch) for batch in make_dataset(table, 1, batch_size=6, training=True, seed=3,
                                                         skip=skip).take(4)]
    parts = [[target_ids(batch) for batch in make_dataset(table, 1, batch_size=6, training=True, seed=3, skip=skip,
                                                          shard=(index, 3)).take(4)] for index in range(3)]
    for step, batch in enumerate(whole):
        assert parts[0][step] + parts[1][step] + parts[2][step] == batch
    with pytest.raises(ValueError, match="not divisible by the shard count 4"):
        make_dataset(table, 1, batch_size=6, training=True, shard=(0, 4))
    with pytest.raises(ValueError, match="0 <= index < count"):
        make_dataset(table, 1, batch_size=6, training=True, shard=(3, 3))


def test_tf_config_identity_and_global_batch():
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert distribute.parse_tf_config("") == distribute.WorkerIdentity(None, 0, 1, True)
    worker1 = distribute.parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert (worker1.num_workers, worker1.is_chief) == (2, False)
    assert distribute.parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})).is_chief
    with_chief = {"chief": ["127.0.0.1:3"], **cluster}
    identity = distribute.parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert (identity.num_workers, identity.is_chief) == (3, False)
    with pytest.raises(ValueError, match="not valid JSON"):
        distribute.parse_tf_config("{cluster")
    with pytest.raises(ValueError, match="worker:2 is not in its cluster"):
        distribute.parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}}))
    assert distribute.check_global_batch(8, 4) == 2 and distribute.check_global_batch(5) == 5
    with pytest.raises(ValueError, match="--batch-size 6 .* not divisible by the 4 replicas"):
        distribute.check_global_batch(6, 4)
    with pytest.raises(ValueError, match="--strategy must be one of"):
        distribute.create_strategy("parameter-server")


class Steps(StepCountingCallback):
    """Records (counted step, the optimiser's iterations) at every callback call (tests only)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_step_end(self, step, previous, logs=None):
        self.seen.append((previous, step, int(self.model.generator_optimizer.iterations.numpy())))


@pytest.mark.slow
def test_callbacks_count_steps_with_steps_per_execution_and_a_mid_epoch_resume(tmp_path):
    config = tiny_train_config(32, name="callbacks", batch_size=2, num_sources=1, flow_steps=8, full_steps=0,
                               steps_per_epoch=4, checkpoint_every=2, summary_every=2,
                               loss_weights=LossWeights(perceptual=0.0, style=0.0, correctness=0.0))
    dataset_fn = runner.training_dataset_fn(id_table(size=32), config)
    out = str(tmp_path)
    killed = Steps()
    with pytest.raises(KeyboardInterrupt):
        runner.train_stage("flow", runner.create_networks(config), config, dataset_fn, out, verbose=0,
                           steps_per_execution=2, extra_callbacks=[killed, RaiseAtStep(6)])
    assert killed.seen == [(0, 2, 2), (2, 4, 4), (4, 6, 6)]  # one call per execution of 2 steps
    directory = os.path.join(out, "checkpoints", "flow")
    assert sorted(name for name in os.listdir(directory) if name.endswith(".index")) == [
        "ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]
    # Resume at 6: the epoch (4 steps) starts mid-way; 8 - 6 = 2 steps left.
    resumed = Steps()
    result = runner.train_stage("flow", runner.create_networks(config), config, dataset_fn, out, verbose=0,
                                steps_per_execution=2, extra_callbacks=[resumed])
    assert (result["start_step"], result["end_step"]) == (6, 8)
    assert resumed.seen == [(6, 8, 8)]
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-8")
    # A steps_per_execution that does not divide the epoch or the steps left is reduced.
    assert [runner.fitting_steps_per_execution(*case) for case in ((4, 8, 6), (3, 4, 8), (6, 12, 18), (1, 5, 3))] == [
        2, 1, 6, 1]


def run_cli(out, cache, *extra, steps=2):
    """`tfrf train` in this process (the command's own function) with a recording callback."""
    from tfrf.cli import build_parser
    from tfrf.commands import train as train_command

    class Losses(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.logs = {}

        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.generator_optimizer.iterations.numpy())
            self.logs[step] = {name: float(value) for name, value in logs.items()}

    recorder = Losses()
    arguments = [*TRAIN_ARGS, "--cache-dir", str(cache), "--out", str(out), "--batch-size", "2", "--steps", str(steps),
                 *extra]
    args = build_parser().parse_args(["train", *arguments])
    assert train_command.train(args, extra_callbacks=[recorder]) == 0
    return recorder.logs


@pytest.mark.slow
def test_xla_and_mixed_precision_options(tmp_path, capsys):
    cache = tmp_path / "cache"
    plain = run_cli(tmp_path / "plain", cache)
    assert sorted(plain) == [1, 2]
    xla = run_cli(tmp_path / "xla", cache, "--xla", "--warp-backend", "tfa")
    assert "'gather' backend" in capsys.readouterr().out
    config = json.load(open(tmp_path / "xla" / "config.json"))
    options = json.load(open(tmp_path / "xla" / "train_options.json"))
    assert config["model"]["warp_backend"] == "tfa" and (options["xla"], options["warp_backend"]) == (True, "gather")
    assert sorted(xla) == [1, 2]
    for step in (1, 2):  # XLA computes the same step (float32 reassociation only)
        for name, value in plain[step].items():
            assert xla[step][name] == pytest.approx(value, rel=1e-4, abs=1e-7), (step, name)

    # Mixed precision under MirroredStrategy (one CPU replica here) resumes the float32 run: both are
    # execution options, not part of the config.
    mixed = run_cli(tmp_path / "plain", cache, "--mixed-precision", "--strategy", "mirrored", steps=4)
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    assert sorted(mixed) == [3, 4]
    assert all(np.isfinite(value) for logs in mixed.values() for value in logs.values())
    options = json.load(open(tmp_path / "plain" / "train_options.json"))
    assert (options["mixed_precision"], options["strategy"], options["replicas"]) == ("float16", "mirrored", 1)
    assert tf.train.latest_checkpoint(str(tmp_path / "plain" / "checkpoints" / "flow")).endswith("ckpt-4")
