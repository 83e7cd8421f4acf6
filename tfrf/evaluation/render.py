"""One model at one K over the fixed test tuples: render batch by batch, write, re-read, score.

Every generated image is written to disk and the metrics are computed on what is read back, so
the figures are those of the files a user can look at (and score with other tools):

- PNG (default): `[-1, 1]` outputs rounded to uint8 (`tfrf.visualize.to_uint8`), lossless.
- JPEG (`jpeg=True`): as GFLA stored its outputs (`util.tensor2im`: `(x + 1) / 2 * 255` truncated
  to uint8, then PIL's default JPEG quality 75); the JPEG's decoded pixels are scored.

Targets are the test images at the model's size, rounded to uint8 (the stored bytes when no
resize happens). Files: `IMAGE_DIR/{row:05d}.png|jpg`, row = the row of the tuple list.
"""
from __future__ import annotations

import io
import math
import os
from typing import Dict

import numpy as np

from tfrf.inference import prediction_function
from tfrf.visualize import to_uint8

GALLERY_SCALE = 2


def truncate_to_uint8(images: np.ndarray) -> np.ndarray:
    """GFLA's `tensor2im`: `[-1, 1]` floats -> `((x + 1) / 2 * 255)` truncated toward zero, uint8."""
    values = (np.asarray(images, np.float32) + 1.0) / 2.0 * 255.0
    return np.clip(values, 0, 255).astype(np.uint8)


def encode_image(image: np.ndarray, jpeg: bool) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG" if jpeg else "PNG")  # JPEG: PIL's quality 75, as GFLA
    return buffer.getvalue()


def read_image(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB"))


def image_path(image_dir: str, row: int, jpeg: bool) -> str:
    return os.path.join(image_dir, f"{row:05d}.{'jpg' if jpeg else 'png'}")


def _padded(tensor, rows: int):
    """`tensor` with its last row repeated up to `rows` rows."""
    import tensorflow as tf

    missing = rows - int(tensor.shape[0])
    if missing <= 0:
        return tensor
    return tf.concat([tensor, tf.repeat(tensor[-1:], missing, axis=0)], axis=0)


def render_and_score(generator, data, k: int, tuples: np.ndarray, image_dir: str, suite, *, batch_size: int = 16,
                     jpeg: bool = False, mask_keypoints: bool = False, progress: bool = True,
                     description: str = "", protocol=None) -> np.ndarray:
    """Render `tuples` with `generator`, write the images, score the re-read files into `suite`.

    Args:
        generator: a built generator (its `config.image_size` is the evaluated size).
        data: a `tfrf.evaluation.data.EvaluationData`.
        k: number of sources; `tuples` is int `[M, K+1]` (sources then target).
        image_dir: the folder the images go to (created).
        suite: a `tfrf.metrics.MetricSuite`, updated batch by batch.
        batch_size: examples per generator call.
        jpeg: store JPEG as GFLA did instead of PNG.
        mask_keypoints: pass the target keypoints (Mask-LPIPS).
        progress: a tqdm progress bar over batches.
        description: the progress bar's label.
        protocol: a `tfrf.evaluation.protocols.Protocol` whose resize and crop the generated and
            target images get before they are written and scored (None: as they are).

    Returns:
        float64 `[M]`: the L1 of each re-read image against its target, in [-1, 1] units.
    """
    from tqdm import tqdm

    from tfrf.data.pipeline import make_dataset
    from tfrf.models.generator import INPUT_KEYS

    size = tuple(generator.config.image_size)
    os.makedirs(image_dir, exist_ok=True)
    batch_size = min(batch_size, len(tuples))
    dataset = make_dataset(data.table, k, batch_size=batch_size, training=False, tuples=tuples, image_size=size)
    predict = prediction_function(generator, batch_size, k)
    quantize = truncate_to_uint8 if jpeg else to_uint8
    errors = []
    row = 0
    batches = tqdm(dataset, total=math.ceil(len(tuples) / batch_size), desc=description, unit="batch",
                   disable=not progress, leave=False)
    for batch in batches:
        count = int(batch["target_image"].shape[0])
        inputs = {key: _padded(batch[key], batch_size) for key in INPUT_KEYS}
        generated = quantize(predict(inputs).numpy()[:count])
        if protocol is not None:
            generated = protocol.apply(generated)
        reread = []
        for offset, image in enumerate(generated):
            path = image_path(image_dir, row + offset, jpeg)
            with open(path, "wb") as stream:  # inside the report's temporary folder (renamed at the end)
                stream.write(encode_image(image, jpeg))
            reread.append(read_image(path))
        reread = np.stack(reread)
        target = to_uint8(batch["target_image"].numpy())
        if protocol is not None:
            target = protocol.apply(target)
        keypoints = data.target_keypoints(tuples[row:row + count, -1], size) if mask_keypoints else None
        suite.update(reread, target, keypoints)
        errors.append(np.abs(reread.astype(np.float64) - target.astype(np.float64)).mean(axis=(1, 2, 3)) / 127.5)
        row += count
    return np.concatenate(errors) if errors else np.zeros([0])


def _label_band(text: str, width: int, height: int = 16) -> np.ndarray:
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, height), (235, 235, 235))
    ImageDraw.Draw(band).text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(band)


def best_and_worst(errors: np.ndarray, rows: int) -> Dict[str, np.ndarray]:
    """Rows of the `rows` lowest L1 (best first) and of the `rows` highest (worst first); ties
    keep the earlier row first."""
    errors = np.asarray(errors, np.float64)
    return {"best": np.argsort(errors, kind="stable")[:rows], "worst": np.argsort(-errors, kind="stable")[:rows]}


def _to_model_size(images: np.ndarray, size) -> np.ndarray:
    """Scored images of another size (a protocol's crop), for display next to the model-size
    inputs: padded back to square with white and resized (bilinear)."""
    import tensorflow as tf

    if images.shape[1:3] == tuple(size):
        return images
    missing = max(0, images.shape[1] - images.shape[2])
    padded = np.pad(images, ((0, 0), (0, 0), (missing // 2, missing - missing // 2), (0, 0)), constant_values=255)
    return np.clip(np.round(tf.image.resize(padded.astype(np.float32), size).numpy()), 0, 255).astype(np.uint8)


def gallery(generator_config, data, k: int, tuples: np.ndarray, image_dir: str, errors: np.ndarray,
            rows: int = 4, jpeg: bool = False) -> np.ndarray:
    """The best and the worst cases by L1: uint8 `[H', W', 3]`, two blocks of
    sources | target pose | generated | ground truth rows (`tfrf.visualize.gallery`)."""
    from tfrf import visualize
    from tfrf.data.pipeline import make_dataset

    picks = best_and_worst(errors, rows)
    blocks = []
    for label, chosen in (("best", picks["best"]), ("worst", picks["worst"])):
        dataset = make_dataset(data.table, k, batch_size=len(chosen), training=False, tuples=tuples[chosen],
                               image_size=generator_config.image_size)
        examples = {key: value.numpy() for key, value in next(iter(dataset)).items()}
        generated = np.stack([read_image(image_path(image_dir, int(row), jpeg)) for row in chosen])
        generated = _to_model_size(generated, tuple(generator_config.image_size))
        figure = visualize.gallery(examples, generated.astype(np.float32) / 127.5 - 1.0, max_rows=rows,
                                   scale=GALLERY_SCALE)
        text = f"{label} {len(chosen)} by L1: " + ", ".join(f"#{int(row)} ({errors[row]:.3f})" for row in chosen)
        blocks += [_label_band(text, figure.shape[1]), figure]
    width = max(block.shape[1] for block in blocks)
    padded = [np.pad(block, ((0, 0), (0, width - block.shape[1]), (0, 0)), constant_values=255) for block in blocks]
    return np.concatenate(padded, axis=0)
