"""Every figure of the papers' tables over one set of generated images: L1, PSNR, SSIM, LPIPS,
Mask-LPIPS (Market-1501) and FID, accumulated batch by batch.

`MetricSuite.update(generated, target, keypoints)` takes uint8 batches (what GFLA scored: outputs
saved as images after uint8 truncation); `result()` gives the means and the FID. FID compares the
generated set with real statistics: a `(mu, sigma)` pair, an `.npz`, a folder of real images
(cached, see `tfrf.metrics.fid.real_statistics`), or, when none is given, the targets seen — GFLA
and the residual-flow paper use the whole training set, so pass it for comparable figures.
`compute_metrics` is the one-call form over arrays.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from tfrf.metrics import fid as fid_lib
from tfrf.metrics.image import MetricAccumulator
from tfrf.metrics.market_mask import masked_lpips

IMAGE_METRICS = ("l1", "psnr", "ssim")
ALL_METRICS = IMAGE_METRICS + ("lpips", "mask_lpips", "fid")


def _as_uint8_batch(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"metrics: {name} must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    return images


def _to_signed(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 127.5 - 1.0


class MetricSuite:
    """Accumulates the requested metrics over batches.

    Args:
        metrics: names from `ALL_METRICS`; None means L1, PSNR, SSIM, plus LPIPS when `lpips` is
            given, Mask-LPIPS when `lpips` is given and keypoints come with the batches, and FID
            when `inception` is given.
        lpips: a `tfrf.metrics.LPIPS` (AlexNet, loaded weights, for the published figures).
        inception: a `tfrf.metrics.FIDInception` with loaded weights.
        real_stats: FID reference: `(mu, sigma)`, `.npz` path, real image folder, list of paths or
            uint8 images; None: the targets passed to `update`.
        cache_dir: cache of real statistics (`tfrf.metrics.cache`).
        batch_size: LPIPS and Inception batch.
    """

    def __init__(self, metrics: Optional[Sequence[str]] = None, lpips=None, inception=None, real_stats=None,
                 cache_dir=None, batch_size: int = 64):
        self.requested = None if metrics is None else tuple(metrics)
        for name in self.requested or ():
            if name not in ALL_METRICS:
                raise ValueError(f"metrics: unknown metric {name!r}; expected some of {ALL_METRICS}")
        if self.requested is not None:
            if ("lpips" in self.requested or "mask_lpips" in self.requested) and lpips is None:
                raise ValueError("metrics: 'lpips' and 'mask_lpips' need `lpips`, a tfrf.metrics.LPIPS with loaded weights")
            if "fid" in self.requested and inception is None:
                raise ValueError("metrics: 'fid' needs `inception`, a tfrf.metrics.FIDInception with loaded weights")
        self.lpips = lpips
        self.inception = inception
        self.batch_size = batch_size
        self.real = None
        if real_stats is not None and self._wants("fid", keypoints=False):
            self.real = fid_lib.resolve_statistics(real_stats, inception, cache_dir, batch_size)
        self.images = MetricAccumulator()
        self.lpips_values = []
        self.mask_lpips_values = []
        self.generated_statistics = fid_lib.FeatureStatistics()
        self.target_statistics = fid_lib.FeatureStatistics()

    def _wants(self, name: str, keypoints: bool) -> bool:
        if self.requested is not None:
            return name in self.requested
        if name in IMAGE_METRICS:
            return True
        if name == "lpips":
            return self.lpips is not None
        if name == "mask_lpips":
            return self.lpips is not None and keypoints
        return self.inception is not None

    def update(self, generated, target, keypoints=None) -> None:
        """Add a batch: `generated`, `target` uint8 `[n, H, W, 3]`; `keypoints` the target's
        `[n, 18, 2]` (y, x) at H x W, -1 where missing (for Mask-LPIPS)."""
        generated = _as_uint8_batch(generated, "generated")
        target = _as_uint8_batch(target, "target")
        if generated.shape != target.shape:
            raise ValueError(f"metrics: generated {generated.shape} and target {target.shape} must match")
        if self.requested is not None and "mask_lpips" in self.requested and keypoints is None:
            raise ValueError("metrics: 'mask_lpips' needs the target keypoints [N, 18, 2]")
        generated_signed, target_signed = _to_signed(generated), _to_signed(target)
        if any(self._wants(name, keypoints is not None) for name in IMAGE_METRICS):
            self.images.update(generated_signed, target_signed)
        if self._wants("lpips", keypoints is not None):
            self.lpips_values.append(self.lpips.distances(generated_signed, target_signed, self.batch_size))
        if self._wants("mask_lpips", keypoints is not None):
            self.mask_lpips_values.append(
                masked_lpips(self.lpips, generated_signed, target_signed, keypoints, self.batch_size))
        if self._wants("fid", keypoints is not None):
            self.generated_statistics.update(self.inception.features(generated, self.batch_size))
            if self.real is None:
                self.target_statistics.update(self.inception.features(target, self.batch_size))

    def result(self) -> Dict[str, float]:
        """Means of the per-image metrics, the FID and `examples` (the image count)."""
        if not self.images.count and not self.lpips_values and not self.generated_statistics.count:
            raise ValueError("metrics: no images were added")
        result: Dict[str, float] = {}
        if self.images.count:
            image_result = self.images.result()
            result.update({name: image_result[name] for name in IMAGE_METRICS
                           if self.requested is None or name in self.requested})
            result["examples"] = image_result["examples"]
        if self.lpips_values:
            values = np.concatenate(self.lpips_values)
            result["lpips"] = float(np.mean(values))
            result["examples"] = len(values)
        if self.mask_lpips_values:
            result["mask_lpips"] = float(np.mean(np.concatenate(self.mask_lpips_values)))
        if self.generated_statistics.count:
            real = self.real if self.real is not None else self.target_statistics.result()
            result["fid"] = fid_lib.frechet_distance(*self.generated_statistics.result(), *real)
            result["examples"] = self.generated_statistics.count
        return result


def compute_metrics(generated, target, keypoints=None, metrics: Optional[Sequence[str]] = None, lpips=None,
                    inception=None, real_stats=None, batch_size: int = 64, cache_dir=None) -> Dict[str, float]:
    """The papers' figures for generated vs target images.

    Args:
        generated, target: uint8 `[N, H, W, 3]`.
        keypoints: target keypoints `[N, 18, 2]` (y, x), -1 missing; enables Mask-LPIPS.
        metrics, lpips, inception, real_stats, cache_dir, batch_size: as `MetricSuite`.
    Returns:
        `{"l1", "psnr", "ssim", "lpips", "mask_lpips", "fid", "examples"}` (those computed).
    """
    suite = MetricSuite(metrics, lpips=lpips, inception=inception, real_stats=real_stats, cache_dir=cache_dir,
                        batch_size=batch_size)
    generated = _as_uint8_batch(generated, "generated")
    target = _as_uint8_batch(target, "target")
    if keypoints is not None:
        keypoints = np.asarray(keypoints)
    for start in range(0, len(generated), batch_size):
        rows = slice(start, start + batch_size)
        suite.update(generated[rows], target[rows], None if keypoints is None else keypoints[rows])
    return suite.result()
