"""Hostile and oversized requests, deadlines and cancellation against the local server.

Faults found by probing the server: a 130-byte request used to allocate gigabytes (the declared shape was
materialised before any check), and work went on after the client gave up. Here every hostile
request is refused on its declared shape while the server's peak memory stays put and good
traffic beside it sees no error; requests whose RPC ended are never started.
"""
import re
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfrf.serving import BatchingParameters, Client, LocalModelServer, RequestLimits, ServingTimeoutError
from tfrf.serving.batching import Batcher, BatchingError
from tfrf.serving.limits import MAX_MESSAGE_BYTES, REQUEST_COPIES, Admission
from tfrf.serving.model import graph_error_message

from helpers import SIZE, free_port, make_inputs
from serving_helpers import install, peak_rss_bytes, predict_request, serve_process, stop_process, tensor

EXAMPLE = [SIZE, SIZE, 3]  # H, W, Cp = 3 of the tiny voxceleb2 model
EXAMPLE_BYTES = SIZE * SIZE * 3 * 4
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    generator = install(1, root / "models" / "face")
    return {"dir": str(root / "models"), "generator": generator}


def broadcast(batch, sources, value=0.5):
    """A request declaring [batch, sources, 64, 64, 3] images and poses, each a single float_val."""
    return {"source_images": tensor([batch, sources] + EXAMPLE, float_values=[value]),
            "source_poses": tensor([batch, sources] + EXAMPLE, float_values=[value]),
            "target_pose": tensor([batch] + EXAMPLE, float_values=[value])}


def exact(inputs):
    """A request with every value in tensor_content."""
    return {name: tensor(list(value.shape), content=value.tobytes()) for name, value in inputs.items()}


def hostile_requests():
    """(what, inputs, expected status, message pattern) for each attack the fault probe found, and its kin."""
    valid = exact(make_inputs(2, 1, seed=3))
    return [
        ("[10000,1,64,64,3] from one float_val", broadcast(10000, 1), grpc.StatusCode.RESOURCE_EXHAUSTED,
         "batch size 10000, above this server's limit 64"),
        ("[1000000,1,1000,1000,3]", dict(broadcast(1, 1), source_images=tensor([1000000, 1, 1000, 1000, 3],
                                                                                 float_values=[0.5])),
         grpc.StatusCode.INVALID_ARGUMENT, r"'source_images' .* must be float32 \[\?, \?, 64, 64, 3\], "
                                           r"got float32 \[1000000, 1, 1000, 1000, 3\]"),
        ("2**40 examples", broadcast(2 ** 40, 1), grpc.StatusCode.RESOURCE_EXHAUSTED, "batch size 1099511627776"),
        ("K above the limit", broadcast(1, 9), grpc.StatusCode.RESOURCE_EXHAUSTED,
         r"dimension 1 \(sources K\) 9, above this server's limit 8"),
        ("bytes above the limit", broadcast(40, 8), grpc.StatusCode.RESOURCE_EXHAUSTED,
         f"declares {40 * 8 * 2 * EXAMPLE_BYTES + 40 * EXAMPLE_BYTES} bytes .* limit of 8000000 bytes"),
        ("no content", {name: tensor(list(_dims(proto))) for name, proto in valid.items()},
         grpc.StatusCode.INVALID_ARGUMENT, r"declares float32 \[2, 1, 64, 64, 3\] \(24576 values\) but holds 0"),
        ("two values for many", dict(valid, target_pose=tensor([2] + EXAMPLE, float_values=[0.1, 0.2])),
         grpc.StatusCode.INVALID_ARGUMENT, "holds 2 values"),
        ("tensor_content one byte short", dict(valid, target_pose=tensor(
            [2] + EXAMPLE, content=valid["target_pose"].tensor_content[:-1])),
         grpc.StatusCode.INVALID_ARGUMENT, f"{2 * EXAMPLE_BYTES} bytes\\) but its tensor_content holds "
                                           f"{2 * EXAMPLE_BYTES - 1} bytes"),
        ("B = 0", broadcast(0, 1), grpc.StatusCode.INVALID_ARGUMENT, "batch size 0, must be >= 1"),
        ("K = 0", broadcast(1, 0), grpc.StatusCode.INVALID_ARGUMENT, r"dimension 1 \(sources K\) 0, must be >= 1"),
        ("batches differ", dict(broadcast(2, 1), target_pose=tensor([1] + EXAMPLE, float_values=[0.5])),
         grpc.StatusCode.INVALID_ARGUMENT, r"must share its first \(batch\) dimension"),
        ("wrong dtype", dict(broadcast(1, 1), target_pose=tensor([1] + EXAMPLE, dtype=types_pb2.DT_DOUBLE)),
         grpc.StatusCode.INVALID_ARGUMENT, r"'target_pose' .* must be float32 \[\?, 64, 64, 3\], got float64"),
    ]


def _dims(proto):
    return [dim.size for dim in proto.tensor_shape.dim]


@pytest.mark.slow
def test_hostile_requests_refused_on_declared_shapes_while_good_traffic_flows(model_dir):
    """`tfrf serve` in a subprocess: its peak RSS (VmHWM) grows by less than 64 MiB over a round
    of hostile requests (they used to take 4-8 GB), and a client beside them gets right answers."""
    port = free_port()
    process, line = serve_process([model_dir["dir"], "--port", str(port), "--poll-seconds", "0",
                                   "--max-request-bytes", "8000000", "--max-batch-size", "64", "--max-sources", "8"])
    try:
        assert line.startswith("tfrf serve: face v1"), line
        good = make_inputs(1, 2, seed=4)
        expected = model_dir["generator"](good).numpy()
        with Client(f"127.0.0.1:{port}", "face", timeout=60) as client:
            for _ in range(3):  # warm up: the first runs trace and allocate the working set
                np.testing.assert_allclose(client.generate(**good), expected, atol=1e-4, rtol=0)
            baseline = peak_rss_bytes(process.pid)
            failures, answered = [], [0]
            stop = threading.Event()

            def good_traffic():
                while not stop.is_set():
                    try:
                        np.testing.assert_allclose(client.generate(**good), expected, atol=1e-4, rtol=0)
                        answered[0] += 1
                    except Exception as error:  # recorded, asserted below
                        failures.append(error)

            worker = threading.Thread(target=good_traffic)
            worker.start()
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                    for what, inputs, code, pattern in hostile_requests():
                        with pytest.raises(grpc.RpcError) as caught:
                            stub.Predict(predict_request(inputs), timeout=30)
                        assert caught.value.code() == code, (what, caught.value.details())
                        assert re.search(pattern, caught.value.details()), (what, caught.value.details())
                    # The single-value broadcast is legal within the limits: it equals the model on full arrays.
                    response = stub.Predict(predict_request(broadcast(2, 1, value=0.25)), timeout=30)
                    full = {name: np.full([2, 1] + EXAMPLE if name != "target_pose" else [2] + EXAMPLE, 0.25,
                                          np.float32) for name in good}
                    served = np.frombuffer(response.outputs["image"].tensor_content, np.float32).reshape(2, SIZE, SIZE, 3)
                    np.testing.assert_allclose(served, model_dir["generator"](full).numpy(), atol=1e-4, rtol=0)
            finally:
                stop.set()
                worker.join()
        peak = peak_rss_bytes(process.pid)
        assert not failures, failures[:3]
        assert answered[0] >= 1
        assert peak - baseline < 64 * MIB, (baseline, peak)
    finally:
        stop_process(process)


def test_memory_error_becomes_resource_exhausted(model_dir):
    """With the limits lifted, a broadcast to 2**40 examples (48 PiB) fails numpy's allocation:
    the client gets RESOURCE_EXHAUSTED, not UNKNOWN, and the server serves on."""
    lifted = RequestLimits(max_batch_size=2 ** 50, max_request_bytes=2 ** 62)
    with LocalModelServer(model_dir["dir"], port=0, poll_seconds=0, limits=lifted) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(predict_request(broadcast(2 ** 40, 1)), timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "out of memory decoding the request's inputs" in caught.value.details()
        inputs = make_inputs(1, 1, seed=5)
        with Client(server.address, "face", timeout=30) as client:
            np.testing.assert_allclose(client.generate(**inputs), model_dir["generator"](inputs).numpy(),
                                       atol=1e-4, rtol=0)


def test_ended_requests_are_not_started_and_a_cancelled_one_stops(model_dir):
    """One slot: a long request (512 examples run one per slice) holds it; a request with a
    0.3 s deadline waits, expires and never starts; cancelling the long one stops it between
    slices; the server then answers a good request right."""
    limits = RequestLimits(max_concurrent_requests=1, max_request_bytes=256 * MIB, max_batch_size=1024,
                           run_bytes=1)
    with LocalModelServer(model_dir["dir"], port=0, poll_seconds=0, limits=limits) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            long_call = stub.Predict.future(predict_request(broadcast(512, 1)), timeout=120)
            _wait_for(lambda: server.counters.get("started", 0) == 1)
            with Client(server.address, "face", timeout=0.3) as hurried:
                with pytest.raises(ServingTimeoutError):
                    hurried.generate(**make_inputs(1, 1, seed=6))
            _wait_for(lambda: server.counters.get("not_started", 0) == 1)
            long_call.cancel()
            _wait_for(lambda: server.counters.get("abandoned", 0) == 1)
        counters = server.counters
        assert counters["started"] == 1 and counters["not_started"] == 1
        assert 1 <= counters["examples_run"] < 512 and counters["runs"] == counters["examples_run"]
        assert server.service.admission.peak == 1
        inputs = make_inputs(2, 2, seed=7)
        with Client(server.address, "face", timeout=30) as client:
            np.testing.assert_allclose(client.generate(**inputs), model_dir["generator"](inputs).numpy(),
                                       atol=1e-4, rtol=0)
        assert server.counters["started"] == 2 and server.counters["runs"] == counters["runs"] + 2  # one per example


def _wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_concurrent_requests_hold_at_most_the_admitted_slots(model_dir):
    limits = RequestLimits(max_concurrent_requests=2)
    with LocalModelServer(model_dir["dir"], port=0, poll_seconds=0, limits=limits) as server:
        inputs = [make_inputs(1, 1, seed=30 + index) for index in range(8)]
        results = [None] * 8
        with Client(server.address, "face", timeout=60) as client:
            client.metadata()
            threads = [threading.Thread(target=lambda index=index: results.__setitem__(
                index, client.generate(**inputs[index]))) for index in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert 1 <= server.service.admission.peak <= 2 and server.counters["completed"] == 8
        for index in range(8):
            np.testing.assert_allclose(results[index], model_dir["generator"](inputs[index]).numpy(),
                                       atol=1e-4, rtol=0)


def test_graph_errors_lose_tensorflow_node_names():
    # TensorFlow's text for a B = 0 batch reaching this model's first convolution.
    message = ("Graph execution error:\n\nDetected at node StatefulPartitionedCall/generator/target_image_predictor/"
               "pose_down1/conv2/BiasAdd defined at (most recent call last):\n<stack traces unavailable>\n"
               "input depth must be evenly divisible by filter depth: 3 vs 8\n\t [[{{node StatefulPartitionedCall/"
               "generator/target_image_predictor/pose_down1/conv2/BiasAdd}}]] [Op:__inference_signature_wrapper_5847]")
    assert graph_error_message(message) == "input depth must be evenly divisible by filter depth: 3 vs 8"
    assertion = ("Graph execution error:\n\nassertion failed: [target_pose must be [B, H, W, Cp] with the B of "
                 "source_images] [Condition x == y did not hold element-wise:] [x (strided_slice_3:0) = ] [2]")
    assert graph_error_message(assertion) == "target_pose must be [B, H, W, Cp] with the B of source_images"


def test_admission_is_first_come_first_served():
    admission = Admission(1)
    admission.acquire()
    order, threads = [], []
    for index in range(5):  # each waits in turn: thread `index` queues after thread `index - 1`
        thread = threading.Thread(target=lambda index=index: (admission.acquire(), order.append(index),
                                                              admission.release()))
        thread.start()
        threads.append(thread)
        _wait_for(lambda: len(admission._waiters) == index + 1)
    admission.release()
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4] and admission.peak == 1 and admission._held == 0


def test_batcher_drops_expired_and_cancelled_requests():
    calls = []

    def runner(inputs):
        calls.append(inputs["x"][:, 0].tolist())
        return {"y": inputs["x"] + 1.0}

    batcher = Batcher(BatchingParameters(max_batch_size=2, batch_timeout_micros=5_000_000, num_batch_threads=1), runner)
    try:
        expired = batcher.submit({"x": np.full((1, 2), 1.0)}, deadline=time.monotonic() - 1.0)
        cancelled = batcher.submit({"x": np.full((1, 2), 2.0)})
        cancelled.cancel()
        live = [batcher.submit({"x": np.full((1, 2), value)}) for value in (3.0, 4.0)]
        outputs = [future.result(timeout=30)["y"] for future in live]
        with pytest.raises(BatchingError, match="deadline passed"):
            expired.result(timeout=30)
    finally:
        batcher.stop()
    assert calls == [[3.0, 4.0]] and batcher.dropped == 2 and batcher.batch_sizes == {2: 1}
    np.testing.assert_array_equal(outputs[0], [[4.0, 4.0]])
    np.testing.assert_array_equal(outputs[1], [[5.0, 5.0]])


def test_default_limits_are_sized_to_the_machine_and_the_model():
    import tensorflow as tf

    specs = {"source_images": tf.TensorSpec([None, None, SIZE, SIZE, 3], tf.float32),
             "source_poses": tf.TensorSpec([None, None, SIZE, SIZE, 3], tf.float32),
             "target_pose": tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)}
    one_example = 3 * EXAMPLE_BYTES  # B = K = 1: three float32 64x64x3 maps
    limits = RequestLimits().resolve(memory_bytes=16 * 1024 * MIB)
    assert limits.max_concurrent_requests == 4
    assert limits.max_request_bytes == (8 * 1024 * MIB) // (128 + REQUEST_COPIES * 4)
    assert limits.batch_limit(specs) == limits.max_request_bytes // one_example == 404
    batching = BatchingParameters(max_batch_size=8, num_batch_threads=2)
    batched = RequestLimits().resolve(batching, memory_bytes=16 * 1024 * MIB)
    assert batched.max_concurrent_requests == 16  # every batch thread can fill a batch
    assert batched.max_request_bytes == (8 * 1024 * MIB) // (128 + REQUEST_COPIES * 16)
    assert batched.batch_limit(specs, batching) == 8
    assert RequestLimits().resolve(memory_bytes=64 * MIB).max_request_bytes == MIB  # floor
    assert RequestLimits().resolve(memory_bytes=2 ** 50).max_request_bytes == MAX_MESSAGE_BYTES - MIB  # gRPC cap
    assert RequestLimits(max_batch_size=3).resolve(memory_bytes=2 ** 34).batch_limit(specs) == 3
    with pytest.raises(ValueError, match="max_sources must be a positive integer, got 0"):
        RequestLimits(max_sources=0)
