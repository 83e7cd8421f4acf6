"""Request sizes and server time of the `photos` signature against the dense `serving_default`.

    python -m tfrf.benchmarks.request_size [--photos a.jpg b.jpg] [--width-multiplier 1.0]

One DeepFashion request at K = 2 (two 256 x 256 JPEG photos by default), built the way a client
builds it:

- `photos`: the JPEG bytes, the sources' keypoints `[1, 2, 18, 2]` and the target's `[1, 18, 2]`;
- `serving_default`: the photos decoded and scaled to [-1, 1] `[1, 2, 256, 256, 3]` and the 18
  Gaussian heatmaps of every pose (`[1, 2, 256, 256, 18]`, `[1, 256, 256, 18]`), float32.

Sizes: gRPC is the serialized `tensorflow.serving.PredictRequest` (TensorProtos with
`tensor_content` / `string_val`, as `tf.make_tensor_proto` writes them); REST is the TF-Serving
REST body, columnar (`{"signature_name", "inputs"}`), strings as `{"b64": ...}`, floats as Python
writes them (`json.dumps` of `ndarray.tolist()`).

Server time: what a server does with the request bytes (`parse`: the PredictRequest parsed, its
TensorProtos turned into tensors) and that plus the exported SavedModel (written to a temporary
folder and loaded in this process) called through the signature (`parse + run`), best of
`--repeats` interleaved rounds, as wall time and as CPU time (all threads of this process: steadier
where other work shares the machine). Without `--photos`, the photos are photo-like synthetic
images (smooth colour, edges and sensor-like noise) written as JPEG quality 90; pass real photos
for real sizes (any size: the graph fits them). The network is the DeepFashion preset at
`--width-multiplier` (the request does not depend on it; the server time does), random weights.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

SIZE = 256
K = 2
GOAL_GRPC_KB, GOAL_REST_KB = 150, 200  # the goal of a DeepFashion K = 2 request with two 256x256 JPEGs


def synthetic_photo(seed: int, size: int = SIZE) -> np.ndarray:
    """A photo-like uint8 [size, size, 3] image: smooth colour fields, a few hard-edged shapes
    and Gaussian noise of 4 levels (what a JPEG encoder meets in a camera photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    image = np.stack([np.sin(5 * x * rng.uniform(0.5, 2) + 3 * y * rng.uniform(0.5, 2) + rng.uniform(0, 6))
                      for _ in range(3)], -1) * 60 + 128
    for _ in range(6):  # shapes with hard edges, like clothes against a background
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        inside = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        image[inside] = rng.uniform(20, 235, 3) + 20 * np.sin(40 * x[inside] * rng.uniform(0.5, 1.5))[:, None]
    image += rng.normal(0, 4, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    stream = io.BytesIO()
    Image.fromarray(image).save(stream, "JPEG", quality=quality)
    return stream.getvalue()


def random_pose(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keypoints = (rng.uniform(0.05, 0.95, (18, 2)) * [height - 1, width - 1]).astype(np.float32)
    keypoints[rng.uniform(size=18) < 0.15] = -1
    return keypoints


def requests(encoded: List[bytes]) -> Dict[str, Dict[str, np.ndarray]]:
    """signature -> inputs of the same request: `photos` (bytes and keypoints) and
    `serving_default` (what a client computes from them with tfrf's numpy / PIL code)."""
    from PIL import Image

    from tfrf.pose import encoder
    from tfrf.pose.keypoints import fit_image, transform_keypoints

    photos = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in encoded]
    poses = np.stack([random_pose(index, *photo.shape[:2]) for index, photo in enumerate(photos)])
    target = random_pose(99, SIZE, SIZE)
    fitted = [fit_image(photo, (SIZE, SIZE)) for photo in photos]
    heatmaps = encoder("keypoints18")
    dense = {
        "source_images": np.stack([image for image, _ in fitted])[None].astype(np.float32) / 127.5 - 1.0,
        "source_poses": np.stack([heatmaps(transform_keypoints(pose, transform), SIZE, SIZE).numpy()
                                  for pose, (_, transform) in zip(poses, fitted)])[None],
        "target_pose": heatmaps(target, SIZE, SIZE).numpy()[None],
    }
    compact = {"source_images": np.array([encoded], dtype=object), "source_poses": poses[None],
               "target_pose": target[None]}
    return {"photos": compact, "serving_default": dense}


def grpc_request(signature: str, inputs: Dict[str, np.ndarray]) -> bytes:
    """The serialized PredictRequest."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "deepfashion"
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request.SerializeToString()


def rest_body(signature: str, inputs: Dict[str, np.ndarray]) -> bytes:
    """The TF-Serving REST predict body, columnar, strings as {"b64": ...}."""
    def jsonable(value: np.ndarray):
        if value.dtype == object:
            return np.vectorize(lambda data: {"b64": base64.b64encode(data).decode("ascii")}, otypes=[object])(
                value).tolist()
        return value.tolist()

    return json.dumps({"signature_name": signature,
                       "inputs": {name: jsonable(value) for name, value in inputs.items()}}).encode("utf-8")


def parse(serialized: bytes):
    """What a server does with the request bytes before running: parse the PredictRequest and
    turn its TensorProtos into tensors."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest.FromString(serialized)
    return {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}


def serve(model, signature: str, serialized: bytes):
    """One request as a server handles it: parse, run, outputs to numpy."""
    outputs = model.signatures[signature](**parse(serialized))
    return {name: value.numpy() for name, value in outputs.items()}


def interleaved_wall_and_cpu(runners, rounds: int):
    """key -> (best wall seconds, best CPU seconds of this process, all threads) of each runner,
    called in turns over `rounds` rounds after one warm-up call each. On a machine shared with
    other work the CPU time varies less than the wall time."""
    for runner in runners.values():
        runner()
    walls = {key: [] for key in runners}
    cpus = {key: [] for key in runners}
    for _ in range(rounds):
        for key, runner in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            runner()
            walls[key].append(time.perf_counter() - wall)
            cpus[key].append(time.process_time() - cpu)
    return {key: (min(walls[key]), min(cpus[key])) for key in runners}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", nargs=K, help=f"{K} JPEG or PNG files (default: synthetic 256x256 JPEGs)")
    parser.add_argument("--width-multiplier", type=float, default=1.0, help="network width (server time only)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--no-time", action="store_true", help="print the sizes only (no export, no model)")
    args = parser.parse_args(argv)

    if args.photos:
        encoded = []
        for path in args.photos:
            with open(path, "rb") as stream:
                encoded.append(stream.read())
    else:
        encoded = [jpeg(synthetic_photo(seed)) for seed in range(K)]
    inputs = requests(encoded)
    wire = {signature: grpc_request(signature, values) for signature, values in inputs.items()}
    rest = {signature: rest_body(signature, values) for signature, values in inputs.items()}

    times = {}
    if not args.no_time:
        import tensorflow as tf

        from tfrf.config import ModelConfig
        from tfrf.export import export_generator
        from tfrf.export.saved_model import export_saved_model

        config = ModelConfig.preset("deepfashion", width_multiplier=args.width_multiplier)
        with tempfile.TemporaryDirectory() as folder:
            path = export_saved_model(export_generator(config), os.path.join(folder, "deepfashion"))
            model = tf.saved_model.load(path)
            runners = {}
            for signature in wire:
                runners[signature, "parse"] = lambda s=signature: parse(wire[s])
                runners[signature, "serve"] = lambda s=signature: serve(model, s, wire[s])
            times = interleaved_wall_and_cpu(runners, rounds=max(1, args.repeats))

    photo_bytes = ", ".join(f"{len(data) / 1000:.1f}" for data in encoded)
    print(f"DeepFashion request, K = {K}, photos {photo_bytes} kB "
          f"({'given' if args.photos else 'synthetic 256x256 JPEG q90'}); kB = 1000 bytes")
    print()
    print("| signature | gRPC PredictRequest | REST JSON | parse | parse + run | parse + run, CPU time |")
    print("|---|---|---|---|---|---|")
    for signature in ("serving_default", "photos"):
        timing = [f"{times[signature, part][index] * 1000:.0f} ms" if times else "-"
                  for part, index in (("parse", 0), ("serve", 0), ("serve", 1))]
        print(f"| `{signature}` | {len(wire[signature]) / 1000:,.1f} kB | {len(rest[signature]) / 1000:,.1f} kB | "
              f"{' | '.join(timing)} |")
    grpc_kb, rest_kb = len(wire["photos"]) / 1000, len(rest["photos"]) / 1000
    met = grpc_kb <= GOAL_GRPC_KB and rest_kb <= GOAL_REST_KB
    print()
    print(f"photos request: {grpc_kb:.1f} kB gRPC (goal <= {GOAL_GRPC_KB}), {rest_kb:.1f} kB REST "
          f"(goal <= {GOAL_REST_KB}): {'met' if met else 'NOT met'}; "
          f"{len(wire['serving_default']) / len(wire['photos']):,.0f}x smaller over gRPC")
    if times:
        import tensorflow as tf

        devices = tf.config.list_physical_devices("GPU")
        print()
        print(f"server time (parse: the PredictRequest to tensors; run: the SavedModel signature, in this "
              f"process; wall time, and CPU time of all threads): DeepFashion preset at width "
              f"{args.width_multiplier}, random weights, best of "
              f"{args.repeats} interleaved rounds, "
              f"{'GPU ' + devices[0].name if devices else f'CPU ({os.cpu_count()} cores)'}")


if __name__ == "__main__":
    main()
