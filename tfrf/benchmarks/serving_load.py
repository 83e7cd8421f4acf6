"""Loopback load benchmark of a PredictionService: throughput, latency, errors, server memory.

    python -m tfrf.benchmarks.serving_load MODEL_DIR --clients 4 16 64 --seconds 10

starts `tfrf serve MODEL_DIR` in its own process on a free loopback port (extra server options
with `--serve-args "--batching-parameters serving/batching_parameters.txt"`), then for each
client count runs that many client threads, each with its own `tfrf.serving.Client`, sending
`generate` requests of random inputs (B = `--batch`, K = `--sources`, sized from the served
signature) back to back for `--seconds`. It prints one markdown row per client count:
requests per second, p50 and p99 latency, errors by gRPC status, and the server's peak resident
memory during that step (sampled from /proc every 50 ms). `--target HOST:PORT` measures a
running server instead (TF-Serving or `tfrf serve`, `--tls-ca` for TLS; no memory column).

Clients and server share the machine: on a small one the clients' own CPU use is part of what
is measured. Everything is bounded: at most `--seconds` per step and 256 clients.

`benchmark_serving` is the serving part of `python -m tfrf.benchmarks.tflite_render`: an
in-process `LocalModelServer` with and without request batching.
"""
from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import numpy as np

MAX_CLIENTS = 256


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class MemorySampler:
    """The peak VmRSS of process `pid` between `reset()` and `peak()`, sampled every 50 ms."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._peak = max(self._peak, _resident_bytes(self.pid))
            except OSError:
                return

    def reset(self) -> None:
        self._peak = _resident_bytes(self.pid)

    def peak(self) -> int:
        return max(self._peak, _resident_bytes(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def start_server(model_dir: str, serve_args: List[str], timeout: float = 300.0):
    """`tfrf serve MODEL_DIR` on a free loopback port: (process, address)."""
    port = _free_port()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrf", "serve", model_dir, "--port", str(port), "--rest-port", "0",
         "--poll-seconds", "0", *serve_args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("tfrf serve:"):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
            return process, f"127.0.0.1:{port}"
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"tfrf serve {model_dir} did not start (exit status {process.poll()})")


def _default_model(model_dir: Optional[str]) -> str:
    """The model `tfrf serve MODEL_DIR` names first: MODEL_DIR's own name when it holds versions."""
    if model_dir is None:
        raise ValueError("--model is needed with --target")
    names = sorted(name for name in os.listdir(model_dir) if not name.startswith("."))
    if any(name.isdigit() for name in names):
        return os.path.basename(os.path.normpath(model_dir))
    return names[0]


def example_inputs(signature: Dict, batch: int, sources: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random generator inputs of the served signature's size."""
    from tfrf.benchmarks.inputs import random_inputs

    _, images = signature["inputs"]["source_images"]
    _, poses = signature["inputs"]["source_poses"]
    return random_inputs(batch, sources, images[2], images[3], poses[4], seed=seed)


def run_step(address: str, model: str, inputs: Dict[str, np.ndarray], clients: int, seconds: float,
             tls_ca: Optional[str], timeout: float) -> Dict:
    """`clients` threads sending `inputs` back to back for `seconds`: latencies and errors."""
    from tfrf.serving.client import Client, ServingError

    latencies: List[List[float]] = [[] for _ in range(clients)]
    errors: List[Dict[str, int]] = [{} for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    end = [0.0]

    def client_loop(index: int) -> None:
        with Client(address, model, timeout=timeout, tls_ca=tls_ca) as client:
            client.metadata()
            start.wait()
            while time.monotonic() < end[0]:
                began = time.monotonic()
                try:
                    client.generate(**inputs)
                    latencies[index].append(time.monotonic() - began)
                except ServingError as error:
                    name = error.code.name if error.code is not None else type(error).__name__
                    errors[index][name] = errors[index].get(name, 0) + 1

    threads = [threading.Thread(target=client_loop, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    end[0] = time.monotonic() + seconds + 60.0  # provisional, until every client is connected
    start.wait()
    began = time.monotonic()
    end[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    done = np.array([value for values in latencies for value in values])
    total_errors: Dict[str, int] = {}
    for counts in errors:
        for name, count in counts.items():
            total_errors[name] = total_errors.get(name, 0) + count
    return {
        "clients": clients, "requests": int(done.size), "seconds": elapsed,
        "per_second": done.size / elapsed if elapsed > 0 else 0.0,
        "p50_ms": float(np.percentile(done, 50) * 1000) if done.size else float("nan"),
        "p99_ms": float(np.percentile(done, 99) * 1000) if done.size else float("nan"),
        "errors": total_errors,
    }


def format_row(result: Dict, peak_bytes: Optional[int]) -> str:
    errors = sum(result["errors"].values())
    error_text = "0" if not errors else f"{errors} (" + ", ".join(
        f"{name} {count}" for name, count in sorted(result["errors"].items())) + ")"
    memory = "—" if peak_bytes is None else f"{peak_bytes / 2 ** 20:.0f}"
    return (f"| {result['clients']} | {result['requests']} | {result['per_second']:.1f} | {result['p50_ms']:.1f} | "
            f"{result['p99_ms']:.1f} | {error_text} | {memory} |")


def benchmark_serving(args) -> None:
    """Requests/s and p50/p99 latency of `args.clients` concurrent clients, B = 1 requests, through
    an in-process local server: no batching, `args.batching_parameters`, and those minus padding."""
    import dataclasses
    import shutil
    import tempfile

    import tfrf
    from tfrf.benchmarks.inputs import config_inputs
    from tfrf.export import export_generator
    from tfrf.export.saved_model import export_saved_model
    from tfrf.serving import BatchingParameters, Client, LocalModelServer

    config = tfrf.ModelConfig.preset("voxceleb2", image_height=args.serving_size, image_width=args.serving_size,
                                     width_multiplier=args.serving_width)
    directory = tempfile.mkdtemp(prefix="tfrf-bench-")
    try:
        path = export_saved_model(export_generator(config), os.path.join(directory, "face"))
        variables = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
        print(f"\n== serving: local server, voxceleb2 {args.serving_size}px width {args.serving_width:g}, K = 2, "
              f"B = 1 requests, {args.clients} concurrent clients ==")
        print(f"  SavedModel size {variables / 2**20:.2f} MiB")
        inputs = config_inputs(config, 1, 2)
        batching = BatchingParameters.from_file(args.batching_parameters)
        unpadded = dataclasses.replace(batching, allowed_batch_sizes=())
        modes = (("no batching", None), ("batching", batching), ("no padding", unpadded))
        for label, parameters in modes:
            with LocalModelServer(os.path.join(directory, "face"), port=0, poll_seconds=0,
                                  batching=parameters) as server:
                latencies: List[float] = []
                lock = threading.Lock()
                with Client(server.address, "face", timeout=120) as client:
                    client.generate(**inputs)  # warm-up, metadata

                    def worker():
                        for _ in range(args.requests_per_client):
                            began = time.perf_counter()
                            client.generate(**inputs)
                            with lock:
                                latencies.append(time.perf_counter() - began)

                    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
                    started = time.perf_counter()
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    elapsed = time.perf_counter() - started
            p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
            print(f"  {label:>12}: {len(latencies) / elapsed:6.2f} requests/s, p50 {p50:7.1f} ms, p99 {p99:7.1f} ms "
                  f"({len(latencies)} requests)", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfrf.benchmarks.serving_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", metavar="MODEL_DIR", help="models to serve with `tfrf serve`")
    parser.add_argument("--model", default=None, help="model name (default: the only/first model served)")
    parser.add_argument("--target", help="HOST:PORT of a running server instead of MODEL_DIR")
    parser.add_argument("--tls-ca", help="PEM root certificates: talk TLS to --target")
    parser.add_argument("--serve-args", default="", help="extra `tfrf serve` options, one string")
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 16, 64], help="client counts (default 4 16 64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step (default 10)")
    parser.add_argument("--batch", type=int, default=1, help="B per request (default 1)")
    parser.add_argument("--sources", type=int, default=2, help="K per request (default 2)")
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per call in seconds")
    args = parser.parse_args(argv)
    if (args.model_dir is None) == (args.target is None):
        parser.error("give MODEL_DIR (a server is started) or --target HOST:PORT (a running server)")
    if any(count < 1 or count > MAX_CLIENTS for count in args.clients) or args.seconds <= 0:
        parser.error(f"client counts must be 1..{MAX_CLIENTS} and --seconds positive")

    from tfrf.serving.client import Client

    process = sampler = None
    address = args.target
    if args.model_dir is not None:
        process, address = start_server(args.model_dir, shlex.split(args.serve_args))
        sampler = MemorySampler(process.pid)
    try:
        model = args.model or _default_model(args.model_dir)
        with Client(address, model, timeout=args.timeout, tls_ca=args.tls_ca) as client:
            signature = client.metadata()["serving_default"]
            inputs = example_inputs(signature, args.batch, args.sources)
            for _ in range(3):  # warm-up: the first runs trace and allocate
                client.generate(**inputs)
        print(f"model {model!r} at {address}: B = {args.batch}, K = {args.sources}, "
              f"{args.seconds:g} s per step\n")
        print("| clients | requests | req/s | p50 ms | p99 ms | errors | server RSS peak MiB |")
        print("|---|---|---|---|---|---|---|")
        for clients in args.clients:
            if sampler is not None:
                sampler.reset()
            result = run_step(address, model, inputs, clients, args.seconds, args.tls_ca, args.timeout)
            print(format_row(result, sampler.peak() if sampler is not None else None), flush=True)
    finally:
        if sampler is not None:
            sampler.stop()
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
