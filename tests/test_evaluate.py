"""`tfrf evaluate`: tiny trained runs on Market-1501's dummy data and on the built-in chairs.

The figures in metrics.json must be `compute_metrics` of the images the report wrote (read back
from disk) against the test targets, with LPIPS / Inception loaded from the same weight files the
command read; the tables must hold those values; the helpers are checked against hand-computed
answers.
"""
import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tfrf import runs
from tfrf.cli import main
from tfrf.data import synthetic
from tfrf.data.pipeline import make_dataset, table_from_tfds
from tfrf.evaluation import data as data_lib
from tfrf.evaluation import metric_networks, render, report, tables
from tfrf.metrics import LPIPS, FIDInception, compute_metrics
from tfrf.visualize import to_uint8

DATASETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets")
TRAIN_FLAGS = ["--steps", "1", "--batch-size", "2", "--width-multiplier", "0.125", "--vgg-weights", "none",
               "--checkpoint-every", "1", "--steps-per-epoch", "1", "--quiet"]
ALEX_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
ALL_METRICS = ["fid", "lpips", "mlpips", "ssim", "psnr", "l1"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def metric_weights(workspace):
    """LPIPS as torch-layout .npz state dicts and a random Inception as .weights.h5 (input 75)."""
    rng = np.random.default_rng(0)
    folder = workspace / "metric_weights"
    folder.mkdir()
    backbone = {}
    for index, (out_channels, in_channels, kernel) in ALEX_CONVS.items():
        scale = np.sqrt(2.0 / (in_channels * kernel * kernel))
        backbone[f"features.{index}.weight"] = rng.normal(0, scale, (out_channels, in_channels, kernel, kernel))
        backbone[f"features.{index}.bias"] = rng.normal(0, 0.01, out_channels)
    np.savez(folder / "alexnet-owt-7be5be79.npz", **{k: v.astype(np.float32) for k, v in backbone.items()})
    lin = {f"lin{k}.model.1.weight": rng.uniform(0, 0.1, (1, c, 1, 1)).astype(np.float32)
           for k, c in enumerate((64, 192, 384, 256, 256))}
    np.savez(folder / "alex.npz", **lin)
    tf.keras.utils.set_random_seed(5)
    inception_file = str(workspace / "inception.weights.h5")
    FIDInception("standard", input_size=75).save_weights(inception_file)
    return {"lpips_dir": str(folder), "inception": inception_file}


@pytest.fixture(scope="module")
def market(workspace):
    """Market-1501's dummy data prepared, and a run trained 1 step (stage 1) at 64x32."""
    from tfrf.datasets.market1501 import Market1501

    builder = Market1501(data_dir=str(workspace / "tfds"))
    manual = os.path.join(DATASETS_DIR, "market1501", "dummy_data")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    run = str(workspace / "market_run")
    version_folder = os.fspath(builder.data_dir)
    assert main(["train", "--data-dir", version_folder, "--k", "2", "--stage", "flow", *TRAIN_FLAGS,
                 "--image-size", "64", "32", "--out", run]) == 0
    return {"run": run, "version_folder": version_folder}


@pytest.fixture(scope="module")
def chairs(workspace):
    """A run on the built-in chairs (32x32, stage 1, 2 steps) that keeps its step-1 checkpoint."""
    cache = str(workspace / "synthetic_cache")
    run = str(workspace / "chairs")
    assert main(["train", "--preset", "demo", "--data-dir", "synthetic", "--cache-dir", cache, "--train-objects", "2",
                 "--test-objects", "1", "--stage", "flow", "--steps", "2", "--batch-size", "2", "--width-multiplier",
                 "0.125", "--image-size", "32", "32", "--checkpoint-every", "1", "--steps-per-epoch", "1", "--quiet",
                 "--out", run]) == 0
    return {"run": run, "step1": os.path.join(run, "checkpoints", "flow", "ckpt-1"), "cache": cache}


def _read(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _targets(table, k, tuples, size):
    dataset = make_dataset(table, k, batch_size=len(tuples), training=False, tuples=tuples, image_size=size)
    return to_uint8(next(iter(dataset))["target_image"].numpy())


def _scaled_keypoints(table, indices, stored, size):
    """The target keypoints at `size`, moved with half-pixel centres, one point at a time."""
    result = np.full((len(indices), 18, 2), -1.0)
    for row, index in enumerate(indices):
        for joint, (y, x) in enumerate(np.asarray(table.pose(int(index)), np.float64)):
            if y >= 0 and x >= 0:
                result[row, joint] = ((y + 0.5) * size[0] / stored[0] - 0.5, (x + 0.5) * size[1] / stored[1] - 0.5)
    return result


@pytest.mark.slow
def test_market_report_equals_the_metrics_of_the_written_images(workspace, market, metric_weights, capsys):
    out = str(workspace / "market_report")
    assert main(["evaluate", "--run", market["run"], "--data-dir", market["version_folder"], "--k", "1", "2",
                 "--metrics", *ALL_METRICS, "--lpips-weights", metric_weights["lpips_dir"],
                 "--inception-weights", metric_weights["inception"], "--inception-input-size", "75",
                 "--metrics-cache-dir", str(workspace / "metrics_cache"), "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| 1 | `market_run` |" in printed and "| 2 | `market_run` |" in printed
    for name in ("metrics.json", "metrics.csv", "metrics.md", "gallery_market_run_k1.png",
                 "gallery_market_run_k2.png", "tuples/k1.npy", "tuples/k2.npy"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not [name for name in os.listdir(workspace) if name.startswith(".tmp-")]
    with open(os.path.join(out, "metrics.json")) as stream:
        written = json.load(stream)

    builder = tfds.builder_from_directory(market["version_folder"])
    table = table_from_tfds(builder, "test")
    lpips = LPIPS("alex")
    lpips.load_torch_weights(os.path.join(metric_weights["lpips_dir"], "alexnet-owt-7be5be79.npz"),
                             os.path.join(metric_weights["lpips_dir"], "alex.npz"), cache_dir=False)
    inception = FIDInception("standard", input_size=75)
    inception.load(metric_weights["inception"])
    config = runs.read_model_config(market["run"])
    generator = runs.load_generator(config, runs.latest_run_weights(market["run"]))
    for k in (1, 2):
        tuples = np.load(os.path.join(out, "tuples", f"k{k}.npy"))
        np.testing.assert_array_equal(tuples, np.load(os.path.join(market["version_folder"], f"test_tuples_k{k}.npy")))
        folder = os.path.join(out, "generated", "market_run", f"k{k}")
        images = np.stack([_read(os.path.join(folder, f"{row:05d}.png")) for row in range(len(tuples))])
        assert images.shape == (len(tuples), 64, 32, 3)
        targets = _targets(table, k, tuples, (64, 32))
        keypoints = _scaled_keypoints(table, tuples[:, -1], (128, 64), (64, 32))
        expected = compute_metrics(images, targets, keypoints, metrics=["fid", "lpips", "mask_lpips", "ssim", "psnr",
                                                                         "l1"], lpips=lpips, inception=inception)
        result = written["runs"]["market_run"]["results"][str(k)]
        for name, value in expected.items():
            assert result[name] == pytest.approx(value, rel=1e-5, abs=1e-6), (k, name)
        # The PNGs are the generator's outputs, rounded.
        dataset = make_dataset(table, k, batch_size=len(tuples), training=False, tuples=tuples, image_size=(64, 32))
        batch = next(iter(dataset))
        outputs = to_uint8(generator({key: batch[key] for key in ("source_images", "source_poses", "target_pose")},
                                     training=False).numpy())
        assert np.abs(outputs.astype(int) - images).max() <= 1
        # scores.csv: the L1 of each image, by hand.
        with open(os.path.join(folder, "scores.csv")) as stream:
            scores = list(csv.DictReader(stream))
        by_hand = [np.mean(np.abs(images[i] / 127.5 - targets[i] / 127.5)) for i in range(len(tuples))]
        np.testing.assert_allclose([float(row["l1"]) for row in scores], by_hand, rtol=1e-9)
        assert [int(row["target"]) for row in scores] == tuples[:, -1].tolist()

    with open(os.path.join(out, "metrics.csv")) as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["run"], row["k"]) for row in rows] == [("market_run", "1"), ("market_run", "2")]
    for row in rows:
        result = written["runs"]["market_run"]["results"][row["k"]]
        for name in ("fid", "lpips", "mask_lpips", "ssim", "psnr", "l1"):
            assert float(row[name]) == result[name]
    markdown = open(os.path.join(out, "metrics.md")).read()
    assert "| K | run | FID ↓ | LPIPS ↓ | Mask-LPIPS ↓ | SSIM ↑ | PSNR ↑ | L1 ↓ | examples |" in markdown
    first = written["runs"]["market_run"]["results"]["1"]
    assert (f"| 1 | `market_run` | {first['fid']:.2f} | {first['lpips']:.4f} | {first['mask_lpips']:.4f} | "
            f"{first['ssim']:.4f} | {first['psnr']:.2f} | {first['l1']:.4f} | {first['examples']} |") in markdown


@pytest.mark.slow
def test_two_chair_models_give_one_table_with_jpeg_images(workspace, chairs, capsys):
    # `tfrf train` records what the run trained on: no --data-dir needed, for --weights inside the run too.
    assert data_lib.read_run_data(chairs["run"]) == {"data_dir": "synthetic", "dataset": None, "seed": 0,
                                                     "test_objects": 1, "image_size": 32, "cache_dir": chairs["cache"]}
    out = str(workspace / "chairs_report")
    assert main(["evaluate", "--run", chairs["run"], "--weights", chairs["step1"], "--k", "1", "2",
                 "--max-examples", "5", "--metrics", *ALL_METRICS, "--random-metric-weights",
                 "--inception-input-size", "75", "--jpeg", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mlpips does not apply" in printed
    with open(os.path.join(out, "metrics.json")) as stream:
        written = json.load(stream)
    assert written["metrics"] == ["fid", "lpips", "ssim", "psnr", "l1"]
    table = data_lib.open_data("synthetic", seed=0, test_objects=1, image_size=32, cache_dir=chairs["cache"],
                               verbose=False).table
    values = {}
    for name in ("chairs", "ckpt-1"):
        for k in (1, 2):
            tuples = np.load(os.path.join(out, "tuples", f"k{k}.npy"))
            assert tuples.shape == (5, k + 1)
            folder = os.path.join(out, "generated", name, f"k{k}")
            assert sorted(os.listdir(folder)) == [f"{row:05d}.jpg" for row in range(5)] + ["scores.csv"]
            images = np.stack([_read(os.path.join(folder, f"{row:05d}.jpg")) for row in range(5)])
            expected = compute_metrics(images, _targets(table, k, tuples, (32, 32)), metrics=["l1", "psnr", "ssim"])
            result = written["runs"][name]["results"][str(k)]
            for metric in ("l1", "psnr", "ssim"):
                assert result[metric] == pytest.approx(expected[metric], rel=1e-5), (name, k, metric)
            assert np.isfinite(result["lpips"]) and np.isfinite(result["fid"]) and result["examples"] == 5
            values[name, k] = result["l1"]
            assert os.path.isfile(os.path.join(out, f"gallery_{name}_k{k}.png"))
    assert values["chairs", 1] != values["ckpt-1", 1]  # two different generators (steps 2 and 1)
    lines = _first_table(open(os.path.join(out, "metrics.md")).read())
    assert [line.split(" | ")[:2] for line in lines[1:]] == [["| 1", "`chairs`"], ["| 1", "`ckpt-1`"],
                                                             ["| 2", "`chairs`"], ["| 2", "`ckpt-1`"]]
    # The protocol card, and the mechanism metrics on the chairs' ground truth.
    card = written["protocol"]
    assert card["protocol"] == "gfla" and card["image_size"] == [32, 32] and card["crop"].startswith("none")
    assert card["generated_format"].startswith("JPEG") and card["lpips"] == {"version": "0.1", "net": "alex"}
    assert card["inception"]["fid_mode"] == "standard" and card["real_set"]["count"] == {"1": 5, "2": 5}
    for k in (1, 2):
        tuples = np.load(os.path.join(out, "tuples", f"k{k}.npy"))
        truth = synthetic.tuple_ground_truth(table.groups, table.order, tuples, 32)
        result = written["runs"]["chairs"]["results"][str(k)]
        for level in ("h8", "h4"):
            flow, visible = truth[level]["flow"], truth[level]["visible"]
            assert result[f"epe_zero_{level}"] == pytest.approx(np.linalg.norm(flow, axis=-1)[visible].mean())
            assert np.isfinite(result[f"epe_flow_{level}"]) and np.isfinite(result[f"epe_refined_{level}"])
            assert 0.0 <= result[f"occlusion_auroc_{level}"] <= 1.0
        assert (result["attention_agreement_h4"] is None) == (k == 1)
    assert "Mechanism against the renderer's ground truth" in open(os.path.join(out, "metrics.md")).read()


def _first_table(markdown):
    """The rows of the first Markdown table (the image metrics)."""
    lines = markdown.splitlines()
    start = next(row for row, line in enumerate(lines) if line.startswith("| "))
    end = next((row for row in range(start, len(lines)) if not lines[row].startswith("|")), len(lines))
    return [line for line in lines[start:end] if line.startswith("| ")]


@pytest.mark.slow
def test_pt176_scores_the_centre_crop_of_the_256_output(workspace, chairs):
    out = str(workspace / "chairs_pt176")
    assert main(["evaluate", "--run", chairs["run"], "--k", "2", "--max-examples", "3", "--protocol", "pt176",
                 "--metrics", "l1", "ssim", "--no-mechanism", "--out", out, "--quiet"]) == 0
    with open(os.path.join(out, "metrics.json")) as stream:
        written = json.load(stream)
    assert written["protocol"]["protocol"] == "pt176" and written["protocol"]["image_size"] == [256, 176]
    assert written["protocol"]["resize"]["output"].startswith("bicubic")
    assert "epe_flow_h4" not in written["runs"]["chairs"]["results"]["2"]
    table = data_lib.open_data("synthetic", seed=0, test_objects=1, image_size=32, cache_dir=chairs["cache"],
                               verbose=False).table
    tuples = np.load(os.path.join(out, "tuples", "k2.npy"))
    folder = os.path.join(out, "generated", "chairs", "k2")
    images = np.stack([_read(os.path.join(folder, f"{row:05d}.png")) for row in range(3)])
    assert images.shape == (3, 256, 176, 3)
    targets = _targets(table, 2, tuples, (32, 32))
    expected_targets = np.stack([np.asarray(Image.fromarray(t).resize((256, 256), Image.BICUBIC))[:, 40:216]
                                 for t in targets])
    expected = compute_metrics(images, expected_targets, metrics=["l1", "ssim"])
    for metric in ("l1", "ssim"):
        assert written["runs"]["chairs"]["results"]["2"][metric] == pytest.approx(expected[metric], rel=1e-5)
    assert main(["evaluate", "--run", chairs["run"], "--protocol", "pt176", "--jpeg", "--out", out]) == 2


@pytest.mark.slow
def test_a_requested_metric_without_its_weights_is_one_line(workspace, market, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--metrics", "lpips", "--lpips-weights", str(empty)], "alexnet-owt-7be5be79.pth"),
        (["--metrics", "mlpips"], "--lpips-weights"),
        (["--metrics", "fid"], "pt_inception-2015-12-05-6726825d.pth"),
        (["--metrics", "fid", "--fid-mode", "gfla", "--inception-weights", str(tmp_path / "nope.pth")],
         "inception_v3_google-0cc3c7bd.pth"),
    ]
    np.savez(tmp_path / "alexnet-owt-7be5be79.npz", x=np.zeros(1))
    partial = tmp_path
    cases.append((["--metrics", "lpips", "--lpips-weights", str(partial)], os.path.join(str(partial), "alex.pth")))
    for flags, named in cases:
        status = main(["evaluate", "--run", market["run"], "--data-dir", market["version_folder"], *flags,
                       "--out", str(tmp_path / "report")])
        error = capsys.readouterr().err.strip()
        assert status == 2 and len(error.splitlines()) == 1 and named in error, (flags, error)
    assert not os.path.exists(tmp_path / "report")
    # A run that does not record its data (data.json) needs --data-dir.
    assert data_lib.read_run_data(market["run"])["data_dir"] == os.path.abspath(market["version_folder"])
    unrecorded = str(tmp_path / "unrecorded")
    shutil.copytree(market["run"], unrecorded, ignore=shutil.ignore_patterns("logs", "data.json"))
    assert main(["evaluate", "--run", unrecorded, "--out", str(tmp_path / "report")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "give --data-dir" in error


def test_publish_replaces_a_report_and_refuses_anything_else(tmp_path):
    def populate(text):
        def write(folder):
            with open(os.path.join(folder, "metrics.json"), "w") as stream:
                stream.write(text)
        return write

    path = str(tmp_path / "report")
    report.publish(path, populate("1"))
    report.publish(path, populate("2"))
    assert open(os.path.join(path, "metrics.json")).read() == "2"
    assert sorted(os.listdir(tmp_path)) == ["report"]

    def fail(folder):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        report.publish(path, fail)
    assert open(os.path.join(path, "metrics.json")).read() == "2" and sorted(os.listdir(tmp_path)) == ["report"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a tfrf evaluate report"):
        report.publish(str(other), populate("3"))
    assert (other / "notes.txt").read_text() == "mine"


def test_helpers_against_hand_computed_answers():
    keypoints = np.array([[[10.0, 4.0]] + [[-1.0, -1.0]] * 16 + [[0.0, -1.0]]])
    scaled = data_lib.scale_keypoints(keypoints, (128, 64), (64, 32))
    assert scaled[0, 0].tolist() == [4.75, 1.75]  # (10.5 / 2 - 0.5, 4.5 / 2 - 0.5)
    assert (scaled[0, 1:] == -1).all()
    np.testing.assert_array_equal(render.truncate_to_uint8(np.array([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5])),
                                  [0, 0, 127, 254, 255, 255])
    picks = render.best_and_worst(np.array([0.5, 0.1, 0.9, 0.1, 0.7]), 2)
    assert picks["best"].tolist() == [1, 3] and picks["worst"].tolist() == [2, 4]
    chosen, notes = metric_networks.select_metrics(None, lpips_available=True, inception_available=False,
                                                   has_keypoints=True)
    assert chosen == ["l1", "psnr", "ssim", "lpips", "mask_lpips"] and not notes
    chosen, notes = metric_networks.select_metrics(["mlpips", "l1", "lpips"], lpips_available=True,
                                                   inception_available=False, has_keypoints=False)
    assert chosen == ["l1", "lpips"] and "mlpips does not apply" in notes[0]
    with pytest.raises(ValueError, match="--inception-weights"):
        metric_networks.select_metrics(["fid"], lpips_available=True, inception_available=False, has_keypoints=True)

    written = {
        "data": {"dataset": "market1501", "split": "test"}, "ks": [1, 2], "metrics": ["l1", "lpips"],
        "fid_mode": "standard", "image_format": "PNG", "notes": [],
        "tuples": {"1": {"count": 3, "origin": "stored"}, "2": {"count": 0, "origin": "stored"}},
        "runs": {"a": {"results": {"1": {"l1": 0.123456, "lpips": 0.2, "examples": 3}}, "skipped": {"2": "no tuples"}},
                 "gfla": {"results": {"1": {"l1": 0.5, "lpips": 0.25, "examples": 3}},
                          "skipped": {"2": "GFLA takes one source (K = 1 only)"}}},
    }
    markdown = tables.markdown(written)
    assert "| K | run | LPIPS ↓ | L1 ↓ | examples |" in markdown
    assert "| 1 | `a` | 0.2000 | 0.1235 | 3 |" in markdown
    assert "| 2 | `gfla` | — | — | — |" in markdown and "`gfla` at K = 2: GFLA takes one source" in markdown
    assert tables.csv_text(written).splitlines() == [
        "run,k,examples,lpips,l1", "a,1,3,0.2,0.123456", "gfla,1,3,0.25,0.5", "a,2,,,", "gfla,2,,,"]
