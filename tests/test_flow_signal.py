"""`python -m tfrf.benchmarks.flow_signal`: the photometric loss and the EPE of a run's flows, of the
ground truth and of the zero flow, on a hand-built run whose flows are exactly zero."""
import json

import numpy as np
import pytest

from tests.helpers import tiny_train_config
from tfrf import losses, runs
from tfrf.benchmarks import flow_signal
from tfrf.data.pipeline import make_dataset
from tfrf.evaluation import data as data_lib
from tfrf.training.run_config import write_config


RESIDUAL = (0.5, -0.25)


def _zero_flow_run(tmp_path, scales=2):
    """A run folder (config, data record, weights) of a 32-px chairs model whose flow heads are zero."""
    run = tmp_path / "run"
    run.mkdir()
    config = tiny_train_config(size=32, photometric_scales=scales)
    generator = runs.load_generator(config.model, None)
    for layer in (generator.flow_extractor.heads[level].flow for level in ("h8", "h4")):
        layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    residual_convs = [layer for layer in generator.submodules if getattr(layer, "name", "") == "residual_flow"]
    assert len(residual_convs) == 2  # one RF block per level
    for layer in residual_convs:  # a constant residual flow: RESIDUAL at every pixel
        kernel, _ = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), np.array(RESIDUAL, np.float32)])
    generator.save_weights(str(run / "generator_flow.weights.h5"))
    write_config(config, str(run))
    data_lib.write_run_data(str(run), "synthetic", None, seed=1, test_objects=2, image_size=32,
                            cache_dir=str(tmp_path / "cache"))
    return str(run)


def test_a_zero_flow_run_removes_none_of_the_gap_and_the_truth_all_of_its_epe(tmp_path, capsys):
    run = _zero_flow_run(tmp_path)
    result = flow_signal.flow_signal(run, k=2, examples=6)
    assert result["examples"] == 6 and result["photometric_scales"] == 2
    for level, entry in result["levels"].items():
        assert entry["run"] == entry["zero"], level  # the run's flow is the zero flow
        assert entry["run"]["gain"] == 0.0 and entry["epe_gap_closed"] == 0.0
        assert entry["truth"]["epe"] == 0.0 and entry["truth"]["gain"] == pytest.approx(1.0)
        assert entry["zero"]["epe"] > 0.5
        if entry["photometric_gap_closed"] is not None:
            assert entry["photometric_gap_closed"] == 0.0
    # The refined flow is the constant residual: its EPE and gain against the truth by hand.
    data = data_lib.data_for_runs([run], image_size=32, verbose=False)
    tuples, _ = data.test_tuples(2, 6)
    truth = data.ground_truth(tuples, 32, levels=("h8", "h4"))
    for level in ("h8", "h4"):
        gt = truth[level]["flow"][truth[level]["visible"]]
        expected_epe = np.linalg.norm(gt - np.array(RESIDUAL), axis=-1).mean()
        expected_gain = (gt @ np.array(RESIDUAL)).sum() / (gt ** 2).sum()
        refined = result["levels"][level]["refined"]
        assert refined["epe"] == pytest.approx(expected_epe, rel=1e-5), level
        assert refined["gain"] == pytest.approx(expected_gain, rel=1e-5, abs=1e-9), level
    bins = result["h4_by_length"]
    assert sum(entry["share"] for entry in bins) == pytest.approx(1.0)
    assert all(entry["epe"] == pytest.approx(entry["epe_zero"]) and entry["gain"] == 0.0 for entry in bins)
    # The truth's photometric loss is the library's on the batch with the truth where visible (the
    # run's zero flow elsewhere); the tuples are the evaluation's fixed held-out ones.
    batch = next(iter(make_dataset(data.table, 2, batch_size=6, training=False, tuples=tuples, image_size=(32, 32))))
    flow = np.where(truth["h4"]["visible"][..., None], truth["h4"]["flow"], 0.0).astype(np.float32)
    expected = float(losses.photometric_loss(batch["source_images"], batch["target_image"], flow, scales=2))
    assert result["levels"]["h4"]["truth"]["photometric"] == pytest.approx(expected, rel=1e-6)
    # The command line prints both tables and writes the JSON.
    out = tmp_path / "signal.json"
    assert flow_signal.main(["--run", run, "--examples", "6", "--scales", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| h4 |" in printed and "ground-truth length at H/4" in printed
    written = json.loads(out.read_text())
    assert written["photometric_scales"] == 1
    assert written["levels"]["h4"]["zero"]["epe"] == pytest.approx(result["levels"]["h4"]["zero"]["epe"])


def test_the_share_of_a_gap(tmp_path):
    assert flow_signal._share(run=0.2, truth=0.1, zero=0.3) == pytest.approx(0.5)
    assert flow_signal._share(run=0.05, truth=0.1, zero=0.3) == pytest.approx(1.25)  # below the truth
    assert flow_signal._share(run=0.2, truth=0.3, zero=0.3) is None  # the truth is no better than zero
    with pytest.raises(SystemExit):
        flow_signal.main(["--run", str(tmp_path)])  # no config.json


def test_a_run_it_cannot_score_is_one_line_and_exit_2(tmp_path, capsys):
    """A GFLA run (no residual-flow generator), and a run without weights: one line on stderr."""
    gfla = tmp_path / "gfla"
    gfla.mkdir()
    plain = tiny_train_config(size=32)
    write_config(plain.replace(model=plain.model.replace(architecture="gfla"), num_sources=1, eval_ks=(1,)), str(gfla))
    assert flow_signal.main(["--run", str(gfla)]) == 2
    error = capsys.readouterr().err  # (TensorFlow may log lines of its own before it)
    assert error.strip().splitlines()[-1] == f"flow_signal: run {gfla} is a 'gfla' model; it needs 'rf'"
    assert "Traceback" not in error
    bare = tmp_path / "bare"
    bare.mkdir()
    write_config(tiny_train_config(size=32), str(bare))
    assert flow_signal.main(["--run", str(bare)]) == 2  # no data record
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"flow_signal: run {bare} has no data.json: it does not record the data it trained on")
    data_lib.write_run_data(str(bare), "synthetic", None, seed=1, test_objects=2, image_size=32,
                            cache_dir=str(tmp_path / "cache"))
    assert flow_signal.main(["--run", str(bare)]) == 2  # no weights
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"flow_signal: run {bare} has no weights yet"), error
    # An --out that cannot be written (its folder is a file): one line, nothing written.
    run = _zero_flow_run(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert flow_signal.main(["--run", run, "--examples", "2", "--out", str(blocker / "x.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("flow_signal: ")
    assert blocker.read_text() == ""

