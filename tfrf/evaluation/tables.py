"""The report's tables: Markdown laid out like the papers' tables, and CSV.

Rows are K x run (K ascending, runs in the order given), columns one per metric in the papers'
order (FID, LPIPS, Mask-LPIPS, then SSIM, PSNR, L1) with the direction that is better, then the
number of examples. A (run, K) that was not scored (e.g. GFLA at K > 1) shows "—" and its reason
below the table.
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
    return MISSING if value is None else FORMATS[metric].format(value)


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
    text = [f"# Evaluation on {where} ({data.get('split', 'test')} split)", "", *lines, ""]
    text.append(f"L1 in [-1, 1] units; PSNR in dB; SSIM 11x11 Gaussian window; LPIPS AlexNet v0.1; "
                f"FID {report.get('fid_mode', 'standard')} mode. Images: {report['image_format']}.")
    text.append("")
    text.append("Test tuples: " + "; ".join(f"K = {k}: {info['count']} ({info['origin']})"
                                            for k, info in report["tuples"].items()))
    notes = footnotes + [f"- {note}" for note in report.get("notes", [])]
    if notes:
        text += ["", "Notes:", *notes]
    return "\n".join(text) + "\n"


def csv_text(report: Mapping) -> str:
    """`run,k,examples,<metrics>` with empty cells where nothing was scored."""
    metric_columns = columns(report["metrics"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "k", "examples", *metric_columns])
    for row in rows(report):
        writer.writerow([row["run"], row["k"], "" if row["examples"] is None else row["examples"],
                         *["" if row[name] is None else repr(float(row[name])) for name in metric_columns]])
    return buffer.getvalue()
