"""Scoring trained models on held-out data: the library half of `tfrf evaluate`.

- `data`: the test split, its fixed test tuples per K, target keypoints; what a run trained on.
- `metric_networks`: which metrics to compute; the LPIPS and Inception networks with their weights.
- `render`: one model at one K: render, write the images, re-read and score; best/worst gallery.
- `tables`: the Markdown (papers' layout) and CSV tables.
- `report`: every model and K into one report folder, written atomically.
- `scores`: L1/PSNR/SSIM of a generator's float outputs in memory, and the nearest-view copy
  baseline (what `tfrf demo` prints).
"""
