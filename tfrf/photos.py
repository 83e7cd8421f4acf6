"""The one reader of user photos: every command that takes a photo reads it here.

    image = read_photo("IMG_0042.jpg")  # uint8 [H, W, 3] RGB, upright

Phones store a portrait photo as landscape pixel data plus an EXIF orientation tag (6 or 8);
viewers rotate it, and so does `read_photo` (`PIL.ImageOps.exif_transpose`), so keypoints and
generated images refer to the photo as its owner sees it. Grey-level, palette and CMYK photos
become RGB; a transparent background (RGBA, LA, palette transparency) is composited over white,
the background of the pose-transfer datasets. A missing file raises `FileNotFoundError`; a file
that is not an image, or whose data is truncated or corrupt, raises a `ValueError`; both name the
file in one line.

`as_photo` takes either a path or an array, so library functions accept both.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np

PhotoLike = Union[str, os.PathLike, np.ndarray]
WHITE = (255, 255, 255)


def _to_rgb(image, path: str):
    """A Pillow image in any mode -> an RGB Pillow image (alpha over white, 16-bit scaled)."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # convert("RGB") would clip 16-bit grey levels at 255: scale them instead (Pillow opens a
        # 16-bit PNG as "I;16" or, in older versions, "I").
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, WHITE + (255,))
        return Image.alpha_composite(background, image).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ValueError(f"{path}: cannot convert its image mode {image.mode!r} to RGB ({error})") from None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _upright(image):
    """Applies the EXIF orientation tag (1-8), if any; an unreadable EXIF block is ignored, as
    viewers ignore it."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF: show the pixels as stored
        return image


def read_photo(path: Union[str, os.PathLike]) -> np.ndarray:
    """Reads a user's photo: uint8 [H, W, 3] RGB with its EXIF orientation applied.

    Args:
        path: any format Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF: the first frame).

    Returns:
        uint8 [H, W, 3], H x W as the photo is displayed (after the EXIF rotation).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is a directory, not an image, or its data is truncated or corrupt.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"photo {path} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"photo {path} is a directory, not an image file")
    try:
        opened = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image (Pillow cannot identify its format)") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refused, too many pixels ({error})") from None
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: the image header is corrupt ({_first_line(error)})") from None
    with opened:
        try:
            opened.load()  # decodes now, so that truncated data fails here
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ValueError(f"{path}: the image data is truncated or corrupt ({_first_line(error)})") from None
        array = np.array(_to_rgb(_upright(opened), path), dtype=np.uint8)
    if array.ndim != 3 or array.shape[-1] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"{path}: expected an RGB image, got pixel array of shape {array.shape}")
    return array


def as_photo(image: PhotoLike, name: str = "image") -> np.ndarray:
    """A path (read with `read_photo`) or an array -> uint8 [H, W, 3] RGB.

    Arrays must already be uint8 RGB [H, W, 3] (grey [H, W] is repeated over three channels).

    Raises:
        ValueError naming `name` and the shape or dtype when an array is not an RGB image.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_photo(image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
        raise ValueError(f"{name} must be uint8 [H, W, 3] RGB, got {array.dtype} {array.shape}")
    return array
