"""Table 4 over seeds: the per-seed ablations of `python -m tfrf.benchmarks.ablation --seeds ...`
summarised as mean ± standard error per variant and K, and as per-tuple paired L1 differences
full − variant with their intervals.

Each seed's ablation (`OUT/seed<N>/`) trains every variant on data, weights and tuples of that
seed. Within a seed the variants are scored on the same held-out tuples, so their per-tuple L1
(`report/generated/<variant>/k<K>/scores.csv`) pair up: the difference full − variant removes what
the tuples share (a hard view, a dark chair). Two intervals are given: over every (seed, tuple)
pair (a normal 95 % interval, which treats tuples as independent although each seed's tuples share
one trained model) and over the seeds' mean differences (a t interval with seeds − 1 degrees of
freedom: the honest one for "would another seed agree", wide with 3 seeds). GFLA takes one
source, so its row and its differences have K = 1 only.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Dict, Optional, Sequence

import numpy as np

# Two-sided 95 % quantiles of Student's t by degrees of freedom (1..10); beyond: the normal's.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
NORMAL_975 = 1.96
IMAGE_METRICS = ("l1", "psnr", "ssim")
MECHANISM_COLUMNS = (("epe_flow_h8", "EPE base H/8"), ("epe_refined_h8", "EPE refined H/8"),
                     ("epe_flow_h4", "EPE base H/4"), ("epe_refined_h4", "EPE refined H/4"),
                     ("gain_flow_h4", "gain base H/4"), ("gain_refined_h4", "gain refined H/4"),
                     ("occlusion_auroc_h4", "occl. AUROC H/4"), ("attention_agreement_h4", "attn. agreement H/4"),
                     ("coverage_auroc_object", "coverage AUROC"))
FORMATS = {"l1": "{:.4f}", "psnr": "{:.2f}", "ssim": "{:.4f}"}


def mean_and_error(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """`{"mean", "se", "n"}`: the standard error is the sample standard deviation over sqrt(n)
    (None for one value)."""
    values = np.asarray([value for value in values if value is not None], np.float64)
    if not len(values):
        return {"mean": None, "se": None, "n": 0}
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(values.mean()), "se": se, "n": int(len(values))}


def t_quantile(degrees: int) -> float:
    return T_975.get(degrees, NORMAL_975)


def read_scores(path: str) -> Dict[int, tuple]:
    """`scores.csv` of a report (`row,target,l1`) -> `{row: (target, l1)}`."""
    with open(path, newline="", encoding="utf-8") as stream:
        return {int(row["row"]): (int(row["target"]), float(row["l1"])) for row in csv.DictReader(stream)}


def paired_differences(full_path: str, variant_path: str) -> np.ndarray:
    """Per-tuple L1 of the full model minus the variant's, on the tuples both scored.

    Raises:
        ValueError: the two files score different targets on the same row (not the same tuples).
    """
    full, variant = read_scores(full_path), read_scores(variant_path)
    rows = sorted(set(full) & set(variant))
    mismatched = [row for row in rows if full[row][0] != variant[row][0]]
    if mismatched:
        raise ValueError(f"{full_path} and {variant_path} score different targets on rows {mismatched[:5]}: "
                         "not the same test tuples")
    return np.asarray([full[row][1] - variant[row][1] for row in rows], np.float64)


def difference_summary(per_seed: Sequence[np.ndarray]) -> Dict:
    """Pooled (seed, tuple) differences and the seeds' means: estimates, 95 % intervals, and how
    many seeds favour the full model (mean difference < 0)."""
    pooled = np.concatenate([np.asarray(values, np.float64) for values in per_seed])
    seed_means = np.asarray([float(np.mean(values)) for values in per_seed], np.float64)
    half = NORMAL_975 * pooled.std(ddof=1) / math.sqrt(len(pooled)) if len(pooled) > 1 else float("nan")
    summary = {"mean": float(pooled.mean()), "tuples": int(len(pooled)),
               "pooled_interval": [float(pooled.mean() - half), float(pooled.mean() + half)],
               "seed_means": [float(value) for value in seed_means],
               "seeds_favouring_full": int((seed_means < 0).sum())}
    if len(seed_means) > 1:
        seed_half = t_quantile(len(seed_means) - 1) * seed_means.std(ddof=1) / math.sqrt(len(seed_means))
        summary["seed_interval"] = [float(seed_means.mean() - seed_half), float(seed_means.mean() + seed_half)]
    return summary


def summarize(out_dir: str, seeds: Sequence[int], variants: Sequence[str], ks: Sequence[int]) -> Dict:
    """Read `OUT/seed<N>/ablation.json` and the reports' scores; returns the summary dict."""
    from tfrf.evaluation.report import folder_name

    runs = {}
    for seed in seeds:
        with open(os.path.join(out_dir, f"seed{seed}", "ablation.json"), encoding="utf-8") as stream:
            runs[seed] = {row["variant"]: row for row in json.load(stream)["rows"]}
    rows = []
    # GFLA takes one source: its row and its paired differences have K = 1 only.
    names = list(dict.fromkeys(variants)) + ["nearest_view"]
    for variant in names:
        present = [seed for seed in seeds if variant in runs[seed]]
        if not present:
            continue
        row = {"variant": variant, "label": runs[present[0]][variant]["label"], "seeds": present, "results": {}}
        for k in ks:
            results = [runs[seed][variant]["results"].get(str(k)) for seed in present]
            results = [result for result in results if result]
            if not results:
                continue
            row["results"][str(k)] = {name: mean_and_error([result.get(name) for result in results])
                                      for name in IMAGE_METRICS + tuple(column for column, _ in MECHANISM_COLUMNS)
                                      + ("epe_zero_h8", "epe_zero_h4")
                                      if any(result.get(name) is not None for result in results)}
        rows.append(row)
    differences = {}
    for variant in names:
        if variant in ("full", "nearest_view"):
            continue
        for k in ks:
            per_seed = []
            for seed in seeds:
                generated = os.path.join(out_dir, f"seed{seed}", "report", "generated")
                full_path = os.path.join(generated, folder_name("full"), f"k{k}", "scores.csv")
                variant_path = os.path.join(generated, folder_name(variant), f"k{k}", "scores.csv")
                if os.path.isfile(full_path) and os.path.isfile(variant_path):
                    per_seed.append(paired_differences(full_path, variant_path))
            if per_seed:
                differences.setdefault(variant, {})[str(k)] = difference_summary(per_seed)
    return {"seeds": list(seeds), "ks": list(ks), "rows": rows, "differences": differences}


def _cell(stats: Optional[Dict], pattern: str) -> str:
    if not stats or stats["mean"] is None:
        return "—"
    text = pattern.format(stats["mean"])
    return text + (" ± " + pattern.format(stats["se"]) if stats["se"] is not None else "")


def format_tables(summary: Dict, mechanism_k: int = 2) -> str:
    """Markdown: the image metrics per K, the mechanism metrics at `mechanism_k`, the paired
    differences."""
    ks = summary["ks"]
    lines = [f"Mean ± standard error over seeds {summary['seeds']}; L1 in [-1, 1] units, PSNR in dB.", "",
             "| variant | " + " | ".join(f"K={k} L1 / PSNR / SSIM" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for row in summary["rows"]:
        cells = [row["label"]]
        for k in ks:
            result = row["results"].get(str(k))
            cells.append(" / ".join(_cell(result.get(name), FORMATS[name]) for name in IMAGE_METRICS)
                         if result else "—")
        lines.append("| " + " | ".join(cells) + " |")
    mechanism_rows = [row for row in summary["rows"] if any(
        column in row["results"].get(str(mechanism_k), {}) for column, _ in MECHANISM_COLUMNS)]
    if mechanism_rows:
        zero = mechanism_rows[0]["results"][str(mechanism_k)]
        lines += ["", f"Mechanism metrics at K = {mechanism_k} against the renderer's ground truth (EPE in pixels of "
                  f"each level; the zero flow's EPE: H/8 {_cell(zero.get('epe_zero_h8'), '{:.3f}')}, "
                  f"H/4 {_cell(zero.get('epe_zero_h4'), '{:.3f}')}):", "",
                  "| variant | " + " | ".join(label for _, label in MECHANISM_COLUMNS) + " |",
                  "|---|" + "---|" * len(MECHANISM_COLUMNS)]
        for row in mechanism_rows:
            result = row["results"][str(mechanism_k)]
            lines.append("| " + " | ".join([row["label"]] + [_cell(result.get(column), "{:.3f}")
                                                            for column, _ in MECHANISM_COLUMNS]) + " |")
    if summary["differences"]:
        labels = {row["variant"]: row["label"] for row in summary["rows"]}
        lines += ["", "Per-tuple paired L1 difference full − variant (negative: the full model is better): the mean "
                  "over every (seed, tuple) with its normal 95 % interval; then the t interval over the seeds' "
                  "means and how many seeds favour the full model.", "",
                  "| variant | " + " | ".join(f"K={k} ΔL1" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for variant, by_k in summary["differences"].items():
            cells = [labels.get(variant, variant)]
            for k in ks:
                entry = by_k.get(str(k))
                if entry is None:
                    cells.append("—")
                    continue
                low, high = entry["pooled_interval"]
                text = f"{entry['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"
                if "seed_interval" in entry:
                    seed_low, seed_high = entry["seed_interval"]
                    text += f"; seeds [{seed_low:+.4f}, {seed_high:+.4f}]"
                text += f", {entry['seeds_favouring_full']}/{len(entry['seed_means'])}"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(out_dir: str, summary: Dict) -> str:
    """`OUT/ablation_seeds.{md,json}`, atomically; returns the markdown."""
    from tfrf.io import atomic_write_text

    text = format_tables(summary)
    atomic_write_text(os.path.join(out_dir, "ablation_seeds.md"), text + "\n")
    atomic_write_text(os.path.join(out_dir, "ablation_seeds.json"), json.dumps(summary, indent=2) + "\n")
    return text

