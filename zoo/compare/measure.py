"""Figures of a model on this machine: GMACs (computed), latency, throughput and peak memory (timed).

GMACs come from ``torch.utils.flop_counter.FlopCounterMode`` on the meta device: no weights, no
compute, so every card gets them. Timing runs in a fresh subprocess per model (``python -m
zoo.measure``): peak RSS only grows within a process, so one model's peak would hide the next
one's. The timing loop is the plain one a person would write (warm-up, then ``perf_counter``
around each forward under ``inference_mode``, channels_last), so the harness adds nothing to
what it reports (bench/bench_compare.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo import config
from zoo.errors import ZooError
from zoo.model.load import load
from zoo.model.resolve import card_for

#: batch-1 timing: at least this many runs, and at least this long
MIN_RUNS, MIN_SECONDS = 10, 1.0
WARMUP = 3


def gmacs(architecture: str, input_size: tuple[int, int, int]) -> float:
    """Multiply-accumulates (billions) of one image through ``architecture`` at ``input_size``."""
    with torch.device("meta"):
        model = timm.create_model(architecture, pretrained=False).eval()
        x = torch.empty(1, *input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def machine(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """What the timings were measured on: CPU (or GPU) name, threads, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "torch": torch.__version__, "device": device, "platform": platform.platform()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def time_forward(model, batch: int, input_size, device: str = "cpu", min_runs: int = MIN_RUNS,
                 min_seconds: float = MIN_SECONDS) -> list[float]:
    """Seconds per forward of a ``batch`` of random images, after WARMUP runs: at least
    ``min_runs`` runs and ``min_seconds`` in all."""
    x = torch.randn(batch, *input_size, device=device).contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        sync()
        start = time.perf_counter()
        while len(times) < min_runs or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_here(name: str, batch_sizes: list[int], device: str = "cpu", threads: int | None = None) -> dict:
    """Load ``name`` (offline: cached weights only) and time it in this process."""
    if threads:
        torch.set_num_threads(threads)
    model = load(card_for(name)).to(device).to(memory_format=torch.channels_last)
    size = tuple(model.data_config["input_size"])
    out: dict[str, Any] = {"input_size": list(size), "memory_format": "channels_last"}
    one = time_forward(model, 1, size, device)
    out.update(latency_ms=statistics.median(one) * 1e3, latency_p90_ms=_percentile(one, 0.9) * 1e3, runs=len(one))
    big = max(batch_sizes)
    if big > 1:
        times = time_forward(model, big, size, device, min_runs=3, min_seconds=0)
        out.update(throughput=big / statistics.median(times), throughput_batch=big)
    else:
        out.update(throughput=1 / statistics.median(one), throughput_batch=1)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out["machine"] = machine(device, threads)
    return out


def measure(name: str, batch_sizes: list[int], device: str = "cpu", threads: int | None = None,
            timeout: float = 900) -> dict:
    """``measure_here`` in a fresh Python process (its peak RSS is this model's alone)."""
    cmd = [sys.executable, "-m", "zoo.compare.measure", name, "--batch-sizes", ",".join(map(str, batch_sizes)),
           "--device", device] + (["--threads", str(threads)] if threads else [])
    env = config.child_environment(ZOO_OFFLINE="1")  # the parent made sure the weights are cached
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise ZooError(f"measuring {name} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo.compare.measure")
    ap.add_argument("name")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    result = measure_here(args.name, [int(b) for b in args.batch_sizes.split(",")], args.device, args.threads)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
