"""Scoring trained models on held-out data: the library half of `tfrf evaluate`.

- `data`: the test split, its fixed test tuples per K, target keypoints; what a run trained on.
- `metric_networks`: which metrics to compute; the LPIPS and Inception networks with their weights.
- `render`: one model at one K: render, write the images, re-read and score; best/worst gallery.
- `tables`: the Markdown (papers' layout) and CSV tables.
- `report`: every model and K into one report folder, written atomically.

The held-out L1/PSNR/SSIM evaluation used during training and by `tfrf demo` (with the
nearest-view baseline) is `tfrf.training.evaluate`.
"""
