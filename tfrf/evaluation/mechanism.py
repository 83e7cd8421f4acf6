"""Mechanism metrics: does the network's flow, occlusion and attention match the ground truth?

On data with ground truth (the built-in chairs, `tfrf.data.synthetic.tuple_ground_truth`), per
fusing level (`h8`, `h4`; flows in pixels of that level, docs/conventions.md):

- `epe_flow_LEVEL`: end-point error `||f - f_gt||` of the flow confidence extractor's flow, mean
  over the (source, target pixel) pairs whose surface point the source sees (GT `visible`).
- `epe_refined_LEVEL`: the same for the refined flow, base + residual (what the fusing block warps
  with; equal to the base flow without the residual flow).
- `epe_zero_LEVEL`: the same for the zero flow (`||f_gt||`): the reference a flow must beat.
- `gain_flow_LEVEL`, `gain_refined_LEVEL`: the least-squares gain of the flow on the ground truth,
  `sum(f . f_gt) / sum(||f_gt||^2)` over the same pairs: 1 for the ground truth, 0 for the zero
  flow (or one orthogonal to the truth), between them for a flow that points the right way but
  falls short. It tells a flow that is shrunk toward zero (gain well below 1) from one that is
  wrong in direction, which the EPE alone does not.
- `occlusion_auroc_LEVEL`: AUROC of the occlusion map (score) against ground-truth invisibility
  (label: the source does not see the point), over (source, pixel) pairs whose target pixel shows
  the object. 0.5 is chance (`evaluate_mechanism` gives None for a model without occlusion).
- `attention_agreement_LEVEL`: over target pixels that show the object and that some but not all
  sources see, the fraction where the source of the largest attention weight sees the point (at
  K = 1, with no such pixel, or for a model without attention: None).
- `coverage_auroc` (when the generator's intermediates carry `coverage` `[B, H, W, K+1]`: the
  per-pixel shares of each source and, last, of invented content): AUROC with which low coverage
  (score `1 - sum of the K source shares`) predicts high-error pixels (label: mean absolute error
  over RGB above `HIGH_ERROR` in [-1, 1] units) over every pixel; `coverage_auroc_object` the
  same over the pixels that show the object (the background is easy and mostly invented, which
  pulls the first figure below 0.5).

AUROC is the Mann-Whitney statistic, ties counted one half, accumulated in `AUROC_BINS` bins of
scores in [0, 1] (exact for scores that differ by more than a bin; `auroc` is the exact form).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

LEVELS = ("h8", "h4")
HIGH_ERROR = 0.2  # per-pixel mean |generated - target| in [-1, 1] units (25.5 / 255)
AUROC_BINS = 1 << 16
METRIC_NAMES = tuple(f"{name}_{level}" for level in LEVELS for name in (
    "epe_flow", "epe_refined", "epe_zero", "gain_flow", "gain_refined", "occlusion_auroc",
    "attention_agreement")) + (
    "coverage_auroc", "coverage_auroc_object")


def auroc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Exact area under the ROC curve of `scores` for the boolean `labels` (the probability that a
    positive scores above a negative, ties one half); None without positives or negatives."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, np.float64)
    sorted_scores = scores[order]
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], scores.size]
    average = (starts + ends - 1) / 2.0 + 1.0  # 1-based average rank of each run of ties
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


class BinnedAUROC:
    """AUROC accumulated over batches as two histograms of scores in [0, 1] (`bins` bins)."""

    def __init__(self, bins: int = AUROC_BINS):
        self.bins = bins
        self.positive = np.zeros(bins, np.int64)
        self.negative = np.zeros(bins, np.int64)

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        scores = np.asarray(scores, np.float64).ravel()
        labels = np.asarray(labels, bool).ravel()
        index = np.clip(np.floor(scores * self.bins), 0, self.bins - 1).astype(np.int64)
        self.positive += np.bincount(index[labels], minlength=self.bins)
        self.negative += np.bincount(index[~labels], minlength=self.bins)

    def result(self) -> Optional[float]:
        positives, negatives = int(self.positive.sum()), int(self.negative.sum())
        if not positives or not negatives:
            return None
        below = np.cumsum(self.negative) - self.negative  # negatives in lower bins
        wins = (self.positive * (below + 0.5 * self.negative)).sum()
        return float(wins / (positives * negatives))


def end_point_errors(flow: np.ndarray, truth: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """`||flow - truth||` (float64) at the visible entries: flow, truth `[..., 2]`, visible `[...]`."""
    difference = np.asarray(flow, np.float64) - np.asarray(truth, np.float64)
    return np.sqrt((difference ** 2).sum(-1))[np.asarray(visible, bool)]


def flow_gain_terms(flow: np.ndarray, truth: np.ndarray, visible: np.ndarray):
    """(sum of `flow . truth`, sum of `||truth||^2`) (float64) over the visible entries; their
    ratio is the least-squares gain of `flow` on `truth`."""
    flow, truth = np.asarray(flow, np.float64), np.asarray(truth, np.float64)
    visible = np.asarray(visible, bool)
    return float((flow * truth).sum(-1)[visible].sum()), float((truth ** 2).sum(-1)[visible].sum())


def top_source_agreement(attention: np.ndarray, visible: np.ndarray, shown: np.ndarray):
    """(agreements, pixels counted): attention `[B, K, h, w]`, visible `[B, K, h, w]`, shown
    `[B, h, w]`; counted are shown pixels seen by some but not all K sources."""
    attention = np.asarray(attention)
    visible = np.asarray(visible, bool)
    seen_by = visible.sum(axis=1)
    counted = np.asarray(shown, bool) & (seen_by > 0) & (seen_by < visible.shape[1])
    top = np.argmax(attention, axis=1)[..., None]  # [B, h, w, 1]
    top_sees = np.take_along_axis(np.moveaxis(visible, 1, -1), top, axis=-1)[..., 0]
    return int((top_sees & counted).sum()), int(counted.sum())


def low_coverage_scores(coverage: np.ndarray) -> np.ndarray:
    """`1 - sum of the K source shares` of coverage `[B, H, W, K+1]`, clipped to [0, 1]."""
    coverage = np.asarray(coverage, np.float64)
    return np.clip(1.0 - coverage[..., :-1].sum(-1), 0.0, 1.0)


def high_error_pixels(generated: np.ndarray, target: np.ndarray, threshold: float = HIGH_ERROR) -> np.ndarray:
    """bool `[B, H, W]`: mean absolute RGB error (images in [-1, 1]) above `threshold`."""
    error = np.abs(np.asarray(generated, np.float64) - np.asarray(target, np.float64)).mean(-1)
    return error > threshold


class MechanismAccumulator:
    """The mechanism metrics over batches: `update` with the generator's intermediates (numpy),
    the ground truth of the batch's tuples and the images; `result` gives the dict of the module
    docstring (None where undefined)."""

    def __init__(self):
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, float] = {}  # pixels counted (a gain's: its sum of ||f_gt||^2)
        self.occlusion = {level: BinnedAUROC() for level in LEVELS}
        self.coverage: Optional[BinnedAUROC] = None
        self.coverage_object: Optional[BinnedAUROC] = None

    def _add(self, name: str, total: float, count: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(total)
        self.counts[name] = self.counts.get(name, 0) + count

    def update(self, intermediates: Mapping, truth: Mapping, generated: Optional[np.ndarray] = None,
               target: Optional[np.ndarray] = None) -> None:
        """intermediates: `{level: {"flows", "residual_flows", "attention", "occlusions"}}` `[B, K, h, w, c]`
        (and optionally `coverage` `[B, H, W, K+1]`); truth: `{level: {"flow" [B, K, h, w, 2],
        "visible" [B, K, h, w], "shown" [B, h, w]}}` (and optionally level "h", the image's size,
        for `coverage_auroc_object`); generated, target: `[B, H, W, 3]` in [-1, 1]."""
        for level in LEVELS:
            outputs, gt = intermediates[level], truth[level]
            flow = np.asarray(outputs["flows"], np.float64)
            if flow.shape != gt["flow"].shape:
                raise ValueError(f"mechanism {level}: flows {flow.shape} vs ground truth {gt['flow'].shape}")
            visible, shown = np.asarray(gt["visible"], bool), np.asarray(gt["shown"], bool)
            refined = flow + np.asarray(outputs["residual_flows"], np.float64)
            for name, estimate in (("flow", flow), ("refined", refined), ("zero", np.zeros_like(flow))):
                errors = end_point_errors(estimate, gt["flow"], visible)
                self._add(f"epe_{name}_{level}", errors.sum(), errors.size)
            for name, estimate in (("flow", flow), ("refined", refined)):
                self._add(f"gain_{name}_{level}", *flow_gain_terms(estimate, gt["flow"], visible))
            counted = np.broadcast_to(shown[:, None], visible.shape)
            occlusion = np.asarray(outputs["occlusions"])[..., 0]
            self.occlusion[level].update(occlusion[counted], ~visible[counted])
            if visible.shape[1] > 1:
                agree, count = top_source_agreement(np.asarray(outputs["attention"])[..., 0], visible, shown)
                self._add(f"attention_agreement_{level}", agree, count)
        coverage = intermediates.get("coverage")
        if coverage is not None and generated is not None and target is not None:
            self.coverage = self.coverage or BinnedAUROC()
            scores, labels = low_coverage_scores(coverage), high_error_pixels(generated, target)
            self.coverage.update(scores, labels)
            if "h" in truth:
                shown = np.asarray(truth["h"]["shown"], bool)
                if shown.shape != scores.shape:
                    raise ValueError(f"mechanism: coverage {scores.shape} vs ground truth {shown.shape}")
                self.coverage_object = self.coverage_object or BinnedAUROC()
                self.coverage_object.update(scores[shown], labels[shown])

    def result(self) -> Dict[str, Optional[float]]:
        result: Dict[str, Optional[float]] = {}
        for level in LEVELS:
            for name in ("flow", "refined", "zero"):
                key = f"epe_{name}_{level}"
                result[key] = self.sums[key] / self.counts[key] if self.counts.get(key) else None
            for name in ("flow", "refined"):
                key = f"gain_{name}_{level}"
                result[key] = self.sums[key] / self.counts[key] if self.counts.get(key) else None
            result[f"occlusion_auroc_{level}"] = self.occlusion[level].result()
            key = f"attention_agreement_{level}"
            result[key] = self.sums[key] / self.counts[key] if self.counts.get(key) else None
        if self.coverage is not None:
            result["coverage_auroc"] = self.coverage.result()
        if self.coverage_object is not None:
            result["coverage_auroc_object"] = self.coverage_object.result()
        return result


def evaluate_mechanism(generator, data, k: int, tuples: np.ndarray, batch_size: int = 16) -> Dict[str, Optional[float]]:
    """The mechanism metrics of `generator` (architecture "rf") on `tuples` of `data` (an
    `EvaluationData` with ground truth), at the generator's size."""
    import tensorflow as tf

    from tfrf.data.pipeline import make_dataset
    from tfrf.evaluation.render import _padded
    from tfrf.models.generator import INPUT_KEYS

    config = generator.config
    size = tuple(config.image_size)
    if size[0] != size[1]:
        raise ValueError(f"mechanism metrics need square images, got {size}")
    batch_size = min(batch_size, len(tuples))
    h, w, cp = config.image_height, config.image_width, config.pose_channels
    signature = {"source_images": tf.TensorSpec([batch_size, k, h, w, 3], tf.float32),
                 "source_poses": tf.TensorSpec([batch_size, k, h, w, cp], tf.float32),
                 "target_pose": tf.TensorSpec([batch_size, h, w, cp], tf.float32)}
    # Static shapes, as `tfrf.inference.prediction_function` (TF 2.15's oneDNN remapper).
    predict = tf.function(lambda inputs: generator(inputs, training=False, return_intermediates=True),
                          input_signature=[signature])
    dataset = make_dataset(data.table, k, batch_size=batch_size, training=False, tuples=tuples, image_size=size)
    accumulator = MechanismAccumulator()
    row = 0
    for batch in dataset:
        count = int(batch["target_image"].shape[0])
        outputs = predict({key: _padded(batch[key], batch_size) for key in INPUT_KEYS})
        intermediates = {level: {name: value.numpy()[:count] for name, value in outputs[level].items()}
                         for level in LEVELS}
        if "coverage" in outputs:
            intermediates["coverage"] = outputs["coverage"].numpy()[:count]
        truth = data.ground_truth(tuples[row:row + count], size[0], levels=("h8", "h4", "h") if "coverage" in outputs
                                  else LEVELS)
        accumulator.update(intermediates, truth, outputs["image"].numpy()[:count], batch["target_image"].numpy())
        row += count
    result = accumulator.result()
    for switch, name in (("use_occlusion", "occlusion_auroc"), ("use_attention", "attention_agreement")):
        if not getattr(config, switch, True):  # an ablated part: its map is constant, not a prediction
            result.update({f"{name}_{level}": None for level in LEVELS})
    return result
