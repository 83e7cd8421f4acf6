"""`tfrf summary` and the FLOP counter; `tfrf bench` worker on a tiny model."""
import json

import pytest

from tfrf.cli import main
from tfrf.config import ModelConfig
from tfrf.benchmarks.flops import generator_flops
from tfrf.benchmarks.summary import built_generator


def test_flops_grow_linearly_with_k():
    generator = built_generator(ModelConfig.preset("synthetic", width_multiplier=0.125, warp_backend="gather"))
    flops = [generator_flops(generator, k) for k in (1, 2, 3)]
    assert flops[0] > 0
    # Per-source work (extractors) is the same for every extra source.
    assert flops[2] - flops[1] == flops[1] - flops[0] > 0
    # The first conv of the source extractor alone: 3x3x3x8 MACs at 32x32 -> a lower bound.
    assert flops[0] > 2 * 3 * 3 * 3 * 8 * 32 * 32


def test_summary_prints_table_params_and_flops(capsys):
    assert main(["summary", "--preset", "market1501", "--width", "0.125", "--k", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "flow_confidence_extractor" in out and "fusing_h8" in out
    assert "total parameters:" in out and "K=2:" in out
    assert main(["summary", "--preset", "market1501", "--width", "0.125", "--k", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] > 0 and report["flops_per_image"]["2"] > 0
    assert report["config"]["image_height"] == 128 and report["config"]["image_width"] == 64


def test_bench_worker_measures_and_reports_unsupported_xla():
    from tfrf.benchmarks.forward import measure

    result = measure("synthetic", 2, "gather", xla=False, repeats=1, warmup=1, width=0.125)
    assert result["median_ms"] > 0 and result["peak_memory_mb"] >= result["baseline_memory_mb"] > 0
    tfa_xla = measure("synthetic", 1, "tfa", xla=True, repeats=1, warmup=1, width=0.125)
    assert "error" in tfa_xla and "Addons>" in tfa_xla["error"]


def test_summary_rejects_bad_k():
    with pytest.raises(SystemExit):
        main(["summary", "--preset", "synthetic", "--k", "0"])
