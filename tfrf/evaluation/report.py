"""`tfrf evaluate`'s library half: score runs on the fixed test tuples and write a report folder.

For each model (a run, or weights with a config) and each K, the fixed test tuples are rendered
batch by batch (`tfrf.evaluation.render`), written as images, re-read and scored with
`tfrf.metrics.MetricSuite` (L1, PSNR, SSIM, LPIPS, Mask-LPIPS, FID; definitions in
docs/metrics.md), after the protocol's resize and crop (`tfrf.evaluation.protocols`). On data with
ground truth (the built-in chairs) the residual-flow models also get the mechanism metrics
(`tfrf.evaluation.mechanism`: flow EPE, occlusion AUROC, attention agreement, coverage AUROC).
Every metrics.json carries the protocol card (`protocol`). The report folder:

    REPORT/metrics.json          every figure, per run and K, with the data, tuples and settings
    REPORT/metrics.csv           run,k,examples,<metric columns>
    REPORT/metrics.md            the table, rows K x run, one column per metric (papers' layout)
    REPORT/gallery_RUN_kK.png    the best and the worst cases by L1
    REPORT/generated/RUN/kK/     the generated images (00000.png ... or .jpg) and scores.csv
    REPORT/tuples/kK.npy         the tuples scored (rows: sources..., target; split indices)

The folder is written in a temporary directory beside REPORT and renamed into place at the end
(a previous report at REPORT is replaced then; anything else there is refused), so a reader never
sees half a report and a failed evaluation leaves the old one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import secrets
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from tfrf.evaluation import render, tables

REPORT_FILES = ("metrics.json", "metrics.csv", "metrics.md")


@dataclasses.dataclass
class ModelEntry:
    """One model of the report.

    Attributes:
        name: its row label (the run's directory name, or the weights file's stem).
        config: its `ModelConfig`.
        weights: the weights path (`tfrf.runs.resolve_weights` form).
        source: what the user named (run directory or weights path).
    """

    name: str
    config: Any
    weights: str
    source: str


def _label(path: str) -> str:
    path = os.path.normpath(path)
    base = os.path.basename(path)
    for suffix in (".weights.h5", ".h5"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def folder_name(name: str) -> str:
    """`name` made safe as one path component."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def models_from_sources(run_dirs: Sequence[str] = (), weights: Sequence[str] = (), config: Optional[str] = None,
                        preset: Optional[str] = None) -> List[ModelEntry]:
    """A `ModelEntry` per `--run` and per `--weights` (with `--config` / `--preset`), named by
    directory or file name; repeated names get `-2`, `-3`, ... ."""
    import argparse

    from tfrf import runs

    entries, seen = [], {}
    sources = [argparse.Namespace(run=run, weights=None, config=None, preset=None) for run in run_dirs]
    sources += [argparse.Namespace(run=None, weights=path, config=config, preset=preset) for path in weights]
    if not sources:
        raise ValueError("no model given: use --run RUN (repeatable), or --weights W with --config C or --preset NAME")
    for args in sources:
        model_config, model_weights = runs.resolve_model(args)
        source = args.run or args.weights
        name = _label(source)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        entries.append(ModelEntry(name, model_config, model_weights, source))
    return entries


@dataclasses.dataclass
class Settings:
    """How the report scores.

    Attributes:
        ks: the K values (rows of the table).
        metrics: `tfrf.metrics.MetricSuite` names to compute.
        batch_size: generator batch.
        metric_batch_size: LPIPS / Inception batch (GFLA: 64).
        max_examples: at most this many test tuples per K (evenly thinned); None: all.
        jpeg: store (and score) JPEG as GFLA did, instead of PNG.
        gallery_rows: best and worst cases shown per (run, K).
        progress: tqdm progress bars.
        fid_mode: the Inception variant (for the record).
        protocol: `tfrf.evaluation.protocols.PROTOCOLS` name ("gfla": whole frame; "pt176").
        real_stats: the `--real-stats` path (for the protocol card), or None.
        mechanism: the mechanism metrics where the data has ground truth.
    """

    ks: Sequence[int]
    metrics: Sequence[str]
    batch_size: int = 16
    metric_batch_size: int = 64
    max_examples: Optional[int] = None
    jpeg: bool = False
    gallery_rows: int = 4
    progress: bool = True
    fid_mode: str = "standard"
    protocol: str = "gfla"
    real_stats: Optional[str] = None
    mechanism: bool = True


def skip_reason(config, k: int, tuples: np.ndarray) -> Optional[str]:
    """Why (model, K) cannot be scored, or None."""
    if getattr(config, "architecture", "rf") == "gfla" and k != 1:
        return "GFLA takes one source (K = 1 only)"
    if not len(tuples):
        return f"no test tuples with K = {k} (every group has fewer than {k + 1} usable images)"
    return None


def _check_fits(models: Sequence[ModelEntry], data, settings: Settings, tuples: Dict[int, np.ndarray]) -> None:
    for model in models:
        if model.config.pose_channels != data.table.pose_channels:
            raise ValueError(f"{model.name} takes {model.config.pose_channels}-channel poses; the data has "
                             f"{data.table.pose_channels}-channel poses ({data.table.pose_encoder})")
    if "fid" in settings.metrics:
        for k, rows in tuples.items():
            if 0 < len(rows) < 2:
                raise ValueError(f"FID needs at least 2 images; K = {k} has {len(rows)} test tuple(s)")


def evaluate_into(folder: str, models: Sequence[ModelEntry], data, settings: Settings, networks: Dict[str, Any],
                  real_statistics=None, notes: Sequence[str] = (), say: Callable[[str], None] = print) -> Dict:
    """Render and score every (model, K) into `folder`; returns the report dict (not yet written).

    Args:
        folder: an empty folder (the report's temporary directory).
        models: from `models_from_sources`.
        data: a `tfrf.evaluation.data.EvaluationData`.
        settings: `Settings`.
        networks: `{"lpips": LPIPS or None, "inception": FIDInception or None}`.
        real_statistics: FID reference `(mu, sigma)`; None: the targets scored at each K.
        notes: lines for the report (e.g. metrics that do not apply).
    """
    from tfrf import runs, visualize
    from tfrf.data import tuples as tuples_lib
    from tfrf.evaluation import mechanism, protocols
    from tfrf.metrics import MetricSuite

    protocol = protocols.get(settings.protocol)
    if protocol.image_format == "PNG" and settings.jpeg:
        raise ValueError(f"--protocol {protocol.name} stores PNG: drop --jpeg")
    tuples, origins = {}, {}
    for k in settings.ks:
        tuples[k], origins[k] = data.test_tuples(k, settings.max_examples)
        tuples_lib.save_tuples(os.path.join(folder, "tuples", f"k{k}.npy"), tuples[k])
    _check_fits(models, data, settings, tuples)
    notes = list(notes)
    if "fid" in settings.metrics and real_statistics is None:
        notes.append("FID against the statistics of the targets scored at each K (the papers use the whole "
                     "training set: give --real-stats for comparable figures)")
    report = {
        "data": data.description,
        "ks": list(settings.ks),
        "metrics": list(settings.metrics),
        "fid_mode": settings.fid_mode,
        "image_format": "JPEG (GFLA's uint8 truncation, quality 75)" if settings.jpeg else "PNG (rounded to uint8)",
        "tuples": {str(k): {"count": int(len(tuples[k])), "origin": origins[k]} for k in settings.ks},
        "settings": {"max_examples": settings.max_examples, "batch_size": settings.batch_size,
                     "metric_batch_size": settings.metric_batch_size, "jpeg": settings.jpeg,
                     "inception_input_size": getattr(networks.get("inception"), "input_size", None)},
        "runs": {},
        "notes": notes,
    }
    report["protocol"] = protocols.card(
        protocol, model_size=models[0].config.image_size, stored_size=data.stored_size, jpeg=settings.jpeg,
        metrics=settings.metrics, fid_mode=settings.fid_mode,
        inception_input_size=getattr(networks.get("inception"), "input_size", None), real_stats=settings.real_stats,
        scored_targets={str(k): int(len(tuples[k])) for k in settings.ks})
    with_truth = settings.mechanism and getattr(data, "has_ground_truth", False)
    if with_truth:
        report["mechanism_metrics"] = list(mechanism.METRIC_NAMES)
        notes.append("mechanism metrics against the renderer's ground truth (docs/metrics.md): EPE in pixels of "
                     "each level (h8 = H/8, h4 = H/4) on visible pixels; AUROC 0.5 is chance")
    for model in models:
        generator = runs.load_generator(model.config, model.weights)
        entry = {"source": os.path.abspath(model.source), "weights": os.path.abspath(model.weights),
                 "config": model.config.to_dict(), "results": {}, "skipped": {}}
        report["runs"][model.name] = entry
        for k in settings.ks:
            reason = skip_reason(model.config, k, tuples[k])
            if reason:
                entry["skipped"][str(k)] = reason
                say(f"{model.name} K={k}: skipped ({reason})")
                continue
            suite = MetricSuite(settings.metrics, lpips=networks.get("lpips"), inception=networks.get("inception"),
                                real_stats=real_statistics, batch_size=settings.metric_batch_size)
            image_dir = os.path.join(folder, "generated", folder_name(model.name), f"k{k}")
            began = time.perf_counter()
            errors = render.render_and_score(
                generator, data, k, tuples[k], image_dir, suite, batch_size=settings.batch_size, jpeg=settings.jpeg,
                mask_keypoints="mask_lpips" in settings.metrics, progress=settings.progress,
                description=f"{model.name} K={k}", protocol=None if protocol.name == "gfla" else protocol)
            result = suite.result()
            if with_truth and getattr(model.config, "architecture", "rf") == "rf":
                result.update(mechanism.evaluate_mechanism(generator, data, k, tuples[k], settings.batch_size))
            result["seconds"] = time.perf_counter() - began
            entry["results"][str(k)] = result
            _write_scores(image_dir, tuples[k], errors)
            figure = render.gallery(model.config, data, k, tuples[k], image_dir, errors, settings.gallery_rows,
                                    settings.jpeg)
            visualize.save_png(os.path.join(folder, f"gallery_{folder_name(model.name)}_k{k}.png"), figure)
            shown = ", ".join(f"{name} {tables.FORMATS[name].format(result[name])}"
                              for name in tables.columns(settings.metrics) if name in result)
            say(f"{model.name} K={k}: {shown} ({result['examples']} examples, {result['seconds']:.1f} s)")
        del generator
    return report


def _write_scores(image_dir: str, tuples: np.ndarray, errors: np.ndarray) -> None:
    lines = ["row,target,l1"] + [f"{row},{int(tuples[row, -1])},{errors[row]!r}" for row in range(len(errors))]
    with open(os.path.join(image_dir, "scores.csv"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def write_tables(folder: str, report: Dict) -> None:
    """metrics.json, metrics.csv and metrics.md of `report` into `folder`."""
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as stream:
        stream.write(json.dumps(report, indent=2, default=_json_default) + "\n")
    with open(os.path.join(folder, "metrics.csv"), "w", encoding="utf-8") as stream:
        stream.write(tables.csv_text(report))
    with open(os.path.join(folder, "metrics.md"), "w", encoding="utf-8") as stream:
        stream.write(tables.markdown(report))


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_report(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "metrics.json"))


def publish(path: str, populate: Callable[[str], None]) -> None:
    """Fill a temporary folder beside `path` with `populate(folder)`, then rename it to `path`
    (replacing a previous report there).

    Raises:
        ValueError: `path` exists and is not a report of this command.
    """
    from tfrf.io import atomic_directory

    if not os.path.exists(path):
        atomic_directory(path, populate)
        return
    if not is_report(path):
        raise ValueError(f"--out {path} exists and is not a tfrf evaluate report (no metrics.json); "
                         "choose another --out")
    parent = os.path.dirname(os.path.abspath(path))
    token = secrets.token_hex(4)
    staged = os.path.join(parent, f".tmp-{os.path.basename(path)}-new-{token}")
    atomic_directory(staged, populate)
    retired = os.path.join(parent, f".tmp-{os.path.basename(path)}-old-{token}")
    os.replace(path, retired)
    os.replace(staged, path)
    shutil.rmtree(retired, ignore_errors=True)


def write_report(path: str, models: Sequence[ModelEntry], data, settings: Settings, networks: Dict[str, Any],
                 real_statistics=None, notes: Sequence[str] = (), say: Callable[[str], None] = print) -> Dict:
    """`evaluate_into` a temporary folder, the tables beside it, then `publish` it as `path`.
    Returns the report dict (what metrics.json holds)."""
    holder: Dict[str, Dict] = {}

    def populate(folder: str) -> None:
        holder["report"] = evaluate_into(folder, models, data, settings, networks, real_statistics, notes, say)
        write_tables(folder, holder["report"])

    publish(path, populate)
    return holder["report"]
