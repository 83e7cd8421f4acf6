"""Shared pytest set-up: quiet TensorFlow, deterministic seeds. Helpers: tests/helpers.py.

Every test runs by default (CI: `python -m pytest -q tests`); the quick loop leaves out the tests
marked `slow` (setup.cfg): `python -m pytest -q -m "not slow" tests`."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_REMOTE", "1")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
