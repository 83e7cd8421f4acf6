"""TFDS builders, one folder per dataset (installed as ``tfrf.datasets``)."""
