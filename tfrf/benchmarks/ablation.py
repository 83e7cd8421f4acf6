"""The paper's table-4 ablation on the built-in chairs: `python -m tfrf.benchmarks.ablation`.

Trains, with one seed and one budget, the full model and its ablations (`ModelConfig.ablation`:
without residual flow, without attention, without occlusion, and the baseline with all three
off: warped features averaged), plus GFLA (K = 1 only, its own recipe), then
scores every run at K = 1, 2, 4 on the held-out objects' fixed test tuples with
`tfrf.evaluation` (L1 / PSNR / SSIM; LPIPS with `--lpips-weights`) and prints the table with
the wall time of each row; the last row, for reference, copies the source view nearest the target
in azimuth (no training).

    python -m tfrf.benchmarks.ablation --out runs/ablation
    python -m tfrf.benchmarks.ablation --full-steps 300 --out runs/ablation_short
    python -m tfrf.benchmarks.ablation --quick --out /tmp/ablation     # smoke test, ~1 min
    python -m tfrf.benchmarks.ablation --misaligned --out runs/ablation_misaligned
    python -m tfrf.benchmarks.ablation --seeds 0 1 2 --no-gfla --out runs/ablation_seeds

`--seeds` runs the whole ablation once per seed (data, weights and tuples of that seed) into
`OUT/seed<N>/`, then writes `OUT/ablation_seeds.{md,json}` (`tfrf.benchmarks.ablation_seeds`): mean
± standard error over seeds per variant and K, the mechanism metrics, and the per-tuple paired L1
differences full − variant with their intervals. `--flow-loss-on refined` holds the residual flow
to the flow losses in stage 2 (`TrainConfig.flow_loss_on`). `--full-learning-rate` sets the
generator's rate in stage 2 (stage 1 keeps the demo's). `--full-generator-epsilon 1e-3` sets the
epsilon of the generator's Adam in stage 2 (`TrainConfig.full_generator_epsilon`; default Keras's 1e-7),
which kept seed 1's full model from saturating its tanh to a white image (but not seed 0's
"w/o residual flow": README, "Ablation").

Training is the `demo` preset's (quarter width, batch 8, K = 2, lr 5e-4; the photometric flow loss on
pixels instead of the correctness loss on VGG features; perceptual and style off; the saturation
hinge, `--saturation`), with the GAN term at 0.05 and a constant learning rate (`RECIPE_CHANGES`:
the demo's earlier schedule, which the README's tables used); GFLA trains with its own recipe (`gfla_synthetic`: GFLA's loss weights,
Adam betas and discriminator) at the same budget, one source. Stage 1 (flow warm-up on L_flow) trains only the flow confidence
extractor, which the ablation switches do not touch, so it runs once (`OUT/flow_warmup`) and
every variant's run starts stage 2 from that checkpoint (copied into `OUT/VARIANT/checkpoints/flow`,
so each variant folder is a complete two-stage run `tfrf evaluate --run` takes). GFLA has its own
flow network and trains both stages in `OUT/gfla`. A rerun with the same `--out` resumes.
Outputs: `OUT/report/` (the `tfrf evaluate` report, with the mechanism metrics against the
renderer's ground truth), `OUT/ablation.md`, `OUT/ablation.json`.

`--misaligned` trains and scores on the chairs' variant of jittered cameras (`tfrf.data.synthetic`,
`misaligned=True`: every image from its own camera, off its bin by up to +-8 degrees, +-15 %
distance, 6 % shift and +-5 degrees roll, pose labels nominal); the runs record it in `data.json`
(`dataset: misaligned`), so `tfrf evaluate --run` scores them on the same variant.
`--misaligned-sources` jitters the sources only: every target is rendered at the camera its label
names (`dataset: misaligned_sources`), as when the target pose is given and the sources come from
uncalibrated cameras; with `--misaligned` a target's own jitter is in no input, so no model can
predict it (README, "Ablation").

`--warm-up labels` trains the shared stage 1 on the answer instead of L_flow: the flow extractor
learns, for `--flow-steps` steps, the renderer's flow between the cameras the pose labels name
(`tfrf.benchmarks.flow_ceiling.TruthTrainer`; on misaligned data the nominal cameras', so the
sources' jitter is left for the residual flow to correct). `--freeze-flow` keeps the warm-up's
flow through stage 2 (`TrainConfig.full_trains_flow=False`). Together they ask what the image
losses and the residual flow do with a flow that is right where the labels are (README,
"Ablation"). A probe: no preset does either.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence

from tfrf.benchmarks import ablation_warm_up

VARIANTS = ("full", "no_residual_flow", "no_attention", "no_occlusion", "baseline")
ALL_VARIANTS = VARIANTS + ("gfla",)
LABELS = {"full": "full model", "no_residual_flow": "w/o residual flow", "no_attention": "w/o attention",
          "no_occlusion": "w/o occlusion", "baseline": "baseline (all off)", "gfla": "GFLA (K = 1)",
          "nearest_view": "copy the nearest source view"}
EVAL_KS = (1, 2, 4)
# 5 variants x 700 stage-2 steps (the demo's) of batch 8 at 64x64, width x0.25 (wall times: README, "Ablation").
DEFAULTS = dict(flow_steps=150, full_steps=700, train_objects=200, test_objects=50, width=0.25, image_size=64,
                batch_size=8, eval_examples=200)
QUICK = dict(flow_steps=2, full_steps=2, train_objects=2, test_objects=1, width=0.125, image_size=32, batch_size=2,
             eval_examples=4)


# The ablation's recipe: the `demo` preset's, with its earlier stage-2 losses and schedule (the
# GAN term at 0.05, a constant learning rate): table 4 ablates the generator, not the losses, and
# the README's tables were made so.
RECIPE_CHANGES = dict(learning_rate_decay="constant")
RECIPE_LOSS_CHANGES = dict(adversarial=0.05)


def ablation_config(settings: Dict, variant: str):
    """The TrainConfig of `variant` at the budget of `settings`: the `demo` preset with the model of
    the ablation, or for GFLA its own recipe on the chairs (`gfla_synthetic`: GFLA's losses,
    optimiser and discriminator) when that preset exists."""
    from tfrf.config import ModelConfig
    from tfrf.training.config import TRAIN_PRESETS, TrainConfig

    gfla_recipe = variant == "gfla" and "gfla_synthetic" in TRAIN_PRESETS
    base = (TrainConfig.preset("gfla_synthetic") if gfla_recipe
            else TrainConfig.preset("demo", **RECIPE_CHANGES, loss_weights=RECIPE_LOSS_CHANGES))
    model = base.model.replace(width_multiplier=settings["width"], image_height=settings["image_size"],
                               image_width=settings["image_size"])
    if settings.get("misaligned"):
        model = model.replace(name=ModelConfig.preset("synthetic_misaligned").name)
    if variant == "gfla":
        model = model.replace(architecture="gfla")
    else:
        model = ModelConfig.ablation(model, variant)
    interval = max(1, min(50, settings["full_steps"]))
    # Without a residual flow, base and refined are one flow: "base" for them (so their runs are
    # the same whichever --flow-loss-on, and one folder serves both).
    refines = variant != "gfla" and model.use_residual_flow
    flow_loss_on = settings.get("flow_loss_on", base.flow_loss_on) if refines else "base"
    epsilon = settings.get("full_generator_epsilon", base.full_generator_epsilon)
    # The variants' runs train stage 2 only (stage 1 is the shared warm-up's), so their
    # learning_rate is stage 2's generator rate; GFLA keeps its recipe's.
    rate = base.learning_rate if variant == "gfla" else settings.get("full_learning_rate", base.learning_rate)
    # LossWeights.saturation: stage 2's hinge on the output's pre-tanh values (not GFLA's recipe).
    saturation = base.loss_weights.saturation if variant == "gfla" else settings.get("saturation",
                                                                                      base.loss_weights.saturation)
    return base.replace(model=model, flow_loss_on=flow_loss_on, full_generator_epsilon=epsilon, learning_rate=rate,
                        full_trains_flow=not (settings.get("freeze_flow") and variant != "gfla"),
                        loss_weights={"saturation": saturation},
                        flow_steps=settings["flow_steps"],
                        full_steps=settings["full_steps"],
                        batch_size=settings["batch_size"], train_objects=settings["train_objects"],
                        test_objects=settings["test_objects"], eval_examples=settings["eval_examples"],
                        eval_ks=(1,) if variant == "gfla" else EVAL_KS, seed=settings["seed"],
                        num_sources=1 if variant == "gfla" else 2,
                        steps_per_epoch=interval, checkpoint_every=interval, summary_every=max(1, interval // 5))


def dataset_of(settings: Dict) -> Optional[str]:
    """The `--dataset` of the built-in chairs the ablation runs on: None (aligned), "misaligned"
    or "misaligned_sources"."""
    if settings.get("nominal_targets"):
        return "misaligned_sources"
    return "misaligned" if settings.get("misaligned") else None


def training_tables(settings: Dict, verbose: int):
    """The `tfrf.training.run.RunData` of the ablation: the built-in chairs' train and held-out
    objects, aligned or in the variant of `dataset_of(settings)`, recorded as the dataset in each
    run's data.json."""
    from tfrf.training.run import SYNTHETIC, load_data

    return load_data(SYNTHETIC, ablation_config(settings, "full"), dataset_of(settings),
                     cache_dir=settings["cache_dir"], verbose=bool(verbose))


def _copy_flow_stage(warmup_dir: str, run_dir: str) -> None:
    """The shared stage-1 checkpoints and weights into `run_dir` (once)."""
    target = os.path.join(run_dir, "checkpoints", "flow")
    if not os.path.isdir(target):
        shutil.copytree(os.path.join(warmup_dir, "checkpoints", "flow"), target)
    weights = os.path.join(warmup_dir, "generator_flow.weights.h5")
    if os.path.isfile(weights) and not os.path.isfile(os.path.join(run_dir, "generator_flow.weights.h5")):
        shutil.copy2(weights, run_dir)


def train_variant(variant: str, settings: Dict, data, out_dir: str, verbose: int) -> Dict:
    """Train one variant (stage 2 from the shared warm-up; GFLA both stages); returns timings."""
    from tfrf.training.run import TrainingRun

    config = ablation_config(settings, variant)
    run_dir = os.path.join(out_dir, variant)
    if variant != "gfla":
        os.makedirs(run_dir, exist_ok=True)
        _copy_flow_stage(os.path.join(out_dir, "flow_warmup"), run_dir)
    stages = ("flow", "full") if variant == "gfla" else ("full",)
    results = TrainingRun(config, data, run_dir, verbose=verbose).train(stages)
    return ablation_warm_up.timings(results)


def warm_up(settings: Dict, data, out_dir: str, verbose: int) -> Dict:
    """Stage 1 of the full model, shared by every variant, in `OUT/flow_warmup`: the recipe's, or
    with `--warm-up labels` the labels' flow (`tfrf.benchmarks.ablation_warm_up`)."""
    return ablation_warm_up.warm_up(settings.get("warm_up", "recipe"), ablation_config(settings, "full"), data,
                                    os.path.join(out_dir, "flow_warmup"), verbose)


def format_table(rows: Sequence[Dict], ks: Sequence[int], with_lpips: bool) -> str:
    """Markdown: one row per variant, per K `L1 / PSNR / SSIM [/ LPIPS]`, then the wall times of
    its training (stage 2; both stages for GFLA) and of its evaluation."""
    unit = "L1 / PSNR / SSIM" + (" / LPIPS" if with_lpips else "")
    header = ["variant"] + [f"K={k} {unit}" for k in ks] + ["training", "evaluation"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["label"]]
        for k in ks:
            result = row["results"].get(str(k))
            if result is None:
                cells.append("—")
                continue
            figures = f"{result['l1']:.4f} / {result['psnr']:.2f} / {result['ssim']:.4f}"
            if with_lpips:
                figures += f" / {result['lpips']:.4f}" if "lpips" in result else " / —"
            cells.append(figures)
        cells += [f"{row['train_seconds'] / 60:.1f} min" if row["train_seconds"] else "—",
                  f"{row['eval_seconds']:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_ablation(settings: Dict, out_dir: str, variants: Sequence[str] = ALL_VARIANTS,
                 lpips_weights: Optional[str] = None, verbose: int = 2, say=print) -> Dict:
    """Train every variant, evaluate them
    together, write `OUT/ablation.{md,json}`; returns the summary."""
    from tfrf.evaluation import data as data_lib
    from tfrf.evaluation import metric_networks, report
    from tfrf.evaluation.scores import evaluate_nearest_view
    from tfrf.io import atomic_write_text
    began = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    size, seed, cache = settings["image_size"], settings["seed"], settings["cache_dir"]
    training_data = training_tables(settings, verbose)
    notes: List[str] = []
    variants = list(variants)
    if not variants:
        raise ValueError("no variant left to train")
    timings = {}
    if any(variant != "gfla" for variant in variants):
        say(f"ablation: stage 1 (shared), {settings['flow_steps']} steps")
        timings["flow_warmup"] = warm_up(settings, training_data, out_dir, verbose)
    for variant in variants:
        say(f"ablation: {variant}, stage 2 {settings['full_steps']} steps")
        timings[variant] = train_variant(variant, settings, training_data, out_dir, verbose)

    metrics = ["l1", "psnr", "ssim"] + (["lpips"] if lpips_weights else [])
    networks = metric_networks.build_metric_networks(metrics, lpips_weights=lpips_weights)
    models = report.models_from_sources([os.path.join(out_dir, variant) for variant in variants])
    data = data_lib.open_data("synthetic", dataset_of(settings), seed=seed,
                              test_objects=settings["test_objects"], image_size=size, cache_dir=cache,
                              verbose=bool(verbose))
    evaluation = report.Settings(ks=EVAL_KS, metrics=metrics, max_examples=settings["eval_examples"],
                                 progress=bool(verbose))
    written = report.write_report(os.path.join(out_dir, "report"), models, data, evaluation, networks, notes=notes,
                                  say=say)
    rows = []
    for variant in variants:
        results = written["runs"][variant]["results"]
        stage_seconds = timings[variant].get("full", 0.0) + timings[variant].get("flow", 0.0)
        rows.append({"variant": variant, "label": LABELS[variant], "results": results, "train_seconds": stage_seconds,
                     "eval_seconds": sum(result["seconds"] for result in results.values())})
    began_copy = time.perf_counter()
    nearest = {str(k): evaluate_nearest_view(data.table, data.test_tuples(k, settings["eval_examples"])[0])
               for k in EVAL_KS}
    rows.append({"variant": "nearest_view", "label": LABELS["nearest_view"], "results": nearest, "train_seconds": 0.0,
                 "eval_seconds": time.perf_counter() - began_copy})
    summary = {"settings": settings, "timings": timings, "rows": rows, "notes": notes,
               "total_seconds": time.perf_counter() - began}
    table = format_table(rows, EVAL_KS, bool(lpips_weights))
    text = [table, ""]
    warmup = timings.get("flow_warmup")
    if warmup is not None and warmup["flow_steps"]:
        text.append(f"Stage 1 (shared by the residual-flow variants): {warmup['flow_steps']} steps in "
                    f"{warmup['flow'] / 60:.1f} min.")
    elif warmup is not None:
        text.append(f"Stage 1 (shared by the residual-flow variants): already trained in {out_dir}/flow_warmup.")
    text += [f"Total wall time {summary['total_seconds'] / 60:.1f} min (rows trained before a resume count 0).",
             f"Budget: {json.dumps({k: v for k, v in settings.items() if k != 'cache_dir'})}"]
    text += [f"Note: {note}" for note in notes]
    atomic_write_text(os.path.join(out_dir, "ablation.md"), "\n".join(text) + "\n")
    atomic_write_text(os.path.join(out_dir, "ablation.json"), json.dumps(summary, indent=2) + "\n")
    say("\n".join(text))
    return summary


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.ablation", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--out", default=os.path.join("runs", "ablation"), help="output folder (default runs/ablation)")
    parser.add_argument("--quick", action="store_true", help="smoke-test budget: " + json.dumps(QUICK))
    for name, value in DEFAULTS.items():
        kind = float if isinstance(value, float) else int
        parser.add_argument("--" + name.replace("_", "-"), type=kind,
                            help=f"default {value} ({QUICK[name]} with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, weights and tuples")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="N",
                        help="one ablation per seed into OUT/seed<N>, then mean ± standard error and paired "
                             "differences over them (OUT/ablation_seeds.md)")
    parser.add_argument("--flow-loss-on", choices=("base", "refined"),
                        help="which flow the flow losses score in stage 2 (default: the demo preset's)")
    parser.add_argument("--full-generator-epsilon", type=float, metavar="EPS",
                        help="epsilon of the generator's Adam in stage 2 (default Keras's 1e-7; 1e-3 kept seed 1's "
                             "full model from collapsing to a white image, not every run: README, Ablation)")
    parser.add_argument("--full-learning-rate", type=float, metavar="LR",
                        help="the generator's Adam learning rate in stage 2 (default the demo preset's, 5e-4; GFLA "
                             "keeps its recipe's); stage 1 keeps the demo's")
    parser.add_argument("--saturation", type=float, metavar="W",
                        help="weight of stage 2's hinge on the output's pre-tanh values (LossWeights.saturation; "
                             "default the demo preset's, 1; 0 for the runs before it); GFLA keeps its recipe's")
    parser.add_argument("--variants", nargs="+", choices=ALL_VARIANTS, default=list(ALL_VARIANTS),
                        help="which models (default: all)")
    parser.add_argument("--no-gfla", action="store_true", help="leave GFLA out")
    parser.add_argument("--lpips-weights", metavar="DIR", help="add LPIPS: alexnet-owt-7be5be79.pth and alex.pth")
    parser.add_argument("--cache-dir", help="cache of the synthetic data")
    parser.add_argument("--misaligned", action="store_true",
                        help="the chairs with jittered cameras (pose labels nominal), as uncalibrated cameras give")
    parser.add_argument("--misaligned-sources", action="store_true",
                        help="jittered sources, every target at the camera its label names (the paper's setting: "
                             "the target pose is given)")
    parser.add_argument("--warm-up", choices=ablation_warm_up.WARM_UPS, default="recipe",
                        help="stage 1 on L_flow (recipe, default) or on the flow the pose labels imply (labels: "
                             "the renderer's, a probe)")
    parser.add_argument("--freeze-flow", action="store_true",
                        help="keep the warm-up's flow through stage 2 (TrainConfig.full_trains_flow=False)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Dict:
    budget = dict(QUICK if args.quick else DEFAULTS)
    for name in DEFAULTS:
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
            budget[name] = value
    if budget["image_size"] % 32:
        raise ValueError(f"--image-size must be a multiple of 32, got {budget['image_size']}")
    if args.misaligned and args.misaligned_sources:
        raise ValueError("give --misaligned or --misaligned-sources, not both")
    budget.update(seed=args.seed, cache_dir=args.cache_dir, misaligned=bool(args.misaligned or args.misaligned_sources),
                  nominal_targets=bool(args.misaligned_sources))
    if args.flow_loss_on:
        budget["flow_loss_on"] = args.flow_loss_on
    if args.warm_up != "recipe":
        budget["warm_up"] = args.warm_up
    if args.freeze_flow:
        budget["freeze_flow"] = True
    if args.full_generator_epsilon is not None:
        if not args.full_generator_epsilon > 0:
            raise ValueError(f"--full-generator-epsilon must be positive, got {args.full_generator_epsilon}")
        budget["full_generator_epsilon"] = args.full_generator_epsilon
    if args.full_learning_rate is not None:
        if not (math.isfinite(args.full_learning_rate) and args.full_learning_rate > 0):
            raise ValueError(f"--full-learning-rate must be a finite number > 0, got {args.full_learning_rate}")
        budget["full_learning_rate"] = args.full_learning_rate
    if args.saturation is not None:
        if not (math.isfinite(args.saturation) and args.saturation >= 0):
            raise ValueError(f"--saturation must be a finite number >= 0, got {args.saturation}")
        budget["saturation"] = args.saturation
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds must be distinct, got {args.seeds}")
    return budget


def run_seeds(settings: Dict, out_dir: str, seeds: Sequence[int], variants: Sequence[str],
              lpips_weights: Optional[str] = None, verbose: int = 2, say=print) -> Dict:
    """`run_ablation` once per seed into `OUT/seed<N>`, then the summary over seeds."""
    from tfrf.benchmarks import ablation_seeds

    for seed in seeds:
        say(f"ablation: seed {seed}")
        run_ablation(dict(settings, seed=seed), os.path.join(out_dir, f"seed{seed}"), variants, lpips_weights,
                     verbose, say)
    summary = ablation_seeds.summarize(out_dir, seeds, variants, EVAL_KS)
    summary["settings"] = {key: value for key, value in settings.items() if key not in ("seed", "cache_dir")}
    say(ablation_seeds.write(out_dir, summary))
    return summary


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_arguments(argv)
    try:
        settings = settings_of(args)
        if args.lpips_weights:
            from tfrf.evaluation.metric_networks import lpips_weight_files

            lpips_weight_files(args.lpips_weights)
        variants = [variant for variant in args.variants if not (args.no_gfla and variant == "gfla")]
        if args.seeds:
            run_seeds(settings, args.out, args.seeds, variants, args.lpips_weights, verbose=0 if args.quiet else 2)
        else:
            run_ablation(settings, args.out, variants, args.lpips_weights, verbose=0 if args.quiet else 2)
    except (ValueError, OSError) as error:
        print(f"ablation: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
