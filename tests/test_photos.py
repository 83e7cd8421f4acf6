"""The shared photo reader: EXIF orientation applied, any mode to RGB, one clear error per bad file."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from tfrf import photos

ORIENTATION_TAG = 0x0112


def _upright():
    """An asymmetric 5x8 RGB image: no rotation or mirror of it equals another."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 8, 3), dtype=np.uint8)


# What a camera stores for each EXIF orientation, given the upright picture U (the inverse of
# what a viewer applies, from the EXIF 2.3 table: 2 mirrored left-right, 3 rotated 180 degrees,
# 4 mirrored top-bottom, 5 transposed, 6 needs 90 degrees clockwise to display, 7 transversed,
# 8 needs 90 degrees counter-clockwise).
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.transpose(1, 0, 2),
    6: lambda u: np.rot90(u, k=1),
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),
    8: lambda u: np.rot90(u, k=-1),
}


def _save_with_orientation(path, pixels, orientation, **options):
    image = Image.fromarray(np.ascontiguousarray(pixels))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    image.save(path, exif=exif.tobytes(), **options)


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_gives_the_upright_photo(tmp_path, orientation):
    upright = _upright()
    path = tmp_path / f"o{orientation}.png"
    _save_with_orientation(path, STORED[orientation](upright), orientation)
    with Image.open(path) as stored:  # the tag really is in the file, on rotated pixel data
        assert stored.getexif()[ORIENTATION_TAG] == orientation
    read = photos.read_photo(path)
    assert read.dtype == np.uint8 and read.shape == (5, 8, 3)
    np.testing.assert_array_equal(read, upright)


def test_portrait_jpeg_as_a_phone_writes_it(tmp_path):
    """Landscape pixel data + orientation 6: the reader returns the portrait picture."""
    upright = np.zeros((64, 48, 3), np.uint8)
    upright[:16, :, 0] = 255  # red band at the top of the portrait
    upright[:, :8, 2] = 255  # blue band on its left
    path = tmp_path / "IMG_0001.jpg"
    _save_with_orientation(path, np.rot90(upright, k=1), 6, quality=95)
    with Image.open(path) as stored:
        assert stored.size == (64, 48)  # stored as landscape (w x h)
    read = photos.read_photo(str(path))
    assert read.shape == (64, 48, 3)
    assert np.abs(read.astype(int) - upright).mean() < 4.0


def test_modes_become_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(photos.read_photo(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, -1))

    # 16-bit grey levels scale to 8 bits instead of clipping at 255.
    deep = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(photos.read_photo(tmp_path / "deep.png")[..., 0], [[0, 100], [255, 7]])

    # Transparency is composited over white: out = alpha * colour + (1 - alpha) * 255.
    rgba = np.array([[[200, 10, 30, 0], [200, 10, 30, 255], [200, 10, 30, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cutout.png")
    read = photos.read_photo(tmp_path / "cutout.png").astype(int)
    expected = np.rint(rgba[..., 3:] / 255.0 * rgba[..., :3] + (1 - rgba[..., 3:] / 255.0) * 255)
    np.testing.assert_allclose(read, expected, atol=1)

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette.save(tmp_path / "palette.gif")
    read = photos.read_photo(tmp_path / "palette.gif")
    np.testing.assert_array_equal(read[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(read[0, 1], [0, 0, 255])


def _jpeg_bytes():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_missing_file(tmp_path):
    missing = tmp_path / "holiday.jpg"
    with pytest.raises(FileNotFoundError, match=r"photo .*holiday\.jpg does not exist"):
        photos.read_photo(missing)


@pytest.mark.parametrize("name, content, message", [
    ("notes.jpg", b"these are not pixels\n" * 10, r"notes\.jpg is not an image"),
    ("empty.png", b"", r"empty\.png is not an image"),
    ("cut.jpg", "jpeg-half", r"cut\.jpg: the image data is truncated or corrupt"),
    ("cut.png", "png-half", r"cut\.png: the image data is truncated or corrupt"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, name, content, message):
    if content == "jpeg-half":
        data = _jpeg_bytes()
        content = data[: len(data) // 2]
    elif content == "png-half":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        content = buffer.getvalue()[: buffer.tell() // 2]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as raised:
        photos.read_photo(str(path))
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_a_directory_is_not_a_photo(tmp_path):
    folder = tmp_path / "album.jpg"
    os.makedirs(folder)
    with pytest.raises(ValueError, match=r"album\.jpg is a directory"):
        photos.read_photo(folder)


def test_as_photo_takes_paths_and_arrays(tmp_path):
    upright = _upright()
    Image.fromarray(upright).save(tmp_path / "a.png")
    np.testing.assert_array_equal(photos.as_photo(str(tmp_path / "a.png")), upright)
    np.testing.assert_array_equal(photos.as_photo(upright), upright)
    np.testing.assert_array_equal(photos.as_photo(upright[..., 0])[..., 2], upright[..., 0])
    with pytest.raises(ValueError, match=r"source 2 must be uint8 \[H, W, 3\] RGB, got float32 \(5, 8, 3\)"):
        photos.as_photo(upright.astype(np.float32), "source 2")
