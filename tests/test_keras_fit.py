"""The README's plain-Keras training block runs as written (tiny width, the Market-1501 builder's
dummy data, random VGG weights, one step an epoch): compile + fit under a strategy with Keras's
BackupAndRestore, ModelCheckpoint and TensorBoard callbacks."""
import os
import re

import pytest
import tensorflow_datasets as tfds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_block():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Training in a plain Keras script"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_keras_fit_block_runs(tmp_path):
    import tfrf.datasets

    data_dir = str(tmp_path / "data")
    builder = tfrf.datasets.Market1501(data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.path.join(ROOT, "datasets", "market1501", "dummy_data")))
    code = readme_block()
    settings = {"DATA_DIR, RUN, WIDTH, STEPS": f"{data_dir!r}, {str(tmp_path / 'run')!r}, 0.125, 1",
                "VGG_WEIGHTS": "None"}
    for names, values in settings.items():  # the block's settings line, as a user would edit it
        code, count = re.subn(rf"^{re.escape(names)} = .*$", f"{names} = {values}", code, flags=re.M)
        assert count == 1, names
    code = code.replace("batch_size=8", "batch_size=2")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    run = tmp_path / "run"
    assert int(namespace["model"].generator_optimizer.iterations.numpy()) == 2  # 2 epochs x 1 step
    assert os.path.isfile(run / "generator.weights.h5")
    assert any(name.startswith("2") for name in os.listdir(run / "checkpoints"))
    assert os.listdir(run / "logs")
