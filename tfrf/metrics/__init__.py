"""The field's image-generation metrics (each module documents its definition and reference).

- `image`: L1, PSNR, SSIM per image on [-1, 1] images, and their running means.
- `lpips`: LPIPS v0.1 (AlexNet / VGG16) with torchvision and `lpips` weights.
- `inception`, `fid`: Inception v3 pool features in the pytorch-fid ("standard") and GFLA modes,
  the Fréchet distance, streaming statistics, `.npz` statistics and their content-keyed cache.
- `market_mask`: GFLA's Mask-LPIPS body mask for Market-1501.
- `suite`: every figure over a set of generated images (`compute_metrics`).
- `torch_weights`, `cache`: reading PyTorch state dicts without PyTorch; cached conversions.
"""
from tfrf.metrics.fid import (FeatureStatistics, fid_from_folders, frechet_distance, load_statistics,
                              real_statistics, save_statistics, statistics_of_images)
from tfrf.metrics.image import MAX_VALUE, METRICS, MetricAccumulator, image_metrics, l1, psnr, ssim
from tfrf.metrics.inception import FIDInception
from tfrf.metrics.lpips import LPIPS
from tfrf.metrics.market_mask import market_mask, masked_lpips
from tfrf.metrics.suite import ALL_METRICS, MetricSuite, compute_metrics

__all__ = [
    "ALL_METRICS", "FIDInception", "FeatureStatistics", "LPIPS", "MAX_VALUE", "METRICS", "MetricAccumulator",
    "MetricSuite", "compute_metrics", "fid_from_folders", "frechet_distance", "image_metrics", "l1",
    "load_statistics", "market_mask", "masked_lpips", "psnr", "real_statistics", "save_statistics", "ssim",
    "statistics_of_images",
]
