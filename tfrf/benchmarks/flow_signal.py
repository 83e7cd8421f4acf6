"""Does the photometric loss point at the true flow? A trained run's flows against the
renderer's ground truth, on held-out tuples of the built-in chairs.

    python -m tfrf.benchmarks.flow_signal --run runs/demo [--k 2] [--examples 96] [--out FILE.json]

For each flow level (H/8, H/4) it prints the photometric loss (`tfrf.losses.photometric_loss`,
with the run's pyramid, or `--scales`) at four flows: the run's base flow, its refined flow (base +
residual, what the fusing blocks warp with), the ground truth on the pixels the source sees (the
run's base flow elsewhere, where the truth is undefined) and the zero flow; with
each flow's end-point error and least-squares gain (`tfrf.evaluation.mechanism`). The share of
the zero flow's photometric excess over the truth that the run's flow removes, against the share
of the zero flow's EPE it removes, says whether the loss or the learning is the limit: a flow
that removes most of the loss but little of the EPE sits in a flat valley of the loss, far from
the truth. A second table splits the H/4 base flow's EPE and gain by the ground truth's length.

The data comes from the run's `data.json` (`--dataset` overrides the variant). Needs a run of
the "rf" architecture trained on the built-in chairs.
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, Optional, Sequence

import numpy as np

LENGTH_BINS = (0.0, 1.0, 2.0, 3.0, 5.0, np.inf)  # ground-truth flow length at H/4, pixels
FLOWS = ("run", "refined", "truth", "zero")  # "refined": base + residual flow (= "run" without one)


def _share(run: float, truth: float, zero: float) -> Optional[float]:
    """The share of `zero - truth` that `run` removes (None where the truth is no better)."""
    return (zero - run) / (zero - truth) if zero > truth else None


def flow_signal(run_dir: str, k: int = 2, examples: int = 96, dataset: Optional[str] = None,
                batch_size: int = 16, cache_dir: Optional[str] = None, scales: Optional[int] = None) -> Dict:
    """The figures of the module docstring as a dict."""
    import tensorflow as tf

    from tfrf import losses, runs
    from tfrf.data.pipeline import make_dataset
    from tfrf.evaluation import data as data_lib
    from tfrf.evaluation.mechanism import LEVELS, end_point_errors, flow_gain_terms
    from tfrf.models.generator import INPUT_KEYS

    config = runs.read_model_config(os.path.join(run_dir, "config.json"))
    if config.architecture != "rf":
        raise ValueError(f"run {run_dir} is a {config.architecture!r} model; it needs 'rf'")
    if not os.path.isfile(os.path.join(run_dir, data_lib.RUN_DATA_FILE)):
        raise ValueError(f"run {run_dir} has no {data_lib.RUN_DATA_FILE}: it does not record the data it trained on")
    generator = runs.load_generator(config, runs.latest_run_weights(run_dir))
    data = data_lib.data_for_runs([run_dir], None, dataset, image_size=config.image_height, cache_dir=cache_dir,
                                  verbose=False)
    if not data.has_ground_truth:
        raise ValueError(f"run {run_dir} did not train on the built-in chairs (no ground truth)")
    tuples, _ = data.test_tuples(k, examples)
    size = config.image_height
    if scales is None:
        scales = int(data_lib.run_training_config(run_dir).get("photometric_scales", 1))
    batches = make_dataset(data.table, k, batch_size=min(batch_size, len(tuples)), training=False, tuples=tuples,
                           image_size=(size, size))
    loss_sums = {(level, name): 0.0 for level in LEVELS for name in FLOWS}
    epe = {(level, name): [] for level in LEVELS for name in FLOWS}
    gain = {(level, name): [0.0, 0.0] for level in LEVELS for name in FLOWS}
    lengths, errors, dots, norms = [], [], [], []
    row = 0
    for batch in batches:
        count = int(batch["target_image"].shape[0])
        outputs = generator({key: batch[key] for key in INPUT_KEYS}, training=False, return_intermediates=True)
        truth = data.ground_truth(tuples[row:row + count], size, levels=LEVELS)
        row += count
        for level in LEVELS:
            learned = outputs[level]["flows"].numpy().astype(np.float64)
            gt, visible = truth[level]["flow"], np.asarray(truth[level]["visible"], bool)
            flows = {"run": learned, "refined": learned + outputs[level]["residual_flows"].numpy(),
                     "truth": np.where(visible[..., None], gt, learned), "zero": np.zeros_like(learned)}
            for name, flow in flows.items():
                value = losses.photometric_loss(batch["source_images"], batch["target_image"],
                                                tf.constant(flow, tf.float32), scales=scales)
                loss_sums[level, name] += float(value) * count  # (a batch's mean over its examples)
                epe[level, name].append(end_point_errors(flow, gt, visible))
                dot, norm = flow_gain_terms(flow, gt, visible)
                gain[level, name][0] += dot
                gain[level, name][1] += norm
            if level == "h4":  # per pixel, for the split by the truth's length
                lengths.append(epe[level, "zero"][-1])
                errors.append(epe[level, "run"][-1])
                dots.append((learned * gt).sum(-1)[visible])
                norms.append(lengths[-1] ** 2)
    result = {"run": run_dir, "k": k, "examples": int(len(tuples)), "photometric_scales": scales, "levels": {}}
    for level in LEVELS:
        entry = {name: {"photometric": loss_sums[level, name] / row,
                        "epe": float(np.concatenate(epe[level, name]).mean()),
                        "gain": gain[level, name][0] / gain[level, name][1] if gain[level, name][1] else None}
                 for name in FLOWS}
        for flow in ("run", "refined"):
            prefix = "" if flow == "run" else "refined_"
            for measure in ("photometric", "epe"):
                entry[f"{prefix}{measure}_gap_closed"] = _share(*(entry[name][measure] for name in (flow, "truth", "zero")))
        result["levels"][level] = entry
    lengths, errors, dots, norms = map(np.concatenate, (lengths, errors, dots, norms))
    result["h4_by_length"] = []
    for low, high in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:]):
        inside = (lengths >= low) & (lengths < high)
        if inside.any():
            result["h4_by_length"].append({
                "from": low, "to": None if np.isinf(high) else high, "share": float(inside.mean()),
                "epe": float(errors[inside].mean()), "epe_zero": float(lengths[inside].mean()),
                "gain": float(dots[inside].sum() / norms[inside].sum()) if norms[inside].sum() else None})
    return result


def format_result(result: Dict) -> str:
    def cell(value, spec="{:.3f}"):
        return "—" if value is None else spec.format(value)

    lines = [f"{result['run']}: K = {result['k']}, {result['examples']} held-out tuples, photometric pyramid of "
             f"{result['photometric_scales']}", "",
             "| level | photometric run / refined / truth / zero | closed run / refined | "
             "EPE run / refined / truth / zero | closed run / refined | gain run / refined |",
             "|---|---|---|---|---|---|"]
    for level, entry in result["levels"].items():
        lines.append(f"| {level} | " + " / ".join(cell(entry[name]["photometric"], "{:.4f}") for name in FLOWS)
                     + f" | {cell(entry['photometric_gap_closed'], '{:.0%}')} / "
                     + f"{cell(entry['refined_photometric_gap_closed'], '{:.0%}')} | "
                     + " / ".join(cell(entry[name]["epe"]) for name in FLOWS)
                     + f" | {cell(entry['epe_gap_closed'], '{:.0%}')} / {cell(entry['refined_epe_gap_closed'], '{:.0%}')}"
                     + f" | {cell(entry['run']['gain'])} / {cell(entry['refined']['gain'])} |")
    lines += ["", "| ground-truth length at H/4 (px) | share of pixels | EPE run | EPE zero | gain run |",
              "|---|---|---|---|---|"]
    for entry in result["h4_by_length"]:
        span = f"{entry['from']:g}–{entry['to']:g}" if entry["to"] is not None else f"≥ {entry['from']:g}"
        lines.append(f"| {span} | {entry['share']:.2f} | {entry['epe']:.2f} | {entry['epe_zero']:.2f} | "
                     f"{cell(entry['gain'], '{:.2f}')} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.flow_signal", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--run", required=True, help="a training run folder (tfrf train / tfrf demo OUT)")
    parser.add_argument("--k", type=int, default=2, help="sources per tuple (default 2)")
    parser.add_argument("--examples", type=int, default=96, help="held-out tuples (default 96)")
    parser.add_argument("--dataset", help="the chairs' variant; default: the run's data.json")
    parser.add_argument("--scales", type=int, help="the photometric pyramid's levels (default: the run's)")
    parser.add_argument("--cache-dir", help="the built-in data's cache (default: tfrf's)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.k < 1 or args.examples < 1 or (args.scales is not None and args.scales < 1):
        parser.error("--k, --examples and --scales must be >= 1")
    if not os.path.isfile(os.path.join(args.run, "config.json")):
        parser.error(f"--run {args.run}: no config.json (not a training run folder)")
    from tfrf.benchmarks.report import print_and_write

    # a GFLA run, another dataset, missing or damaged weights, an unwritable --out: one line
    return print_and_write("flow_signal", lambda: flow_signal(args.run, args.k, args.examples, args.dataset,
                                                              cache_dir=args.cache_dir, scales=args.scales),
                           format_result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
