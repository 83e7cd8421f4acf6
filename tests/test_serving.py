"""Client <-> local PredictionService: round trips equal the in-memory model, clear errors for
bad shapes, unreachable servers and timeouts, batching, new versions, shipped config files."""
import os
import re
import socket
import threading
import time

import grpc
import numpy as np
import pytest

from tfrf.serving import (BatchingParameters, Client, InvalidRequestError, LocalModelServer, ModelNotFoundError,
                          ServerUnavailableError, ServingTimeoutError)
from tfrf.serving.batching import Batcher, BatchingError

from helpers import SIZE, free_port, make_inputs, random_inputs, tiny_config
from serving_helpers import install, serve_process, stop_process

SERVING_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    generator = install(1, root / "models" / "face")
    return {"dir": str(root / "models"), "generator": generator}


@pytest.fixture(scope="module")
def server(model_dir):
    with LocalModelServer(model_dir["dir"], port=0, poll_seconds=0) as running:
        yield running


@pytest.fixture
def client(server):
    with Client(server.address, "face", timeout=30) as connected:
        yield connected


def test_round_trip_equals_in_memory_model(client, model_dir):
    generator = model_dir["generator"]
    for batch, sources, seed in ((1, 1, 0), (2, 3, 1)):
        inputs = make_inputs(batch, sources, seed)
        served = client.generate(**inputs)
        assert served.shape == (batch, SIZE, SIZE, 3) and served.dtype == np.float32
        np.testing.assert_allclose(served, generator(inputs).numpy(), atol=1e-4, rtol=0)
    uint8 = client.predict(dict(inputs, source_images=np.round((inputs["source_images"] + 1) * 127.5).astype(np.uint8)),
                           signature_name="serving_uint8")["image"]
    assert uint8.dtype == np.uint8 and uint8.shape == (2, SIZE, SIZE, 3)


def test_metadata(client):
    signatures = client.metadata()
    assert {"serving_default", "serving_uint8"} <= set(signatures)  # and `photos` where the exporter adds it
    default = signatures["serving_default"]
    assert default["inputs"] == {
        "source_images": ("float32", (None, None, SIZE, SIZE, 3)),
        "source_poses": ("float32", (None, None, SIZE, SIZE, 3)),
        "target_pose": ("float32", (None, SIZE, SIZE, 3)),
    }
    assert default["outputs"] == {"image": ("float32", (None, SIZE, SIZE, 3))}
    assert signatures["serving_uint8"]["inputs"]["source_images"][0] == "uint8"


def test_server_answers_invalid_argument(client):
    inputs = make_inputs(1, 2, seed=2)
    wrong_size = dict(inputs, source_images=inputs["source_images"][:, :, :32])
    with pytest.raises(InvalidRequestError) as caught:
        client.predict(wrong_size)  # predict skips the client-side check: the server answers
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'source_images'" in str(caught.value) and "float32 [?, ?, 64, 64, 3]" in str(caught.value)
    assert "[1, 2, 32, 64, 3]" in str(caught.value)
    with pytest.raises(InvalidRequestError, match="source_poses must be .* B and K of source_images"):
        client.predict(dict(inputs, source_poses=inputs["source_poses"][:, :1]))  # the graph's own check
    with pytest.raises(InvalidRequestError, match="must be float32"):
        client.predict(dict(inputs, target_pose=inputs["target_pose"].astype(np.float64)))
    with pytest.raises(InvalidRequestError, match="lacks \\['target_pose'\\]"):
        client.predict({key: inputs[key] for key in ("source_images", "source_poses")})


def test_client_checks_shapes_before_sending(server):
    inputs = make_inputs(1, 2, seed=3)
    # Nothing listens at this target: the check must fail before any call is made.
    offline = Client(f"127.0.0.1:{free_port()}", "face", timeout=5)
    with pytest.raises(InvalidRequestError, match="source_poses must be \\[B, K, H, W, Cp\\]"):
        offline.generate(inputs["source_images"], inputs["source_poses"][:, :1], inputs["target_pose"])
    with pytest.raises(InvalidRequestError, match="K >= 1"):
        offline.generate(inputs["source_images"][:, :0], inputs["source_poses"][:, :0], inputs["target_pose"])
    offline.close()
    with Client(server.address, "face", timeout=30) as online:  # against the served signature
        with pytest.raises(InvalidRequestError, match="source_images must be float32 \\[\\?, \\?, 64, 64, 3\\]"):
            online.generate(**random_inputs(tiny_config(), seed=5, height=32, width=32))


def test_unknown_model_and_version(server):
    with Client(server.address, "chairs", timeout=10) as other:
        with pytest.raises(ModelNotFoundError, match="Latest\\(chairs\\)") as caught:
            other.metadata()
    assert "face" not in str(caught.value)  # NOT_FOUND does not tell a caller which models exist
    with Client(server.address, "face", timeout=10, version=7) as pinned:
        with pytest.raises(ModelNotFoundError, match="served version is 1"):
            pinned.metadata()


def test_unreachable_server_fails_fast():
    with Client(f"127.0.0.1:{free_port()}", "face", timeout=3) as client:
        with pytest.raises(ServerUnavailableError, match="no model server answers at 127.0.0.1"):
            client.metadata()


def test_silent_server_times_out_within_the_timeout():
    """A TCP peer that accepts and never speaks gRPC: the call ends at the deadline."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        with Client(f"127.0.0.1:{port}", "face", timeout=1.0) as client:
            with pytest.raises(ServingTimeoutError, match="within the timeout of 1 s"):
                client.metadata()


def test_slow_batch_times_out_and_batches_merge(model_dir):
    """Batching: a lone request waits for its batch, times out and is dropped unrun; four
    concurrent requests merge into one run; a batch above max_batch_size is refused."""
    slow = BatchingParameters(max_batch_size=4, batch_timeout_micros=30_000_000, num_batch_threads=1)
    with LocalModelServer(model_dir["dir"], port=0, poll_seconds=0, batching=slow) as running:
        batcher = running.repository.get("face")._batchers["serving_default"]
        with Client(running.address, "face", timeout=0.5) as client:
            with pytest.raises(ServingTimeoutError):
                client.generate(**make_inputs(1, 2, seed=6))
        inputs = [make_inputs(1, 2, seed=10 + index) for index in range(4)]
        results = [None] * 4
        with Client(running.address, "face", timeout=60) as client:
            client.metadata()

            def call(index):
                results[index] = client.generate(**inputs[index])

            threads = [threading.Thread(target=call, args=(index,)) for index in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            with pytest.raises(InvalidRequestError, match="Task size 5 is larger than maximum input batch size 4"):
                client.generate(**make_inputs(5, 1, seed=20))
        assert batcher.batch_sizes == {4: 1}  # the lone request never ran; the four ran together
        assert batcher.dropped == 1 and running.counters["examples_run"] == 4
    for index in range(4):
        np.testing.assert_allclose(results[index], model_dir["generator"](inputs[index]).numpy(), atol=1e-4, rtol=0)


def test_batcher_pads_to_allowed_sizes_and_splits():
    calls = []

    def runner(inputs):
        calls.append(inputs["x"].shape[0])
        return {"y": inputs["x"] * 2.0}

    parameters = BatchingParameters(max_batch_size=4, batch_timeout_micros=300_000, num_batch_threads=1,
                                    allowed_batch_sizes=(2, 4))
    batcher = Batcher(parameters, runner)
    try:
        futures = [batcher.submit({"x": np.full((size, 3), float(index))}) for index, size in enumerate((1, 2))]
        outputs = [future.result(timeout=5) for future in futures]
        assert calls == [4]  # 3 examples padded to the allowed size 4
        np.testing.assert_array_equal(outputs[0]["y"], np.zeros((1, 3)))
        np.testing.assert_array_equal(outputs[1]["y"], np.full((2, 3), 2.0))
        other = batcher.submit({"x": np.ones((1, 5))})  # another shape: its own batch
        assert other.result(timeout=5)["y"].shape == (1, 5) and calls == [4, 2]
        with pytest.raises(BatchingError, match="larger than maximum"):
            batcher.submit({"x": np.ones((5, 3))})
    finally:
        batcher.stop()


def test_new_version_is_picked_up(tmp_path, model_dir):
    base = str(tmp_path / "face")
    install(1, base)
    with LocalModelServer(base, port=0, poll_seconds=0.2) as running:  # one model's base path, polled
        with Client(running.address, "face", timeout=30) as client:
            assert running.repository.served() == {"face": 1}
            newer = install(2, base)
            deadline = time.monotonic() + 60
            while running.repository.served() != {"face": 2} and time.monotonic() < deadline:
                time.sleep(0.2)
            inputs = make_inputs(1, 2, seed=8)
            np.testing.assert_allclose(client.generate(**inputs), newer(inputs).numpy(), atol=1e-4, rtol=0)
        with Client(running.address, "face", timeout=10, version=1) as old:
            with pytest.raises(ModelNotFoundError):
                old.metadata()


def test_batching_parameters_file_and_models_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    parameters = BatchingParameters.from_file(os.path.join(SERVING_DIR, "batching_parameters.txt"))
    assert parameters.max_batch_size == 8 and parameters.allowed_batch_sizes == (1, 2, 4, 8)
    with pytest.raises(ValueError, match="<text> line 2"):
        BatchingParameters.from_text("max_batch_size { value: 8 }\nbatch_size: 3\n")
    with open(os.path.join(SERVING_DIR, "models.config")) as stream:
        config = text_format.Parse(stream.read(), model_server_config_pb2.ModelServerConfig())
    names = {model.name: model.base_path for model in config.model_config_list.config}
    assert names["face"] == "/models/face"
    with open(os.path.join(SERVING_DIR, "README.md")) as stream:
        readme = stream.read()
    assert re.search(r"docker run .*tensorflow/serving:2\.15\.1", readme.replace("\\\n", " "))


@pytest.mark.slow
def test_tfrf_serve_command(model_dir):
    port = free_port()
    process, line = serve_process([model_dir["dir"], "--port", str(port), "--poll-seconds", "0"])
    try:
        assert line.startswith(f"tfrf serve: face v1 on 127.0.0.1:{port}") and "not for production" in line, line
        inputs = make_inputs(1, 2, seed=9)
        with Client(f"127.0.0.1:{port}", "face", timeout=30) as client:
            np.testing.assert_allclose(client.generate(**inputs), model_dir["generator"](inputs).numpy(),
                                       atol=1e-4, rtol=0)
    finally:
        stderr = stop_process(process)
    assert "model face: serving version 1" in stderr


def test_load_test_module_against_a_running_server(server, capsys):
    from tfrf.benchmarks import serving_load

    assert serving_load.main(["--target", server.address, "--model", "face", "--clients", "1", "3",
                           "--seconds", "0.5", "--batch", "2", "--sources", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "3"]
    for row in rows:
        clients, requests, per_second, p50, p99, errors, memory = (cell.strip() for cell in row.split("|")[1:8])
        assert int(requests) >= 1 and float(per_second) > 0 and 0 < float(p50) <= float(p99)
        assert errors == "0" and memory == "—"
    result = {"clients": 4, "requests": 10, "seconds": 2.0, "per_second": 5.0, "p50_ms": 12.34, "p99_ms": 56.78,
              "errors": {"DEADLINE_EXCEEDED": 2, "RESOURCE_EXHAUSTED": 1}}
    assert serving_load.format_row(result, 3 * 2 ** 20) == \
        "| 4 | 10 | 5.0 | 12.3 | 56.8 | 3 (DEADLINE_EXCEEDED 2, RESOURCE_EXHAUSTED 1) | 3 |"
