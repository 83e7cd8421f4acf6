"""SavedModel export: TF-Serving layout, atomic versions, and a load in a process free of
tensorflow_addons and tfrf whose outputs equal the Keras model's."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfrf
from tfrf.cli import main as cli_main
from tfrf.export import export_generator
from tfrf.export import saved_model as saved_model_lib
from tfrf.export.photos import photos_supported

from helpers import SIZE, make_inputs, saved_tfa_generator, tiny_config

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A generator trained-style with the tfa warp, its weights file, and the CLI export of it."""
    root = tmp_path_factory.mktemp("saved_model")
    generator, weights = saved_tfa_generator(root, seed=7)
    base = str(root / "models" / "face")
    assert cli_main([
        "export", "saved-model", "--preset", "voxceleb2", "--image-size", str(SIZE), str(SIZE),
        "--width-multiplier", "0.125", "--weights", weights, "--out", base,
    ]) == 0
    return {"generator": generator, "weights": weights, "base": base, "version_dir": os.path.join(base, "1")}


def test_layout_and_config_asset(exported):
    base = exported["base"]
    assert sorted(os.listdir(base)) == ["1"]  # no temporary directory left behind
    files = set(os.listdir(exported["version_dir"]))
    assert {"saved_model.pb", "variables", "assets.extra"} <= files
    with open(os.path.join(exported["version_dir"], saved_model_lib.CONFIG_ASSET)) as stream:
        recorded = tfrf.ModelConfig.from_dict(json.load(stream))
    assert recorded == tiny_config().replace(warp_backend="gather")


def test_subprocess_without_addons_or_tfrf_matches_keras(exported, tmp_path):
    """The artefact alone: plain TF loads and runs it; no Addons op; outputs equal Keras."""
    cases = {"k1": make_inputs(2, 1, seed=1), "k3": make_inputs(1, 3, seed=2)}
    np.savez(tmp_path / "inputs.npz", **{f"{case}__{name}": value for case, inputs in cases.items()
                                         for name, value in inputs.items()})
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.framework import op_def_registry

        model_dir, inputs_path, outputs_path = sys.argv[1:4]
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString(open(model_dir + "/saved_model.pb", "rb").read())
        ops = set()
        for graph in proto.meta_graphs:
            ops.update(node.op for node in graph.graph_def.node)
            for function in graph.graph_def.library.function:
                ops.update(node.op for node in function.node_def)
        loaded = tf.saved_model.load(model_dir, tags=["serve"])
        data = np.load(inputs_path)
        outputs = {}
        for case in ("k1", "k3"):
            feed = {name: tf.constant(data[case + "__" + name])
                    for name in ("source_images", "source_poses", "target_pose")}
            outputs[case + "__float"] = loaded.signatures["serving_default"](**feed)["image"].numpy()
            feed["source_images"] = tf.cast(tf.round((feed["source_images"] + 1.0) * 127.5), tf.uint8)
            outputs[case + "__uint8"] = loaded.signatures["serving_uint8"](**feed)["image"].numpy()
        np.savez(outputs_path, **outputs)
        print(json.dumps({
            "modules": sorted(name for name in sys.modules
                              if name.split(".")[0] in ("tfrf", "tensorflow_addons")),
            "ops": sorted(ops),
            "unregistered": sorted(op for op in ops if op_def_registry.get(op) is None),
            "signatures": sorted(loaded.signatures),
        }))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    completed = subprocess.run(
        [sys.executable, "-c", script, exported["version_dir"], str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path), env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    # `photos` for every model whose raw poses can be drawn in-graph (face models: with tfrf.pose.face_graph)
    photos = ["photos"] if photos_supported(tfrf.ModelConfig.preset("voxceleb2")) else []
    assert report["signatures"] == sorted(photos + ["serving_default", "serving_uint8"])
    assert not [op for op in report["ops"] if op.startswith("Addons>")]
    assert report["unregistered"] == []
    assert "GatherV2" in report["ops"] and "Conv2D" in report["ops"]

    outputs = np.load(tmp_path / "out.npz")
    tfa_model = exported["generator"]
    gather_model = export_generator(tiny_config(), exported["weights"])
    for case, inputs in cases.items():
        served = outputs[f"{case}__float"]
        assert served.shape == (inputs["target_pose"].shape[0], SIZE, SIZE, 3)
        np.testing.assert_allclose(served, tfa_model(inputs).numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(served, gather_model(inputs).numpy(), atol=TOLERANCE, rtol=0)
        assert served.std() > 0.1  # a real image-like output, not a constant
        # uint8 signature: the float output of the quantised images, rounded to 0..255.
        quantised = dict(inputs, source_images=np.round((inputs["source_images"] + 1) * 127.5) / 127.5 - 1)
        expected = np.clip(np.round((tfa_model(quantised).numpy() + 1) * 127.5), 0, 255)
        assert outputs[f"{case}__uint8"].dtype == np.uint8
        assert np.abs(outputs[f"{case}__uint8"].astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_next_version_and_existing_version(exported, tmp_path):
    base = str(tmp_path / "face")
    generator = export_generator(tiny_config(), exported["weights"])
    assert saved_model_lib.next_version(base) == 1
    first = saved_model_lib.export_saved_model(generator, base)
    os.makedirs(os.path.join(base, ".tmp-9-abc"))  # an unfinished export is not a version
    os.makedirs(os.path.join(base, "assets"))
    second = saved_model_lib.export_saved_model(generator, base)
    assert (os.path.basename(first), os.path.basename(second)) == ("1", "2")
    with pytest.raises(FileExistsError, match="exists already"):
        saved_model_lib.export_saved_model(generator, base, version=2)
    assert saved_model_lib.export_saved_model(generator, base, version=10).endswith(os.sep + "10")
    assert saved_model_lib.next_version(base) == 11


def test_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    base = str(tmp_path / "face")
    generator = export_generator(tiny_config(), exported["weights"])

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        saved_model_lib.export_saved_model(generator, base)
    assert os.listdir(base) == []


def test_run_time_checks_and_export_errors(exported):
    loaded = tf.saved_model.load(exported["version_dir"])
    serve = loaded.signatures["serving_default"]
    inputs = make_inputs(1, 2, seed=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="K >= 1"):
        serve(source_images=inputs["source_images"][:, :0], source_poses=inputs["source_poses"][:, :0],
              target_pose=inputs["target_pose"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_poses must be"):
        serve(source_images=inputs["source_images"], source_poses=inputs["source_poses"][:, :1],
              target_pose=inputs["target_pose"])
    with pytest.raises(ValueError, match="gather"):
        saved_model_lib.serving_module(exported["generator"])  # the tfa model itself
    with pytest.raises(FileNotFoundError, match="do not exist"):
        export_generator(tiny_config(), "/nonexistent/weights.h5")
    ops = saved_model_lib.graph_op_types(exported["version_dir"])
    assert ops["GatherV2"] > 0 and not any(op.startswith("Addons>") for op in ops)
