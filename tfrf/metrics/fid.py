"""Fréchet Inception distance (Heusel et al., NeurIPS 2017, "GANs trained by a two time-scale
update rule"): `||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))` between Gaussians fitted to the
Inception pool features of two image sets.

- `frechet_distance` in float64 with the trace of the matrix root taken as `sum_i sqrt(lambda_i)`
  over the eigenvalues of `S1 S2` (agrees with `scipy.linalg.sqrtm` to 1e-5, needs no SciPy).
  As TTUR: when the root is not finite, 1e-6 is added to both diagonals; an imaginary part above
  1e-3 (a square root of an eigenvalue below -1e-6, far beyond rounding) is refused.
- `FeatureStatistics` accumulates the mean and covariance in float64 from batches (sum and sum of
  outer products about a fixed shift): memory `O(D^2)`, independent of the image count.
- Statistics files are `.npz` with `mu` and `sigma` (the TTUR / pytorch-fid format).
- `real_statistics` caches a real set's statistics under a key of the set's content (file names,
  sizes and modification times, or the array bytes) plus the Inception mode and weights, so a
  changed folder never reuses stale statistics.
"""
from __future__ import annotations

import hashlib
import io
import os
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from tfrf import io as tfrf_io
from tfrf.metrics import cache

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DIAGONAL_OFFSET = 1e-6
IMAGINARY_TOLERANCE = 1e-3
Statistics = Tuple[np.ndarray, np.ndarray]


def _check_statistics(mu, sigma, name: str) -> Statistics:
    mu = np.atleast_1d(np.asarray(mu, np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, np.float64))
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"FID statistics ({name}) need mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    return mu, sigma


def _sqrt_eigenvalues(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """`sqrt(lambda_i(S1 S2))` (complex `[D]`; their sum is `Tr((S1 S2)^(1/2))`), NaN when the
    product is not finite."""
    product = sigma1 @ sigma2
    if not np.isfinite(product).all():
        return np.full(len(product), np.nan, np.complex128)
    try:
        eigenvalues = np.linalg.eigvals(product).astype(np.complex128)
    except np.linalg.LinAlgError:
        return np.full(len(product), np.nan, np.complex128)
    return np.sqrt(eigenvalues)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    Args:
        mu1, mu2: means `[D]`.
        sigma1, sigma2: covariances `[D, D]` (may be singular: fewer images than dimensions).
    Raises:
        ValueError: shapes disagree, the statistics are not finite, or the root has an imaginary
            part above 1e-3.
    """
    mu1, sigma1 = _check_statistics(mu1, sigma1, "the first set")
    mu2, sigma2 = _check_statistics(mu2, sigma2, "the second set")
    if mu1.shape != mu2.shape:
        raise ValueError(f"frechet_distance: feature dimensions differ: {mu1.shape[0]} and {mu2.shape[0]}")
    roots = _sqrt_eigenvalues(sigma1, sigma2)
    if not np.isfinite(roots).all():
        offset = np.eye(sigma1.shape[0]) * DIAGONAL_OFFSET
        roots = _sqrt_eigenvalues(sigma1 + offset, sigma2 + offset)
        if not np.isfinite(roots).all():
            raise ValueError("frechet_distance: the covariances give a non-finite product (NaN, inf or overflow "
                             "in the statistics)")
    imaginary = float(np.max(np.abs(roots.imag))) if len(roots) else 0.0
    if imaginary > IMAGINARY_TOLERANCE:
        raise ValueError(f"frechet_distance: the matrix root has an imaginary component {imaginary:.3g}")
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.sum(roots.real))


class FeatureStatistics:
    """Streaming mean and covariance of feature rows, in float64.

    Keeps the count, the sum and the sum of outer products of `x - shift` (the first batch's
    mean, which keeps the cancellation in `S - n m m^T` small). `result()` equals
    `(x.mean(0), np.cov(x, rowvar=False))` over every row added.
    """

    def __init__(self, dimension: Optional[int] = None):
        self.dimension = dimension
        self.count = 0
        self._shift = None
        self._sum = None
        self._outer = None

    def update(self, features) -> None:
        """Add rows `[n, D]`."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or (self.dimension is not None and features.shape[1] != self.dimension):
            expected = f"[n, {self.dimension}]" if self.dimension else "[n, D]"
            raise ValueError(f"FeatureStatistics: features must be {expected}, got shape {features.shape}")
        if not len(features):
            return
        if self._shift is None:
            self.dimension = features.shape[1]
            self._shift = features.mean(axis=0)
            self._sum = np.zeros(self.dimension)
            self._outer = np.zeros((self.dimension, self.dimension))
        centred = features - self._shift
        self.count += len(features)
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred

    def result(self) -> Statistics:
        """`(mu [D], sigma [D, D])`, the covariance with the unbiased `n - 1` (as `np.cov`)."""
        if self.count < 2:
            raise ValueError(f"FeatureStatistics: a covariance needs at least 2 images, got {self.count}")
        mean = self._sum / self.count
        sigma = (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return self._shift + mean, sigma


def save_statistics(path: str, mu, sigma) -> None:
    """Write `.npz` with `mu` and `sigma` atomically (the TTUR / pytorch-fid format)."""
    mu, sigma = _check_statistics(mu, sigma, path)

    def write(stream):
        buffer = io.BytesIO()
        np.savez(buffer, mu=mu, sigma=sigma)
        stream.write(buffer.getvalue())

    tfrf_io.atomic_write(os.fspath(path), write)


def load_statistics(path: str) -> Statistics:
    """`(mu, sigma)` from an `.npz` written by `save_statistics`, TTUR or pytorch-fid."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FID statistics file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "mu" not in archive.files or "sigma" not in archive.files:
                raise ValueError(f"FID statistics file {path} must hold arrays 'mu' and 'sigma', has {archive.files}")
            return _check_statistics(archive["mu"], archive["sigma"], path)
    except (OSError, EOFError) as error:  # np.load on something that is not an .npz
        raise ValueError(f"FID statistics file {path} is not a readable .npz: {error}") from error


def image_files(folder: str) -> List[str]:
    """Sorted image paths directly inside `folder` (png, jpg, jpeg, bmp, webp)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."))
    if not files:
        raise ValueError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: str) -> np.ndarray:
    """uint8 RGB `[H, W, 3]`."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert("RGB"))
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def image_batches(images: Union[str, Sequence[str], np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """uint8 `[n, H, W, 3]` batches of a folder, a list of paths or an array; a batch never mixes
    image sizes (a size change closes it early)."""
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
        return
    paths = image_files(images) if isinstance(images, (str, os.PathLike)) else list(images)
    batch: List[np.ndarray] = []
    for path in paths:
        image = read_image(path)
        if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
            yield np.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield np.stack(batch)


def statistics_of_images(images, inception, batch_size: int = 64, drop_remainder: bool = False) -> Statistics:
    """FID statistics of a folder, a list of image paths or uint8 `[N, H, W, 3]`.

    `drop_remainder=True` uses only `N - N % batch_size` images, as GFLA's script did (it dropped
    the last partial batch of 64); the default uses every image.
    """
    if drop_remainder and not isinstance(images, np.ndarray):
        paths = image_files(images) if isinstance(images, (str, os.PathLike)) else list(images)
        images = paths[:len(paths) - len(paths) % batch_size]
    elif drop_remainder:
        images = images[:len(images) - len(images) % batch_size]
    statistics = FeatureStatistics()
    for batch in image_batches(images, batch_size):
        statistics.update(inception.features(batch, batch_size=batch_size))
    return statistics.result()


def set_key(images, inception, drop_remainder: bool = False, batch_size: int = 64) -> str:
    """Content key of an image set for `inception`: file names, sizes and modification times (or
    the array's bytes), the Inception mode and its weights."""
    # The batch size changes the statistics only when the last partial batch is dropped.
    parts = [getattr(inception, "mode", ""), inception.fingerprint(), f"drop={batch_size if drop_remainder else 0}"]
    if isinstance(images, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
        parts.append(f"array|{images.dtype.str}|{images.shape}|{digest}")
    else:
        paths = image_files(images) if isinstance(images, (str, os.PathLike)) else list(images)
        for path in paths:
            stat = os.stat(path)
            parts.append(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}")
    return cache.content_key(*parts)


def real_statistics(folder_or_images, inception, cache_dir: cache.CacheDir = None, batch_size: int = 64,
                    drop_remainder: bool = False) -> Statistics:
    """FID statistics of the real set, cached as `.npz` under a key of its content.

    Args:
        folder_or_images: an image folder, a list of image paths, or uint8 `[N, H, W, 3]`.
        inception: a `FIDInception` (its mode and weights enter the key).
        cache_dir: cache directory (None: the default, False: no cache; `tfrf.metrics.cache`).
        batch_size: Inception batch.
        drop_remainder: use only whole batches, as GFLA's script did.
    Returns:
        `(mu [2048], sigma [2048, 2048])`, float64.
    """
    directory = cache.resolve_cache_dir(cache_dir)
    path = None
    if directory:
        key = set_key(folder_or_images, inception, drop_remainder, batch_size)
        path = os.path.join(directory, f"fid-{getattr(inception, 'mode', 'custom')}-{key}.npz")
        if os.path.isfile(path):
            return load_statistics(path)
    mu, sigma = statistics_of_images(folder_or_images, inception, batch_size, drop_remainder)
    if path:
        save_statistics(path, mu, sigma)
    return mu, sigma


def resolve_statistics(real, inception, cache_dir: cache.CacheDir = None, batch_size: int = 64) -> Statistics:
    """`(mu, sigma)` from a `(mu, sigma)` pair, an `.npz` statistics file, an image folder, a list
    of image paths or uint8 images (the last three through `real_statistics`)."""
    if isinstance(real, tuple) and len(real) == 2 and not isinstance(real[0], (str, os.PathLike)):
        return _check_statistics(real[0], real[1], "real statistics")
    if isinstance(real, (str, os.PathLike)) and os.fspath(real).lower().endswith(".npz"):
        return load_statistics(real)
    return real_statistics(real, inception, cache_dir, batch_size)


def fid_from_folders(generated_dir, real_dir_or_stats, inception=None, mode: str = "standard", weights=None,
                     cache_dir: cache.CacheDir = None, batch_size: int = 64) -> float:
    """FID between a folder of generated images and a real folder (or its `.npz` statistics).

    Args:
        generated_dir: folder of generated images (or a list of paths, or uint8 images).
        real_dir_or_stats: real image folder, `.npz` statistics, or a `(mu, sigma)` pair.
        inception: a `FIDInception`; if None, one is built with `mode` and `weights`.
        mode, weights: for building the Inception (weights: `.pth`/`.npz`/`.weights.h5`).
        cache_dir: cache of converted weights and real statistics.
        batch_size: Inception batch.
    """
    if inception is None:
        from tfrf.metrics.inception import FIDInception

        if weights is None:
            raise ValueError("fid_from_folders: pass `inception` or Inception `weights` (.pth, .npz or "
                             ".weights.h5); random weights give a meaningless FID")
        inception = FIDInception(mode, cache_dir=cache_dir)
        inception.load(weights)
    real = resolve_statistics(real_dir_or_stats, inception, cache_dir, batch_size)
    generated = statistics_of_images(generated_dir, inception, batch_size)
    return frechet_distance(*generated, *real)
