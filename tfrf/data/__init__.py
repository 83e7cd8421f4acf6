"""Input pipelines and the built-in synthetic dataset."""
