"""Sub-commands of the `tfrf` CLI, one module each (see `tfrf.cli`)."""
