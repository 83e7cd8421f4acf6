"""The report's tables: Markdown laid out like the papers' tables, and CSV.

Rows are K x run (K ascending, runs in the order given), columns one per metric in the papers'
order (FID, LPIPS, Mask-LPIPS, then SSIM, PSNR, L1) with the direction that is better, then the
number of examples. A (run, K) that was not scored (e.g. GFLA at K > 1) shows "—" and its reason
below the table. Reports with mechanism metrics (data with ground truth) get a second table of
them, and their CSV columns after the image metrics.
"""
from __future__ import annotations

import csv
import io
from typing import Dict, List, Mapping, Sequence

COLUMN_ORDER = ("fid", "lpips", "mask_lpips", "ssim", "psnr", "l1")
HEADERS = {"fid": "FID ↓", "lpips": "LPIPS ↓", "mask_lpips": "Mask-LPIPS ↓", "ssim": "SSIM ↑", "psnr": "PSNR ↑",
           "l1": "L1 ↓"}
FORMATS = {"fid": "{:.2f}", "lpips": "{:.4f}", "mask_lpips": "{:.4f}", "ssim": "{:.4f}", "psnr": "{:.2f}",
           "l1": "{:.4f}"}
MISSING = "—"
# The mechanism metrics (`tfrf.evaluation.mechanism`), in the order of their table.
MECHANISM_COLUMNS = ("epe_zero_h8", "epe_flow_h8", "epe_refined_h8", "epe_zero_h4", "epe_flow_h4", "epe_refined_h4",
                     "gain_flow_h4", "gain_refined_h4",
                     "occlusion_auroc_h8", "occlusion_auroc_h4", "attention_agreement_h8", "attention_agreement_h4",
                     "coverage_auroc", "coverage_auroc_object")
MECHANISM_HEADERS = {
    "epe_zero_h8": "EPE 0 h8", "epe_flow_h8": "EPE flow h8 ↓", "epe_refined_h8": "EPE refined h8 ↓",
    "epe_zero_h4": "EPE 0 h4", "epe_flow_h4": "EPE flow h4 ↓", "epe_refined_h4": "EPE refined h4 ↓",
    "gain_flow_h4": "gain flow h4 (1)", "gain_refined_h4": "gain refined h4 (1)",
    "occlusion_auroc_h8": "occl. AUROC h8 ↑", "occlusion_auroc_h4": "occl. AUROC h4 ↑",
    "attention_agreement_h8": "attn. top h8 ↑", "attention_agreement_h4": "attn. top h4 ↑",
    "coverage_auroc": "coverage AUROC ↑", "coverage_auroc_object": "coverage AUROC object ↑",
}


def columns(metrics: Sequence[str]) -> List[str]:
    """The metric columns of `metrics` in the papers' order."""
    return [name for name in COLUMN_ORDER if name in metrics]


def rows(report: Mapping) -> List[Dict[str, object]]:
    """One dict per (K, run): `k`, `run`, each metric (float or None), `examples`, `skipped`."""
    table = []
    for k in report["ks"]:
        for name, run in report["runs"].items():
            result = run["results"].get(str(k))
            row: Dict[str, object] = {"k": k, "run": name, "examples": None, "skipped": run["skipped"].get(str(k))}
            for metric in report["metrics"]:
                row[metric] = None if result is None else result.get(metric)
            if result is not None:
                row["examples"] = result.get("examples")
            table.append(row)
    return table


def _cell(metric: str, value) -> str:
    return MISSING if value is None else FORMATS.get(metric, "{:.3f}").format(value)


def mechanism_columns(report: Mapping) -> List[str]:
    """The mechanism metrics some (run, K) of `report` has."""
    present = set()
    for run in report["runs"].values():
        for result in run["results"].values():
            present.update(name for name in MECHANISM_COLUMNS if name in result)
    return [name for name in MECHANISM_COLUMNS if name in present]


def _mechanism_table(report: Mapping, names: Sequence[str]) -> List[str]:
    header = ["K", "run"] + [MECHANISM_HEADERS[name] for name in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(names)) + "|"]
    for k in report["ks"]:
        for run_name, run in report["runs"].items():
            result = run["results"].get(str(k))
            if result is None:
                continue
            cells = [str(k), f"`{run_name}`"] + [_cell(name, result.get(name)) for name in names]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(report: Mapping) -> str:
    """The Markdown report: a title line, the table, the data and notes."""
    metric_columns = columns(report["metrics"])
    header = ["K", "run"] + [HEADERS[name] for name in metric_columns] + ["examples"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    footnotes = []
    for row in rows(report):
        cells = [str(row["k"]), f"`{row['run']}`"] + [_cell(name, row[name]) for name in metric_columns]
        cells.append(MISSING if row["examples"] is None else str(row["examples"]))
        lines.append("| " + " | ".join(cells) + " |")
        if row["skipped"]:
            footnotes.append(f"- `{row['run']}` at K = {row['k']}: {row['skipped']}")
    data = report["data"]
    where = data.get("dataset") or data.get("data_dir")
    if data.get("variant"):
        where = f"{where} ({data['variant']})"
    text = [f"# Evaluation on {where} ({data.get('split', 'test')} split)", "", *lines, ""]
    text.append(f"L1 in [-1, 1] units; PSNR in dB; SSIM 11x11 Gaussian window; LPIPS AlexNet v0.1; "
                f"FID {report.get('fid_mode', 'standard')} mode. Images: {report['image_format']}.")
    text.append("")
    text.append("Test tuples: " + "; ".join(f"K = {k}: {info['count']} ({info['origin']})"
                                            for k, info in report["tuples"].items()))
    protocol = report.get("protocol")
    if protocol:
        size = protocol["image_size"]
        text += ["", f"Protocol `{protocol['protocol']}`: {size[0]} x {size[1]}, crop {protocol['crop']}, "
                     f"generated {protocol['generated_format']} (the full card is in metrics.json)."]
    names = mechanism_columns(report)
    if names:
        text += ["", "Mechanism against the renderer's ground truth (EPE in pixels of each level, on visible "
                     "pixels; EPE 0 is the zero flow's):", "", *_mechanism_table(report, names)]
    notes = footnotes + [f"- {note}" for note in report.get("notes", [])]
    if notes:
        text += ["", "Notes:", *notes]
    return "\n".join(text) + "\n"


def csv_text(report: Mapping) -> str:
    """`run,k,examples,<metrics>` with empty cells where nothing was scored."""
    metric_columns = columns(report["metrics"])
    extra = mechanism_columns(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "k", "examples", *metric_columns, *extra])
    for row in rows(report):
        result = report["runs"][row["run"]]["results"].get(str(row["k"])) or {}
        writer.writerow([row["run"], row["k"], "" if row["examples"] is None else row["examples"],
                         *["" if row[name] is None else repr(float(row[name])) for name in metric_columns],
                         *["" if result.get(name) is None else repr(float(result[name])) for name in extra]])
    return buffer.getvalue()
