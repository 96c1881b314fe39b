"""Figures of a model on this machine: GMACs (computed), latency, throughput and peak memory (timed).

GMACs come from ``torch.utils.flop_counter.FlopCounterMode`` on the meta device: no weights, no
compute, so every card gets them. Timing runs each model in its own Python process (``python -m
zoo.compare.measure NAME``): peak RSS only grows within a process, so one model's peak would hide
the next one's. The processes stay up for the whole measurement and the parent drives them round by
round over a pipe: round 1 times model A, then B, then C; round 2 again A, B, C; and so on. A
burst of load from elsewhere (a build, another job) then lands on every model's rounds instead of
on whichever model happened to be timed at the time, and a one-model process per round would pay
torch's import and the model's load for every round. Between its turns a process sits blocked on
its pipe and takes no CPU. Each turn is the plain loop a person would write (warm-up, then
``perf_counter`` around each forward under ``inference_mode``, channels_last), so the harness adds
nothing to what it reports (bench/bench_compare.py).

A row is marked busy (``busy``: why) when the machine was: other processes took CPU the timing
needed, or the p90/p50 spread of its batch-1 runs is over 1.5 (the runs disagree: the figures are
noise as much as model). On Linux "other processes" is measured, not guessed: the CPU time the
whole machine spent during the model's turns (``/proc/stat``) minus what this measurement's own
processes spent, per second of timing (``others_cpu``, in cores); more than the cores the timing
left free (cores - threads) plus half a core is busy. The 1-minute load average cannot tell: it
counts the timing's own threads, so a model timed on every core of an idle machine reads "load
above the cores" as soon as anything else wakes up, and it trails the last minute. Where there is
no ``/proc`` the load average taken before the timing starts is the fallback (above the core
count: busy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo import config
from zoo.errors import ZooError
from zoo.model.engine import onnx_forward
from zoo.model.load import load
from zoo.model.resolve import card_for

#: timing rounds, interleaved across the models; per round and model, batch-1 forwards: at least
#: ROUND_RUNS and ROUND_SECONDS, after ROUND_WARMUP untimed ones (the model before left the caches cold)
ROUNDS, ROUND_RUNS, ROUND_SECONDS, ROUND_WARMUP = 5, 4, 0.3, 2
#: untimed forwards when a process has loaded its model
WARMUP = 3
#: p90/p50 of the batch-1 runs above this: the timings are too noisy to trust
BUSY_SPREAD = 1.5
#: seconds a process may take to load its model, or to answer one round
TIMEOUT = 900


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


def time_forward(model, batch: int, input_size, device: str = "cpu", min_runs: int = ROUND_RUNS,
                 min_seconds: float = ROUND_SECONDS, warmup: int = ROUND_WARMUP,
                 memory_format=torch.channels_last) -> list[float]:
    """Seconds per forward of a ``batch`` of random images, after ``warmup`` untimed runs: at
    least ``min_runs`` runs and ``min_seconds`` in all. ``model`` is a torch model or an engine's
    function (ONNX Runtime's takes NCHW: ``memory_format=torch.contiguous_format``)."""
    x = torch.randn(batch, *input_size, device=device).contiguous(memory_format=memory_format)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
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


def busy_reason(p50: float, p90: float, cores: int, threads: int, others: float | None = None,
                load: float | None = None) -> str | None:
    """Why batch-1 timings with this median and p90, taken while other processes used ``others``
    cores (None: unknown, then the 1-minute ``load`` before the timing) on ``cores``, the model on
    ``threads``, cannot be trusted; None when they can."""
    reasons = []
    if others is not None:
        if others > max(cores - threads, 0) + 0.5:
            reasons.append(f"other processes used {others:.1f} of {cores} cores while it was timed")
    elif load is not None and load > cores:
        reasons.append(f"load average {load:.1f} on {cores} cores")
    if p50 > 0 and p90 / p50 > BUSY_SPREAD:
        reasons.append(f"p90/p50 {p90 / p50:.2f} > {BUSY_SPREAD}")
    return "; ".join(reasons) or None


def _cpu_ticks(pids: list[int]) -> tuple[int, int] | None:
    """(CPU ticks the whole machine has spent busy, ticks spent by ``pids`` and this process), from
    ``/proc``; None where there is none (or a process is gone)."""
    try:
        with open("/proc/stat") as fh:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fh.readline().split()[1:9])
        ours = 0
        for pid in (*pids, "self"):
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            ours += int(fields[11]) + int(fields[12])  # utime, stime
        return user + nice + system + irq + softirq + steal, ours
    except (OSError, ValueError, IndexError):
        return None


class _Others:
    """CPU that processes other than this measurement's used during each model's turns."""

    def __init__(self) -> None:
        self.ticks: dict[int, float] = {}
        self.seconds: dict[int, float] = {}
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def turn(self, i: int, pids: list[int], run: Callable[[], None]) -> None:
        before, t0 = _cpu_ticks(pids), time.perf_counter()
        run()
        after, seconds = _cpu_ticks(pids), time.perf_counter() - t0
        if before and after:
            self.ticks[i] = self.ticks.get(i, 0) + (after[0] - before[0]) - (after[1] - before[1])
            self.seconds[i] = self.seconds.get(i, 0) + seconds

    def cores(self, i: int) -> float | None:
        """Mean cores the others used while model ``i`` was timed (None: not measurable here)."""
        if not self.seconds.get(i):
            return None
        return max(self.ticks[i] / self.hz / self.seconds[i], 0.0)


class _Timed:
    """One model's own Python process, answering the parent's commands one JSON line at a time.
    Its stderr goes to a file (a pipe nobody reads would fill and block it), read back on failure."""

    def __init__(self, name: str, device: str, threads: int | None, engine: str = "torch"):
        self.name = name if engine == "torch" else f"{name} on {engine}"
        cmd = [sys.executable, "-m", "zoo.compare.measure", name, "--device", device, "--engine", engine] + (
            ["--threads", str(threads)] if threads else [])
        env = config.child_environment(ZOO_OFFLINE="1")  # the parent made sure the weights are cached
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, env=env)
        self.info: dict = {}

    def ready(self) -> None:
        """Wait for the process to say its model is loaded and warm (and what it was loaded at)."""
        self.info = self._answer()

    def ask(self, **command) -> dict:
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # it died: _answer says why
        return self._answer()

    def _answer(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if self.proc.poll() is None:  # silent past the timeout: stuck
            self.proc.kill()
        self.proc.wait()
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        self.close()
        why = f"no answer in {TIMEOUT} s" if not ready else (lines[-1] if lines else f"exit {self.proc.returncode}")
        raise ZooError(f"measuring {self.name} failed: {why}")

    def close(self) -> None:
        """End the process (its stdin closed, it exits; killed if it does not) and its files."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                f.close()
            except OSError:
                pass


def measure_models(names: list[str], batch_sizes: list[int], device: str = "cpu", threads: int | None = None,
                   rounds: int = ROUNDS, labels: list[str] | None = None,
                   status: Callable[[str], None] | None = None,
                   engines: tuple[str, ...] = ("torch",)) -> list[dict | ZooError]:
    """Time ``names`` (cached weights only) in interleaved rounds, each model and engine in its own
    process: per model its figures on ``engines[0]`` (latency over every round's batch-1 runs,
    throughput at the largest batch, peak RSS, the machine, ``busy``), or the ZooError that
    stopped it, and under ``engines`` each engine's figures (or ``error``: why it was not timed).
    ``status`` hears which model and round is running (by ``labels``, default the names)."""
    pairs = [(n, e) for n in names for e in engines]
    many = len(engines) > 1
    flat = _measure_pairs(pairs, batch_sizes, device, threads, rounds,
                          [f"{label} ({e})" if many else label for label in (labels or names) for e in engines], status)
    out: list[dict | ZooError] = []
    for k in range(len(names)):
        mine = flat[k * len(engines):(k + 1) * len(engines)]
        first = mine[0]
        if isinstance(first, dict) and many:
            first = {**first, "engines": {e: _engine_figures(r) for e, r in zip(engines, mine)}}
        out.append(first)
    return out


def _measure_pairs(pairs: list[tuple[str, str]], batch_sizes: list[int], device: str, threads: int | None,
                   rounds: int, labels: list[str], status: Callable[[str], None] | None) -> list[dict | ZooError]:
    """:func:`measure_models` of (name, engine) pairs, each its own process, in interleaved rounds."""
    names = [n for n, _ in pairs]
    engines = [e for _, e in pairs]
    say = status or (lambda text: None)
    procs: dict[int, _Timed] = {}
    out: list[Any] = [None] * len(names)  # each ends a dict of figures or the ZooError that stopped it
    big = max(batch_sizes)
    ones: dict[int, list[list[float]]] = {i: [] for i in range(len(names))}
    bigs: dict[int, list[float]] = {i: [] for i in range(len(names))}
    others = _Others()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # before any of ours starts
    try:
        for i, name in enumerate(names):  # all load at once: importing torch and loading is mostly one core
            procs[i] = _Timed(name, device, threads, engines[i])
        for i, proc in list(procs.items()):
            say(f"{labels[i]}: loading in its own process")
            try:
                proc.ready()
            except ZooError as exc:  # one model failing to run (memory, an op missing) costs its row
                out[i] = exc
                del procs[i]
        for r in range(rounds):
            for i, proc in list(procs.items()):
                say(f"timing round {r + 1}/{rounds}: {labels[i]}")
                try:
                    others.turn(i, [p.proc.pid for p in procs.values()], lambda: _turn(proc, r, big, ones[i], bigs[i]))
                except ZooError as exc:
                    out[i] = exc
                    del procs[i]
        for i, proc in procs.items():
            out[i] = _summary(proc.info, proc.ask(finish=True), ones[i], bigs[i], big, others.cores(i), load)
    finally:
        for proc in procs.values():
            proc.close()
    return out


def _engine_figures(result: dict | ZooError) -> dict:
    """One engine's figures of a model, for the ``engines`` of its row."""
    if isinstance(result, ZooError):
        return {"error": str(result)}
    keys = ("latency_ms", "latency_p90_ms", "throughput", "throughput_batch", "peak_rss_mb", "busy", "engine")
    return {k: result.get(k) for k in keys}


def _turn(proc: _Timed, r: int, big: int, ones: list[list[float]], bigs: list[float]) -> None:
    """One model's turn in round ``r``: its batch-1 runs, then one timed forward of the big batch
    (warmed up in the first round)."""
    ones.append(proc.ask(batch=1, min_runs=ROUND_RUNS, min_seconds=ROUND_SECONDS, warmup=ROUND_WARMUP)["times"])
    if big > 1:
        bigs += proc.ask(batch=big, min_runs=1, min_seconds=0, warmup=1 if r == 0 else 0)["times"]


def _summary(info: dict, finish: dict, rounds: list[list[float]], bigs: list[float], big: int,
             others: float | None, load: float | None) -> dict:
    """One model's figures from its rounds (seconds) and its process's last answer."""
    one = [t for times in rounds for t in times]
    p50, p90 = statistics.median(one), _percentile(one, 0.9)
    out: dict[str, Any] = dict(info)
    out.update(finish)
    cores, threads = os.cpu_count() or 1, finish["machine"]["threads"]
    out.update(latency_ms=p50 * 1e3, latency_p90_ms=p90 * 1e3, runs=len(one), rounds=len(rounds),
               latency_rounds_ms=[round(statistics.median(t) * 1e3, 3) for t in rounds],
               throughput=big / statistics.median(bigs) if bigs else 1 / p50, throughput_batch=big if bigs else 1,
               others_cpu=None if others is None else round(others, 2), load_avg=load and round(load, 2),
               busy=busy_reason(p50, p90, cores, threads, others, load))
    return out


def measure(name: str, batch_sizes: list[int], device: str = "cpu", threads: int | None = None,
            rounds: int = ROUNDS) -> dict:
    """One model's figures (``measure_models`` of one); raises the ZooError that stopped it."""
    result = measure_models([name], batch_sizes, device, threads, rounds)[0]
    if isinstance(result, ZooError):
        raise result
    return result


def _serve(name: str, device: str, threads: int | None, engine: str = "torch") -> int:
    """The child: load ``name`` (on ``engine``: torch, or ONNX Runtime over its built graph), warm
    it up, say so, then answer timing commands (JSON lines on stdin) until ``finish``, which
    answers peak RSS and the machine. Anything else printing to stdout (a library) is sent to
    stderr, so that the parent's pipe carries answers only."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if threads:
        torch.set_num_threads(threads)
    model = load(card_for(name)).to(device).to(memory_format=torch.channels_last)
    size = tuple(model.data_config["input_size"])
    layout = torch.channels_last
    if engine == "onnxruntime":
        model.to(memory_format=torch.contiguous_format)
        model = onnx_forward(model, "logits", model.forward, size, threads=threads)
        if model is None:
            raise ZooError("ONNX Runtime disagrees with torch on this model (see the warning): not timed")
        layout = torch.contiguous_format
    timed = lambda *a, **k: time_forward(model, *a, memory_format=layout, **k)  # noqa: E731
    timed(1, size, device, min_runs=0, min_seconds=0, warmup=WARMUP)
    answers.write(json.dumps({"input_size": list(size), "engine": engine,
                              "memory_format": "channels_last" if engine == "torch" else "NCHW"}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("finish"):
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
            answers.write(json.dumps({"peak_rss_mb": rss, "machine": machine(device, threads)}) + "\n")
            break
        times = timed(command["batch"], size, device, command["min_runs"], command["min_seconds"], command["warmup"])
        answers.write(json.dumps({"times": times}) + "\n")
    return 0


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo.compare.measure",
                                 description="one model's timing process, driven by zoo compare over stdin")
    ap.add_argument("name")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--engine", default="torch", choices=("torch", "onnxruntime"))
    args = ap.parse_args(argv)
    return _serve(args.name, args.device, args.threads, args.engine)


if __name__ == "__main__":
    raise SystemExit(_main())
