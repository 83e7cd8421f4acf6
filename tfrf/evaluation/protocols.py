"""Evaluation protocols (`tfrf evaluate --protocol`) and the protocol card of every metrics.json.

The same model moves FID by 0.7-1.5 with the resize kernel, the file format, the crop and the
real set, so a report says which it used (docs/metrics.md, "Protocols"):

- `gfla` (default; GFLA's 256 x 256 protocol, what tfrf always did): the whole frame at the
  model's size (256 x 256 for DeepFashion), no crop, no resize of the outputs. GFLA's own script
  also stored JPEG (`--jpeg`) and used torchvision's Inception (`--fid-mode gfla`); the card
  records what the run used.
- `pt176` (PATN / PISE / NTED / PIDM / CFLD): the output is brought to 256 x 256 (bicubic, PIL,
  only when the model runs at another size) and its 176-wide centre crop (columns 40 ... 215)
  is stored as PNG and scored; targets get the same crop; FID's real statistics should be those
  of the training set's 256 x 176 images (`--real-stats`). Mask-LPIPS does not apply.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional

import numpy as np

PT176_SIZE = (256, 256)
PT176_CROP_WIDTH = 176


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How generated and target images are shaped before scoring.

    Attributes:
        name: `--protocol` name.
        size: (H, W) the outputs are resized to first (None: the model's size).
        crop_width: width of the centre crop after that (None: the whole frame).
        resize_kernel: the kernel of that resize.
        image_format: the only file format the protocol stores (None: PNG or `--jpeg`).
        real_set: what the FID reference should be.
    """

    name: str
    size: Optional[tuple] = None
    crop_width: Optional[int] = None
    resize_kernel: str = "none"
    image_format: Optional[str] = None
    real_set: str = "the training set's images at the model's size (--real-stats)"

    def scored_size(self, model_size) -> tuple:
        height, width = self.size or tuple(model_size)
        return (height, self.crop_width or width)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """uint8 `[N, H, W, 3]` -> what the protocol scores (`prepare`)."""
        return prepare(images, self.size, self.crop_width)


PROTOCOLS = {
    "gfla": Protocol("gfla"),
    "pt176": Protocol("pt176", size=PT176_SIZE, crop_width=PT176_CROP_WIDTH, resize_kernel="bicubic (PIL)",
                      image_format="PNG", real_set="the training set's 256 x 176 images (--real-stats)"),
}


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def centre_crop(images: np.ndarray, width: int) -> np.ndarray:
    """The `width`-wide centre columns of `[N, H, W, C]` (left offset (W - width) // 2)."""
    total = images.shape[2]
    if width > total:
        raise ValueError(f"cannot crop {width} columns out of {total}")
    left = (total - width) // 2
    return images[:, :, left:left + width]


def resize_bicubic(images: np.ndarray, size) -> np.ndarray:
    """uint8 `[N, H, W, 3]` to `size` = (H', W') with PIL's bicubic filter (unchanged if already)."""
    from PIL import Image

    height, width = size
    if images.shape[1:3] == (height, width):
        return images
    return np.stack([np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC)) for image in images])


def prepare(images: np.ndarray, size=None, crop_width: Optional[int] = None) -> np.ndarray:
    """Resize uint8 images to `size` (bicubic; None: keep) then take the `crop_width` centre crop."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"protocol: images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if size is not None:
        images = resize_bicubic(images, size)
    if crop_width is not None:
        images = centre_crop(images, crop_width)
    return images


def real_set_description(real_stats: Optional[str], scored_targets: Dict[str, int]) -> Dict[str, Any]:
    """Number and origin of the FID reference images."""
    if real_stats is None:
        return {"origin": "the targets scored at each K", "count": dict(scored_targets)}
    if os.path.isdir(real_stats):
        from tfrf.metrics import fid

        return {"origin": f"folder {os.path.abspath(real_stats)}", "count": len(fid.image_files(real_stats))}
    return {"origin": f"statistics file {os.path.abspath(real_stats)} (mu, sigma)", "count": None}


def card(protocol: Protocol, *, model_size, stored_size, jpeg: bool, metrics, fid_mode: str,
         inception_input_size: Optional[int], real_stats: Optional[str], scored_targets: Dict[str, int],
         real_image_format: str = "the prepared data's stored images") -> Dict[str, Any]:
    """The protocol card of a report: everything that moves the figures."""
    from tfrf.evaluation.metric_networks import INCEPTION_FILES

    height, width = protocol.scored_size(model_size)
    crop = (f"{protocol.crop_width}-wide centre crop of the {protocol.size[0]} x {protocol.size[1]} output"
            if protocol.crop_width else "none (whole frame)")
    generated = protocol.image_format or ("JPEG quality 75 after uint8 truncation (GFLA)" if jpeg
                                          else "PNG (rounded to uint8)")
    return {
        "protocol": protocol.name,
        "image_size": [int(height), int(width)],
        "crop": crop,
        "resize": {"data_to_model": (f"bilinear, antialiased (tf.image.resize) from {list(stored_size)} to "
                                     f"{list(model_size)}" if tuple(stored_size) != tuple(model_size) else "none"),
                   "output": protocol.resize_kernel if protocol.size and tuple(protocol.size) != tuple(model_size)
                   else "none",
                   "inception": "bilinear to 299 x 299, half-pixel centres, no antialiasing"},
        "generated_format": generated,
        "target_format": f"{real_image_format}, at the scored size, never re-encoded",
        "real_set": {**real_set_description(real_stats, scored_targets), "expected": protocol.real_set}
        if "fid" in metrics else None,
        "inception": {"fid_mode": fid_mode, "weights": INCEPTION_FILES[fid_mode],
                      "input_size": inception_input_size} if "fid" in metrics else None,
        "lpips": {"version": "0.1", "net": "alex"} if ("lpips" in metrics or "mask_lpips" in metrics) else None,
        "ssim": {"window": "11x11 Gaussian, sigma 1.5", "k1": 0.01, "k2": 0.03, "max_val": 2.0},
    }
