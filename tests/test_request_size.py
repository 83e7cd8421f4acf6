"""The request-size benchmark builds requests that decode back to what they carry."""
import base64
import json

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tfrf.benchmarks import request_size


def test_requests_round_trip_and_the_script_prints_its_table(capsys):
    encoded = [request_size.jpeg(request_size.synthetic_photo(seed, 64)) for seed in range(2)]
    inputs = request_size.requests(encoded)
    assert inputs["serving_default"]["source_poses"].shape == (1, 2, 256, 256, 18)
    for signature, values in inputs.items():
        request = predict_pb2.PredictRequest.FromString(request_size.grpc_request(signature, values))
        assert request.model_spec.signature_name == signature
        for name, value in values.items():
            np.testing.assert_array_equal(tf.make_ndarray(request.inputs[name]), value)
        body = json.loads(request_size.rest_body(signature, values))
        assert body["signature_name"] == signature and sorted(body["inputs"]) == sorted(values)
    rest = json.loads(request_size.rest_body("photos", inputs["photos"]))["inputs"]
    assert [base64.b64decode(item["b64"]) for item in rest["source_images"][0]] == encoded
    np.testing.assert_array_equal(np.asarray(rest["source_poses"], np.float32), inputs["photos"]["source_poses"])

    request_size.main(["--no-time"])
    printed = capsys.readouterr().out
    assert "| `serving_default` |" in printed and "| `photos` |" in printed and "photos request:" in printed
