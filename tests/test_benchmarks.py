"""`tfrf.benchmarks`: the shared timer and conv-throughput probe, and the pure parts of
`python -m tfrf.benchmarks.gpu` (MFU, the largest-batch search, the peak table); on a machine
without a GPU the command says so in one line and exits 0."""
import os
import subprocess
import sys

import pytest

from tfrf.benchmarks import gpu
from tfrf.benchmarks.conv_throughput import conv_stack, conv_throughput
from tfrf.benchmarks.timing import best_seconds, interleaved_seconds, run_seconds


def test_gpu_benchmark_without_a_gpu_prints_one_line_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "tfrf.benchmarks.gpu"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "no GPU found" in lines[0]


def test_mfu_is_achieved_flops_over_the_peak():
    # 4.9 TFLOP a step in 0.1 s is 49 TFLOP/s: 4.95% of a 989.4 TFLOPS peak.
    assert gpu.mfu(4.9e12, 0.1, 989.4) == pytest.approx(49.0 / 989.4)
    assert gpu.mfu(1e12, 1.0, 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("capacity, limit, expected", [(37, 1024, 37), (5, 1024, 5), (3, 1024, 3), (0, 1024, 0),
                                                        (2000, 1024, 1024), (80, 80, 80), (1, 1024, 1)])
def test_largest_batch_doubles_then_bisects(capacity, limit, expected):
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= capacity

    assert gpu.largest_batch(fits, 5, limit) == expected
    assert len(tried) == len(set(tried))  # no size is tried twice
    if capacity == 37:
        assert tried == [5, 10, 20, 40, 30, 35, 37, 38]


@pytest.mark.parametrize("name, card", [("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
                                        ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA H200", "H200"),
                                        ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA A100-SXM4-80GB", "A100"),
                                        ("NVIDIA A100 80GB PCIe", "A100"), ("Tesla T4", None)])
def test_peak_lookup_by_device_name(name, card):
    assert gpu.card_peaks(name)[0] == card


def test_peak_used_per_policy():
    _, peaks = gpu.card_peaks("NVIDIA H100 80GB HBM3")
    assert gpu.peak_used(peaks, "float32", tf32=True) == ("tf32", 494.7)
    assert gpu.peak_used(peaks, "float32", tf32=False) == ("fp32", 67.0)
    assert gpu.peak_used(peaks, "mixed_float16", tf32=True) == ("fp16", 989.4)
    assert gpu.peak_used(peaks, "mixed_bfloat16", tf32=False) == ("bf16", 989.4)
    assert gpu.peak_used(None, "mixed_bfloat16", tf32=False) == ("bf16", None)


def test_timers_warm_up_and_respect_the_budget():
    calls = []
    times = run_seconds(lambda: calls.append(1), 4, warmup=2)
    assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)
    assert len(run_seconds(lambda: None, 100, budget_seconds=0.0)) == 2  # two timed calls, then the budget
    assert best_seconds(lambda: None, 3) >= 0
    order = []
    times = interleaved_seconds({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=2,
                                warmup=0, after_round=lambda: order.append("|"))
    assert order == ["a", "b", "|", "a", "b", "|"] and [len(v) for v in times.values()] == [2, 2]


def test_conv_throughput_in_both_runtimes():
    _, flops = conv_stack(((8, 4), (4, 8)), batch=2, convs_per_level=3)
    assert flops == 3 * (2 * (2 * 8 * 8 * 4) * 9 * 4 + 2 * (2 * 4 * 4 * 8) * 9 * 8)
    assert conv_throughput(((16, 8),), repeats=2) > 0
    assert conv_throughput(((16, 8),), repeats=2, runtime="tflite", threads=1) > 0
    with pytest.raises(ValueError, match="runtime"):
        conv_throughput(((16, 8),), repeats=1, runtime="gpu")


@pytest.mark.slow
def test_gpu_benchmark_rows_on_the_cpu(capsys):
    """The GPU-only parts run on any device: a worker per (policy, XLA) pair, then the inference rows."""
    args = gpu.parse_args(["--preset", "synthetic", "--policies", "float32", "--xla", "off", "--batch", "1",
                           "--max-batch", "2", "--steps", "1", "--warmup", "0", "--threads", "1"])
    _, peaks = gpu.card_peaks("NVIDIA H100 PCIe")
    rows = gpu.train_rows(args, peaks, tf32=True)
    assert [(row["batch_size"], row["largest"]) for row in rows] == [(1, False), (2, True)], rows
    assert rows[1]["flops_per_step"] == pytest.approx(2 * rows[0]["flops_per_step"], rel=0.01)
    assert all(row["peak"] == "tf32" and row["peak_tflops"] == 378.0 and 0 < row["mfu"] < 1 for row in rows)
    assert capsys.readouterr().out.count("| float32 | off |") == 2
    latencies = gpu.inference_latencies("synthetic", 2, repeats=1, warmup=0, threads=1)
    assert len(latencies) == 3 and all(row["median_ms"] > 0 for row in latencies)
