"""Benchmarks that train: the table-4 ablation on the built-in chairs (`python -m tfrf.benchmarks.ablation`)."""
