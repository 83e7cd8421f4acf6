"""TF-Serving's REST API, GetModelStatus and Prometheus metrics on the local server.

Faults found by probing the server: `curl localhost:8501/v1/models/NAME` got nothing (gRPC only),
GetModelStatus answered UNIMPLEMENTED and there were no metrics. Here REST and gRPC give the
same image for the same request, status, metadata and metrics answer as TF-Serving does, and
the README's curl line and `requests` snippet run as written.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from tfrf.serving import Client, InvalidRequestError, LocalModelServer, ModelNotFoundError
from tfrf.serving.rest_json import predict_request, to_array

from helpers import SIZE, make_inputs
from serving_helpers import install

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving", "README.md")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest")
    generator = install(1, root / "models" / "face")
    return {"dir": str(root / "models"), "generator": generator}


@pytest.fixture(scope="module")
def server(model_dir):
    with LocalModelServer(model_dir["dir"], port=0, rest_port=0, poll_seconds=0) as running:
        yield running


def http(server, path, body=None, raw=None):
    """(HTTP status, parsed JSON or text) of one call to the server's REST port."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{server.rest_address}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def test_rest_predict_equals_grpc_in_both_formats(server, model_dir):
    inputs = make_inputs(2, 2, seed=1)
    with Client(server.address, "face", timeout=60) as grpc_client:
        expected = grpc_client.generate(**inputs)
    np.testing.assert_allclose(expected, model_dir["generator"](inputs).numpy(), atol=1e-4, rtol=0)
    columnar = {"inputs": {name: value.tolist() for name, value in inputs.items()}}
    status, answer = http(server, "/v1/models/face:predict", columnar)
    assert status == 200, answer
    np.testing.assert_array_equal(np.asarray(answer["outputs"], np.float32), expected)  # float32 survives JSON
    rows = {"signature_name": "serving_default",
            "instances": [{name: value[index].tolist() for name, value in inputs.items()} for index in range(2)]}
    status, answer = http(server, "/v1/models/face/versions/1:predict", rows)
    assert status == 200 and len(answer["predictions"]) == 2
    np.testing.assert_array_equal(np.asarray(answer["predictions"], np.float32), expected)
    with Client(f"http://{server.rest_address}", "face", timeout=60) as rest_client:
        np.testing.assert_array_equal(rest_client.generate(**inputs), expected)
        uint8 = dict(inputs, source_images=np.round((inputs["source_images"] + 1) * 127.5).astype(np.uint8))
        image = rest_client.predict(uint8, signature_name="serving_uint8")["image"]
        assert image.dtype == np.uint8 and image.shape == (2, SIZE, SIZE, 3)
        assert rest_client.metadata()["serving_default"]["outputs"] == {"image": ("float32", (None, SIZE, SIZE, 3))}


def test_rest_errors_carry_tf_serving_codes(server):
    inputs = make_inputs(1, 1, seed=2)
    good = {name: value.tolist() for name, value in inputs.items()}
    cases = [
        ("/v1/models/chairs:predict", {"inputs": good}, 404, r"Servable not found for request: Latest\(chairs\)$"),
        ("/v1/models/face/versions/7:predict", {"inputs": good}, 404, r"Specific\(face, 7\)"),
        ("/v1/models/face:predict", {"inputs": good, "signature_name": "nope"}, 404, "signature 'nope' not found"),
        ("/v1/models/face:predict", {"inputs": dict(good, target_pose=[[1.0]])}, 400,
         r"'target_pose' .* must be float32 \[\?, 64, 64, 3\], got float32 \[1, 1\]"),
        ("/v1/models/face:predict", {"inputs": dict(good, source_images=[[1.0], [1.0, 2.0]])}, 400,
         "not a rectangular float32 array"),
        ("/v1/models/face:predict", {"instances": [good], "inputs": good}, 400, "exactly one of 'instances'"),
        ("/v1/models/face:predict", {"inputs": dict(good, extra=[1.0])}, 400, r"unexpected \['extra'\]"),
        ("/v1/models/face:classify", {"examples": []}, 501, "classify is not served"),
        ("/v1/models/face:predict", {"inputs": dict(good, source_images=[good["source_images"][0] * 17],
                                                    source_poses=[good["source_poses"][0] * 17])}, 429,
         r"dimension 1 \(sources K\) 17, above this server's limit"),
    ]
    for path, body, code, pattern in cases:
        status, answer = http(server, path, body)
        assert status == code and re.search(pattern, answer["error"]), (path, status, answer)
    status, answer = http(server, "/v1/models/face:predict", raw=b"{not json")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = http(server, "/v1/models/" + "x" * 20000 + ":predict", {"inputs": good})
    assert status == 404 and len(answer["error"]) < 200 and "(20000 chars)" in answer["error"], (status, answer)


def test_body_over_the_limit_is_refused_before_it_is_read(server):
    """Only the headers are sent, declaring a body far above the limit: the answer comes at once."""
    limit = server._rest.max_body_bytes
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as connection:
        connection.sendall(f"POST /v1/models/face:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {limit * 1000}\r\n\r\n".encode())
        answer = connection.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 429") and b"above this server's limit" in body, answer[:300]


def test_status_metadata_and_grpc_model_status(server):
    status, answer = http(server, "/v1/models/face")
    assert status == 200 and answer == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert http(server, "/v1/models/face/versions/1") == (200, answer)
    status, missing = http(server, "/v1/models/chairs")
    assert status == 404 and "face" not in missing["error"]
    status, metadata = http(server, "/v1/models/face/metadata")
    assert status == 200 and metadata["model_spec"] == {"name": "face", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_uint8"} <= set(signatures)
    inputs = signatures["serving_default"]["inputs"]
    assert inputs["target_pose"]["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in inputs["target_pose"]["tensor_shape"]["dim"]] == ["-1", "64", "64", "3"]
    with grpc.insecure_channel(server.address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "face"
        response = stub.GetModelStatus(request, timeout=30)
        assert [(status.version, status.state) for status in response.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
        request.model_spec.name = "y" * 1_000_000  # a 1 MB name: NOT_FOUND with the name cut, not a size error
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetModelStatus(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND and len(caught.value.details()) < 200
        assert "(1000000 chars)" in caught.value.details()


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of Prometheus text; every line must parse."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = re.fullmatch(r'([:a-zA-Z_][:a-zA-Z0-9_]*)(?:\{(.*)\})? (\S+)', line)
        assert match, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def test_prometheus_metrics(server):
    with Client(server.address, "face", timeout=60) as client:
        client.generate(**make_inputs(1, 1, seed=3))
        with pytest.raises(InvalidRequestError):
            client.predict(make_inputs(1, 1, seed=3) | {"target_pose": np.zeros((1, 2), np.float32)})
    with Client(server.address, "face", timeout=60, signature_name="random-name-1") as client:
        with pytest.raises(ModelNotFoundError):
            client.predict(make_inputs(1, 1, seed=3))
    with Client("http://" + server.rest_address, "chairs", timeout=60) as client:
        with pytest.raises(ModelNotFoundError):
            client.predict({"x": np.zeros(1, np.float32)})
    status, text = http(server, "/monitoring/prometheus/metrics")
    assert status == 200
    samples = parse_metrics(text)

    def value(name, **labels):
        return samples.get((name, frozenset(labels.items())), 0)

    assert value(":tensorflow:serving:request_count", model_name="face", status="OK") >= 1
    assert value(":tensorflow:serving:request_count", model_name="face", status="INVALID_ARGUMENT") >= 1
    assert value(":tensorflow:serving:request_count", model_name="", status="NOT_FOUND") >= 1  # no label per name
    assert value(":tfrf:serving:request_count", model_name="face", version="1", signature_name="serving_default",
                 entrypoint="GRPC", status="OK") >= 1
    assert value(":tfrf:serving:request_count", model_name="face", version="1", signature_name="",
                 entrypoint="GRPC", status="NOT_FOUND") >= 1  # an unknown signature is no label value
    assert "random-name-1" not in text
    assert value(":tfrf:serving:model_loaded", model_name="face", version="1") == 1
    path = os.path.join(server.repository.base_paths["face"], "1")
    assert value(":tensorflow:cc:saved_model:load_attempt_count", model_path=path, status="success") == 1
    count = value(":tensorflow:serving:request_latency_count", model_name="face", API="predict", entrypoint="GRPC")
    infinite = value(":tensorflow:serving:request_latency_bucket", model_name="face", API="predict",
                     entrypoint="GRPC", le="+Inf")
    assert count >= 2 and infinite == count


def test_string_inputs_as_b64_in_both_formats():
    """The `photos` signature takes encoded images: {"b64": ...} and plain strings become DT_STRING."""
    photo = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    import base64

    b64 = {"b64": base64.b64encode(photo).decode()}
    array = to_array([[b64, "text"]], tf.string, "source_images")
    assert array.shape == (1, 2) and array[0, 0] == photo and array[0, 1] == b"text"
    with pytest.raises(Exception, match="invalid base64"):
        to_array([{"b64": "%%%"}], tf.string, "source_images")
    with pytest.raises(Exception, match="different lengths"):
        to_array([[b64], [b64, b64]], tf.string, "source_images")

    class Model:
        name = "people"
        signatures = {"photos": None}
        input_specs = {"photos": {"source_images": tf.TensorSpec([None, None], tf.string),
                                  "target_pose": tf.TensorSpec([None, 18, 2], tf.float32)}}

    keypoints = np.full((18, 2), -1.0, np.float32).tolist()
    rows = {"signature_name": "photos", "instances": [{"source_images": [b64, b64], "target_pose": keypoints}]}
    request = predict_request(rows, Model(), "people", None)
    assert tf.make_ndarray(request.inputs["source_images"]).tolist() == [[photo, photo]]
    assert list(request.inputs["target_pose"].tensor_shape.dim[i].size for i in range(3)) == [1, 18, 2]
    columns = {"signature_name": "photos", "inputs": {"source_images": [[b64]], "target_pose": [keypoints]}}
    assert tf.make_ndarray(predict_request(columns, Model(), "people", 3).inputs["source_images"]).shape == (1, 1)


def readme_examples():
    """(curl line, python snippet) of the README's REST section."""
    with open(README) as stream:
        text = stream.read()
    curl = re.search(r"^    (curl .*)$", text, re.MULTILINE).group(1)
    snippet = re.search(r"```python\n(import numpy as np, requests\n.*?)```", text, re.DOTALL).group(1)
    return curl, snippet


def test_readme_curl_line_and_requests_snippet_work_as_written(server, tmp_path):
    curl, snippet = readme_examples()
    assert len(snippet.strip().splitlines()) <= 12, snippet
    port = str(server.rest_port)
    if shutil.which("curl") is not None:
        done = subprocess.run(curl.replace("8501", port), shell=True, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["model_version_status"][0]["state"] == "AVAILABLE"
    pytest.importorskip("requests", reason="the README snippet uses the requests package")
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace("8501", port))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"(1, {SIZE}, {SIZE}, 3)"
    if shutil.which("curl") is None:
        pytest.skip("no curl binary: the README's curl line was not run (the requests snippet was)")


def test_photos_signature_over_rest_equals_grpc(server, tmp_path):
    """Encoded photos as {"b64": ...} and raw landmarks: REST and gRPC give the same image and coverage."""
    model = server.repository.get("face")
    if "photos" not in model.signatures:
        pytest.skip("this export has no `photos` signature")
    rng = np.random.default_rng(4)
    photos = np.empty((1, 2), dtype=object)
    photos[0, :] = [tf.io.encode_png(rng.integers(0, 256, (48 + 8 * k, 64, 3), dtype=np.uint8)).numpy()
                    for k in range(2)]
    landmarks = rng.uniform(8, 40, size=(1, 2, 68, 2)).astype(np.float32)
    target = rng.uniform(8, 56, size=(1, 68, 2)).astype(np.float32)
    inputs = {"source_images": photos, "source_poses": landmarks, "target_pose": target}
    with Client(server.address, "face", timeout=120, signature_name="photos") as client:
        expected = client.predict(inputs)
    with Client(f"http://{server.rest_address}", "face", timeout=120, signature_name="photos") as client:
        answered = client.predict(inputs)
        paths = []
        for index, photo in enumerate(photos[0]):  # the convenience call, photos given as files
            paths.append(str(tmp_path / f"photo{index}.png"))
            with open(paths[-1], "wb") as stream:
                stream.write(photo)
        called = client.photos([paths], landmarks, target)
    assert sorted(answered) == sorted(expected) == sorted(called) and "coverage" in expected
    for name in expected:
        assert answered[name].dtype == expected[name].dtype
        np.testing.assert_array_equal(answered[name], expected[name])
        np.testing.assert_array_equal(called[name], expected[name])


def test_monitoring_config_and_docker_run_line():
    """monitoring.config parses as TF-Serving's MonitoringConfig (the pip package lacks its
    module: the two messages of tensorflow_serving/config/monitoring_config.proto are built here)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

    proto = descriptor_pb2.FileDescriptorProto(name="tfrf_test_monitoring_config.proto", package="tfrf_test",
                                               syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1)  # bool
    prometheus.field.add(name="path", number=2, type=9, label=1)  # string
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=11, label=1, type_name=".tfrf_test.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    message = message_factory.GetMessageClass(pool.FindMessageTypeByName("tfrf_test.MonitoringConfig"))
    with open(os.path.join(os.path.dirname(README), "monitoring.config")) as stream:
        config = text_format.Parse(stream.read(), message())
    assert config.prometheus_config.enable and config.prometheus_config.path == "/monitoring/prometheus/metrics"
    with open(README) as stream:
        docker = re.search(r"docker run .*?tensorflow/serving:2\.15\.1.*?(?=\n\n)", stream.read().replace("\\\n", " "),
                           re.DOTALL).group(0)
    for part in ("-p 8500:8500", "-p 8501:8501", "--monitoring_config_file=/config/monitoring.config",
                 "--batching_parameters_file=/config/batching_parameters.txt", "--enable_batching"):
        assert part in docker, (part, docker)


def test_malformed_http_gets_json_errors(server):
    """The HTTP library's own refusals come as {"error": ...} too, the request's text cut."""
    cases = [(b"BREW /v1/models/face HTTP/1.0\r\n\r\n", b"501"),  # unsupported method
             (b"GET /" + b"x" * 70000 + b" HTTP/1.0\r\n\r\n", b"414"),  # request line over 64 KiB
             (b"GET /v1/models/face HTTP/1.0\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"431")]  # too many headers
    for raw, code in cases:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) as connection:
            connection.sendall(raw)
            answer = connection.makefile("rb").read()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == code and len(json.loads(body)["error"]) <= 220, answer[:300]


@pytest.mark.slow
def test_tfrf_serve_serves_rest_and_metrics(model_dir):
    from helpers import free_port
    from serving_helpers import serve_process, stop_process

    port, rest_port = free_port(), free_port()
    process, line = serve_process([model_dir["dir"], "--port", str(port), "--rest-port", str(rest_port),
                                   "--poll-seconds", "0"])
    try:
        assert f"REST on 127.0.0.1:{rest_port}" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/face", timeout=60) as response:
            assert json.load(response)["model_version_status"][0]["state"] == "AVAILABLE"
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics",
                                    timeout=60) as response:
            text = response.read().decode()
        assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="' in text and 'status="success"} 1' in text
    finally:
        stop_process(process)
