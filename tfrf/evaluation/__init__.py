"""Scoring trained models on held-out data: the library half of `tfrf evaluate`.

- `data`: the test split, its fixed test tuples per K, target keypoints; what a run trained on.
- `metric_networks`: which metrics to compute; the LPIPS and Inception networks with their weights.
- `render`: one model at one K: render, write the images, re-read and score; best/worst gallery.
- `tables`: the Markdown (papers' layout) and CSV tables.
- `protocols`: `--protocol gfla` / `pt176` (size, crop, resize) and the protocol card of metrics.json.
- `mechanism`: flow EPE, occlusion AUROC, attention agreement and coverage AUROC against the
  built-in chairs' ground truth.
- `report`: every model and K into one report folder, written atomically.
- `scores`: L1/PSNR/SSIM of a generator's float outputs in memory, and the nearest-view copy
  baseline (what `tfrf demo` prints).
"""
