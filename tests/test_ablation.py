"""`python -m tfrf.benchmarks.ablation`: the variants' configs, the table, the budget flags, and a
smoke run at the tiniest budget (the ablation baseline, whose target-pose branch feeds nothing)."""
import filecmp
import json
import os

import numpy as np
import pytest

from tfrf.benchmarks import ablation, ablation_warm_up


def test_each_variant_switches_off_what_table_4_says():
    settings = ablation.settings_of(ablation.parse_arguments(["--quick", "--full-steps", "3"]))
    expected = {
        "full": (True, True, True),
        "no_residual_flow": (False, True, True),
        "no_attention": (True, False, True),
        "no_occlusion": (True, True, False),
        "baseline": (False, False, False),
    }
    for variant, (residual_flow, attention, occlusion) in expected.items():
        config = ablation.ablation_config(settings, variant)
        model = config.model
        assert (model.use_residual_flow, model.use_attention, model.use_occlusion) == (residual_flow, attention,
                                                                                      occlusion), variant
        assert model.architecture == "rf" and config.num_sources == 2 and config.eval_ks == (1, 2, 4)
        assert (config.flow_steps, config.full_steps, config.batch_size) == (2, 3, 2)
        assert (model.image_height, model.width_multiplier) == (32, 0.125)
        assert (config.train_objects, config.test_objects) == (2, 1)
    gfla = ablation.ablation_config(settings, "gfla")
    assert gfla.model.architecture == "gfla" and gfla.num_sources == 1 and gfla.eval_ks == (1,)


def test_budget_flags():
    default = ablation.settings_of(ablation.parse_arguments([]))
    assert default["full_steps"] == ablation.DEFAULTS["full_steps"] and default["image_size"] == 64
    chosen = ablation.settings_of(ablation.parse_arguments(["--full-steps", "50", "--width", "0.5", "--seed", "3"]))
    assert (chosen["full_steps"], chosen["width"], chosen["seed"], chosen["flow_steps"]) == (50, 0.5, 3, 150)
    for flags, message in ((["--image-size", "48"], "multiple of 32"), (["--full-steps", "0"], "positive")):
        with pytest.raises(ValueError, match=message):
            ablation.settings_of(ablation.parse_arguments(flags))
    assert ablation.main(["--quick", "--lpips-weights", "/nonexistent/lpips"]) == 2
    # --saturation: stage 2's hinge for the variants, not GFLA's recipe nor the shared warm-up.
    settings = ablation.settings_of(ablation.parse_arguments(["--quick", "--saturation", "0.5"]))
    assert ablation.ablation_config(settings, "full").loss_weights.saturation == 0.5
    assert ablation.ablation_config(settings, "no_residual_flow").loss_weights.saturation == 0.5
    assert ablation.ablation_config(settings, "full").loss_weights.l1 == ablation.ablation_config(
        ablation.settings_of(ablation.parse_arguments(["--quick"])), "full").loss_weights.l1
    assert ablation.ablation_config(settings, "gfla").loss_weights.saturation == 0.0
    with pytest.raises(ValueError, match="--saturation must be a finite number >= 0"):
        ablation.settings_of(ablation.parse_arguments(["--saturation", "-1"]))


def test_table_rows_and_times():
    rows = [
        {"label": "full model", "train_seconds": 90.0, "eval_seconds": 12.4,
         "results": {"1": {"l1": 0.15, "psnr": 14.25, "ssim": 0.5, "lpips": 0.1},
                     "2": {"l1": 0.1234, "psnr": 15.0, "ssim": 0.55556, "lpips": 0.09}}},
        {"label": "GFLA (K = 1)", "train_seconds": 30.0, "eval_seconds": 3.0,
         "results": {"1": {"l1": 0.2, "psnr": 13.0, "ssim": 0.4, "lpips": 0.2}}},
        {"label": "copy", "train_seconds": 0.0, "eval_seconds": 0.4,
         "results": {"1": {"l1": 0.3, "psnr": 12.0, "ssim": 0.3}, "2": {"l1": 0.25, "psnr": 12.5, "ssim": 0.35}}},
    ]
    assert ablation.format_table(rows, (1, 2), with_lpips=True).splitlines() == [
        "| variant | K=1 L1 / PSNR / SSIM / LPIPS | K=2 L1 / PSNR / SSIM / LPIPS | training | evaluation |",
        "|---|---|---|---|---|",
        "| full model | 0.1500 / 14.25 / 0.5000 / 0.1000 | 0.1234 / 15.00 / 0.5556 / 0.0900 | 1.5 min | 12 s |",
        "| GFLA (K = 1) | 0.2000 / 13.00 / 0.4000 / 0.2000 | — | 0.5 min | 3 s |",
        "| copy | 0.3000 / 12.00 / 0.3000 / — | 0.2500 / 12.50 / 0.3500 / — | — | 0 s |",
    ]


@pytest.mark.slow
def test_smoke_run_at_the_tiniest_budget(tmp_path, capsys):
    from tfrf import runs
    from tfrf.evaluation import data as data_lib
    from tfrf.evaluation.scores import evaluate_generator, evaluate_nearest_view

    top = str(tmp_path / "ablation")
    # One seed through --seeds: the per-seed ablation, then the summary over seeds.
    assert ablation.main(["--quick", "--variants", "full", "baseline", "--no-gfla", "--seeds", "0", "--out", top,
                          "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| baseline (all off) |" in printed and "Per-tuple paired L1 difference" in printed
    out = os.path.join(top, "seed0")
    with open(os.path.join(out, "ablation.json")) as stream:
        summary = json.load(stream)
    full_row, row, copy = summary["rows"]
    with open(os.path.join(top, "ablation_seeds.json")) as stream:
        over_seeds = json.load(stream)
    for k in (1, 2, 4):  # one seed: the means are the seed's figures, the differences its tuples'
        full_scores, scores = (np.loadtxt(os.path.join(out, "report", "generated", name, f"k{k}", "scores.csv"),
                                          delimiter=",", skiprows=1) for name in ("full", "baseline"))
        difference = over_seeds["differences"]["baseline"][str(k)]
        assert difference["tuples"] == 4
        assert difference["mean"] == pytest.approx(float(np.mean(full_scores[:, 2] - scores[:, 2])))
        means = {entry["variant"]: entry["results"][str(k)]["l1"]["mean"] for entry in over_seeds["rows"]}
        assert means["baseline"] == pytest.approx(row["results"][str(k)]["l1"])
        assert means["full"] == pytest.approx(full_row["results"][str(k)]["l1"])
    assert os.path.isfile(os.path.join(top, "ablation_seeds.md"))
    assert row["variant"] == "baseline" and set(row["results"]) == {"1", "2", "4"}
    assert copy["variant"] == "nearest_view" and set(copy["results"]) == {"1", "2", "4"}
    assert summary["timings"]["flow_warmup"]["flow_steps"] == 2 and summary["timings"]["baseline"]["full_steps"] == 2
    run = os.path.join(out, "baseline")
    # The variant is a complete two-stage run: the shared stage 1, then its own stage 2.
    assert filecmp.cmp(os.path.join(out, "flow_warmup", "checkpoints", "flow", "ckpt-2.index"),
                       os.path.join(run, "checkpoints", "flow", "ckpt-2.index"), shallow=False)
    assert runs.latest_run_weights(run).endswith(os.path.join("checkpoints", "full", "ckpt-2"))
    config = runs.read_model_config(run)
    assert not (config.use_residual_flow or config.use_attention or config.use_occlusion)
    # The table's figures are the run's on the fixed test tuples (up to the uint8 rounding of the
    # written images): compare with the float outputs scored by tfrf.evaluation.scores.
    generator = runs.load_generator(config, runs.latest_run_weights(run))
    data = data_lib.open_data("synthetic", seed=0, test_objects=1, image_size=32, cache_dir=str(tmp_path / "cache"),
                              verbose=False)
    for k in (1, 2, 4):
        tuples = np.load(os.path.join(out, "report", "tuples", f"k{k}.npy"))
        assert len(tuples) == 4
        floats = evaluate_generator(generator, data.table, tuples)
        assert row["results"][str(k)]["l1"] == pytest.approx(floats["l1"], abs=2.0 / 255)
        assert row["results"][str(k)]["ssim"] == pytest.approx(floats["ssim"], abs=0.02)
        assert copy["results"][str(k)] == evaluate_nearest_view(data.table, tuples)
    assert os.path.isfile(os.path.join(out, "ablation.md"))


def test_mean_and_error_and_paired_differences(tmp_path):
    from tfrf.benchmarks import ablation_seeds as stats

    assert stats.mean_and_error([1.0, 2.0, 3.0]) == {"mean": 2.0, "se": pytest.approx(1 / np.sqrt(3)), "n": 3}
    assert stats.mean_and_error([0.5]) == {"mean": 0.5, "se": None, "n": 1}

    def scores(name, rows):
        path = tmp_path / f"{name}.csv"
        path.write_text("row,target,l1\n" + "".join(f"{row},{target},{l1}\n" for row, target, l1 in rows))
        return str(path)

    full = scores("full", [(0, 10, 0.10), (1, 11, 0.20), (2, 12, 0.30)])
    other = scores("other", [(0, 10, 0.15), (1, 11, 0.20), (2, 12, 0.40)])
    np.testing.assert_allclose(stats.paired_differences(full, other), [-0.05, 0.0, -0.10])
    with pytest.raises(ValueError, match="different targets on rows \\[1\\]"):
        stats.paired_differences(full, scores("moved", [(0, 10, 0.1), (1, 99, 0.2), (2, 12, 0.3)]))
    # Seeds with mean differences -0.02, -0.04, +0.00 (two favour the full model).
    summary = stats.difference_summary([np.array([-0.01, -0.03]), np.array([-0.04, -0.04]), np.array([0.01, -0.01])])
    assert summary["mean"] == pytest.approx(-0.02) and summary["tuples"] == 6
    assert summary["seed_means"] == pytest.approx([-0.02, -0.04, 0.0]) and summary["seeds_favouring_full"] == 2
    pooled_half = 1.96 * np.std([-0.01, -0.03, -0.04, -0.04, 0.01, -0.01], ddof=1) / np.sqrt(6)
    assert summary["pooled_interval"] == pytest.approx([-0.02 - pooled_half, -0.02 + pooled_half])
    seed_half = 4.303 * 0.02 / np.sqrt(3)  # t(0.975, 2 df) x sd of (-0.02, -0.04, 0) over sqrt(3)
    assert summary["seed_interval"] == pytest.approx([-0.02 - seed_half, -0.02 + seed_half])


def test_the_summary_over_seeds_keeps_gfla_at_k_1(tmp_path):
    """GFLA's rows (K = 1 only) are summarised like the others; its paired differences at K = 1 too."""
    from tfrf.benchmarks import ablation_seeds as stats
    from tfrf.evaluation.report import folder_name

    l1 = {"full": {1: [0.10, 0.20], 2: [0.10, 0.10]}, "gfla": {1: [0.15, 0.30]}}
    for seed, shift in ((0, 0.0), (1, 0.02)):
        rows = []
        for variant, by_k in l1.items():
            results = {str(k): {"l1": float(np.mean(v)) + shift, "psnr": 14.0, "ssim": 0.5} for k, v in by_k.items()}
            rows.append({"variant": variant, "label": variant, "results": results})
            for k, values in by_k.items():
                folder = tmp_path / f"seed{seed}" / "report" / "generated" / folder_name(variant) / f"k{k}"
                folder.mkdir(parents=True)
                (folder / "scores.csv").write_text("row,target,l1\n" + "".join(
                    f"{row},{10 + row},{value + shift}\n" for row, value in enumerate(values)))
        rows.append({"variant": "nearest_view", "label": "copy", "results": {"1": {"l1": 0.3, "psnr": 10.0, "ssim": 0.3}}})
        (tmp_path / f"seed{seed}" / "ablation.json").write_text(json.dumps({"rows": rows}))
    summary = stats.summarize(str(tmp_path), [0, 1], ["full", "gfla"], [1, 2])
    gfla = next(row for row in summary["rows"] if row["variant"] == "gfla")
    assert set(gfla["results"]) == {"1"} and gfla["results"]["1"]["l1"]["mean"] == pytest.approx(0.225 + 0.01)
    assert set(summary["differences"]["gfla"]) == {"1"}
    difference = summary["differences"]["gfla"]["1"]
    assert difference["mean"] == pytest.approx(np.mean([-0.05, -0.10])) and difference["tuples"] == 4
    table = stats.format_tables(summary)
    assert "| gfla | 0.2350" in table and "| gfla | -0.0750" in table

def test_a_labels_warm_up_and_a_frozen_flow(tmp_path):
    """`--warm-up labels --freeze-flow`: stage 1 is the flow extractor trained on the labels' flow,
    saved as the checkpoint stage 2 starts from; stage 2 keeps that flow (the flow variables of the
    trained full model are the warm-up's) and trains the rest; a folder of one warm-up refuses the
    other."""
    import tensorflow as tf

    from tfrf import runs

    top = str(tmp_path / "ablation")
    flags = ["--quick", "--variants", "full", "--no-gfla", "--out", top, "--cache-dir", str(tmp_path / "cache"),
             "--quiet", "--misaligned-sources"]
    settings = ablation.settings_of(ablation.parse_arguments(flags + ["--warm-up", "labels", "--freeze-flow"]))
    assert settings["warm_up"] == "labels" and settings["freeze_flow"] is True
    assert ablation.ablation_config(settings, "full").full_trains_flow is False
    assert ablation.ablation_config(settings, "gfla").full_trains_flow is True
    assert ablation.main(flags + ["--warm-up", "labels", "--freeze-flow"]) == 0
    warm = os.path.join(top, "flow_warmup")
    with open(os.path.join(warm, ablation_warm_up.WARM_UP_FILE)) as stream:
        assert json.load(stream) == {"warm_up": "labels", "steps": 2}
    with open(os.path.join(top, "ablation.json")) as stream:
        summary = json.load(stream)
    assert summary["timings"]["flow_warmup"]["flow_steps"] == 2 and summary["settings"]["freeze_flow"] is True
    run = os.path.join(top, "full")
    config = runs.read_model_config(run)
    trained = runs.load_generator(config, runs.latest_run_weights(run))
    warmed = runs.load_generator(config, None)
    tf.train.Checkpoint(generator=tf.train.Checkpoint(flow_extractor=warmed.flow_extractor)).restore(
        tf.train.latest_checkpoint(os.path.join(warm, "checkpoints", "flow"))).expect_partial()
    kept = [(a.numpy(), b.numpy()) for a, b in zip(trained.flow_extractor.flow_variables(),
                                                   warmed.flow_extractor.flow_variables())]
    assert kept and all(np.array_equal(a, b) for a, b in kept)
    fresh = runs.load_generator(config, None)  # the seeded initial weights stage 1 started from
    assert not all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(warmed.flow_extractor.flow_variables(),
                                                                         fresh.flow_extractor.flow_variables()))
    # The other warm-up in the same folder, or a damaged record of it: one line, exit 2.
    assert ablation.main(flags) == 2
    with open(os.path.join(warm, ablation_warm_up.WARM_UP_FILE), "w") as stream:
        stream.write("{not json")
    with pytest.raises(ValueError, match="warm_up.json is damaged"):
        ablation_warm_up.check_warm_up(warm, "labels")
