"""Which metrics a report computes, and the LPIPS / Inception networks they need.

Metric names on the command line (`--metrics`): fid, lpips, mlpips (Mask-LPIPS), ssim, psnr, l1;
`tfrf.metrics.MetricSuite` calls Mask-LPIPS `mask_lpips`. Without `--metrics`: L1, PSNR, SSIM,
plus LPIPS (and Mask-LPIPS on keypoint data) when LPIPS weights are given, plus FID when Inception
weights are given.

Weights never download. LPIPS (AlexNet, v0.1, the figure GFLA and the residual-flow paper report)
reads a folder holding torchvision's AlexNet (`alexnet-owt-7be5be79.pth` or the same state dict as
`.npz`) and the `lpips` package's lin layers (`alex.pth` or `alex.npz`); FID reads pytorch-fid's
Inception (`--fid-mode standard`, `pt_inception-2015-12-05-6726825d.pth`) or torchvision's
(`--fid-mode gfla`, `inception_v3_google-0cc3c7bd.pth`), as `.pth`, `.npz` or a converted
`.weights.h5`. A requested metric whose weights are missing is a FileNotFoundError / ValueError
naming the file and where it comes from. `random_weights=True` builds both networks with seeded
random weights: for tests only (the figures mean nothing).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

CLI_METRICS = {"fid": "fid", "lpips": "lpips", "mlpips": "mask_lpips", "ssim": "ssim", "psnr": "psnr", "l1": "l1"}
IMAGE_METRICS = ("l1", "psnr", "ssim")
RANDOM_SEED = 0

LPIPS_BACKBONE = "alexnet-owt-7be5be79"
LPIPS_LIN = "alex"
WEIGHT_SUFFIXES = (".pth", ".npz")
LPIPS_BACKBONE_SOURCE = ("torchvision's ImageNet AlexNet: torchvision.models.alexnet(weights='IMAGENET1K_V1') "
                         "saves it in ~/.cache/torch/hub/checkpoints/")
LPIPS_LIN_SOURCE = "the lpips package (pip install lpips): lpips/weights/v0.1/alex.pth"
INCEPTION_FILES = {"standard": "pt_inception-2015-12-05-6726825d.pth", "gfla": "inception_v3_google-0cc3c7bd.pth"}
INCEPTION_SOURCES = {
    "standard": "the pytorch-fid release 'fid_weights' on GitHub (mseitzer/pytorch-fid)",
    "gfla": "torchvision's ImageNet Inception v3: torchvision.models.inception_v3(weights='IMAGENET1K_V1') saves it "
            "in ~/.cache/torch/hub/checkpoints/",
}


def _find(folder: str, stem: str) -> Optional[str]:
    for suffix in WEIGHT_SUFFIXES:
        path = os.path.join(folder, stem + suffix)
        if os.path.isfile(path):
            return path
    return None


def lpips_weight_files(folder: str) -> Tuple[str, str]:
    """(backbone, lin) weight files in `folder`.

    Raises:
        FileNotFoundError: the folder or one of the files is missing (named, with its source).
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--lpips-weights {folder} is not a folder; it should hold {LPIPS_BACKBONE}.pth "
                                f"({LPIPS_BACKBONE_SOURCE}) and {LPIPS_LIN}.pth ({LPIPS_LIN_SOURCE})")
    backbone = _find(folder, LPIPS_BACKBONE)
    if backbone is None:
        raise FileNotFoundError(f"LPIPS needs {os.path.join(folder, LPIPS_BACKBONE)}.pth (or .npz), "
                                f"from {LPIPS_BACKBONE_SOURCE}")
    lin = _find(folder, LPIPS_LIN)
    if lin is None:
        raise FileNotFoundError(f"LPIPS needs {os.path.join(folder, LPIPS_LIN)}.pth (or .npz), from {LPIPS_LIN_SOURCE}")
    return backbone, lin


def check_inception_file(path: str, mode: str) -> str:
    """`path` if it is a file, else a FileNotFoundError naming it and where the weights come from."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--inception-weights {path} does not exist; FID ({mode}) needs "
                                f"{INCEPTION_FILES[mode]} from {INCEPTION_SOURCES[mode]}")
    return path


def select_metrics(requested: Optional[Sequence[str]], *, lpips_available: bool, inception_available: bool,
                   has_keypoints: bool, fid_mode: str = "standard") -> Tuple[List[str], List[str]]:
    """(MetricSuite names to compute, notes on what was left out).

    Args:
        requested: `--metrics` names (CLI_METRICS keys), or None for the default set.
        lpips_available, inception_available: whether their weights were given (or random).
        has_keypoints: the data has keypoint poses (Mask-LPIPS applies).

    Raises:
        ValueError: an unknown name, or LPIPS / FID asked for without their weights.
    """
    notes: List[str] = []
    if requested is None:
        chosen = list(IMAGE_METRICS)
        if lpips_available:
            chosen.append("lpips")
            if has_keypoints:
                chosen.append("mask_lpips")
        if inception_available:
            chosen.append("fid")
        return chosen, notes
    chosen = []
    for name in requested:
        if name not in CLI_METRICS:
            raise ValueError(f"--metrics: unknown metric {name!r}; choose from {sorted(CLI_METRICS)}")
        if CLI_METRICS[name] not in chosen:
            chosen.append(CLI_METRICS[name])
    if ("lpips" in chosen or "mask_lpips" in chosen) and not lpips_available:
        raise ValueError(f"--metrics lpips/mlpips need --lpips-weights DIR holding {LPIPS_BACKBONE}.pth "
                         f"({LPIPS_BACKBONE_SOURCE}) and {LPIPS_LIN}.pth ({LPIPS_LIN_SOURCE})")
    if "fid" in chosen and not inception_available:
        raise ValueError(f"--metrics fid needs --inception-weights F: {INCEPTION_FILES[fid_mode]} from "
                         f"{INCEPTION_SOURCES[fid_mode]}")
    if "mask_lpips" in chosen and not has_keypoints:
        chosen.remove("mask_lpips")
        notes.append("mlpips does not apply: Mask-LPIPS needs the target keypoints of keypoint-pose data "
                     "(keypoints18); this data has none")
    return chosen, notes


def build_metric_networks(metrics: Sequence[str], *, lpips_weights: Optional[str] = None,
                          inception_weights: Optional[str] = None, fid_mode: str = "standard",
                          inception_input_size: int = 299, random_weights: bool = False,
                          cache_dir=None) -> Dict[str, object]:
    """`{"lpips": LPIPS or None, "inception": FIDInception or None}` for the chosen metrics.

    Args:
        metrics: MetricSuite names (from `select_metrics`).
        lpips_weights: the folder of `lpips_weight_files`.
        inception_weights: `.pth`, `.npz` or `.weights.h5` of the Inception of `fid_mode`.
        fid_mode: "standard" (pytorch-fid) or "gfla" (GFLA's script).
        inception_input_size: 299 defines FID; smaller (>= 75) only for tests.
        random_weights: seeded random weights for both (tests only).
        cache_dir: cache of converted weights (`tfrf.metrics.cache`).
    """
    from tfrf.metrics import LPIPS, FIDInception

    networks: Dict[str, object] = {"lpips": None, "inception": None}
    if random_weights:
        import tensorflow as tf

        tf.keras.utils.set_random_seed(RANDOM_SEED)
    if "lpips" in metrics or "mask_lpips" in metrics:
        lpips = LPIPS("alex", cache_dir=cache_dir)
        if not random_weights:
            lpips.load_torch_weights(*lpips_weight_files(lpips_weights))
        networks["lpips"] = lpips
    if "fid" in metrics:
        inception = FIDInception(fid_mode, cache_dir=cache_dir, input_size=inception_input_size)
        if not random_weights:
            inception.load(check_inception_file(inception_weights, fid_mode))
        networks["inception"] = inception
    return networks


def real_statistics(real_stats: str, inception, fid_mode: str, cache_dir=None):
    """FID's reference statistics: an `.npz` with mu and sigma, or those of a folder of real
    images (cached under a key of its content). GFLA's script used whole batches of 64 only.

    Raises:
        ValueError: `fid_mode="gfla"` with fewer than 64 images.
    """
    from tfrf.metrics import fid

    if real_stats.lower().endswith(".npz"):
        return fid.load_statistics(real_stats)
    gfla = fid_mode == "gfla"
    count = len(fid.image_files(real_stats))
    if gfla and count < 64:
        raise ValueError(f"--real-stats {real_stats} holds {count} images: GFLA's FID uses whole batches of 64 only "
                         "(use --fid-mode standard for a smaller set)")
    return fid.real_statistics(real_stats, inception, cache_dir, drop_remainder=gfla)
