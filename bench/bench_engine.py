#!/usr/bin/env python
"""The ONNX Runtime engine against torch eager, same run, same images, same threads.

    .venv/bin/python bench/bench_engine.py [--images 1200] [--epochs 10] [--threads N]

Data: sklearn's digits, ``--images`` of them (balanced), upsampled to 64x64 PNGs in an ImageFolder;
model: the bundled efficientnet_lite0 (224x224 input); batch 32; one ZOO_HOME whose ONNX graphs are
built first (their one-off cost is reported apart), feature caches emptied before every run.

1. Export: the first ``zoo.engine(model).features(x)`` in an empty ZOO_HOME (export, hash, rename,
   session, parity probe) against its second call: the one-off cost of a graph.
2. Extraction loop, images/s after the first batch, best of 2 alternating runs of
   ``zoo.transfer.features.extract`` per engine (the DataLoader, the forward, the shard writes).
   Target ONNX Runtime / torch >= 2.0; the features of the two agree within 1e-3.
3. ``zoo extract`` wall time, a subprocess per engine (interpreter start, imports, model load,
   hashing, session, parity probe, extraction, the .h5 written). Bar torch / ONNX Runtime >= 1.8.
4. Batch-1 latency of ``zoo.engine(model)`` (logits) on skimage's chelsea: the median of 30 calls
   per engine after 5 warm-ups; reported.
5. A cold head fine-tune, ``zoo.finetune(strategy="head", epochs=10)`` with an empty feature
   cache, per engine: the feature pass is the engine's, training is torch's. Target ONNX Runtime /
   torch <= 0.6.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_finetune import make_digits  # noqa: E402

MODEL = "efficientnet_lite0"
ENGINES = ("torch", "onnxruntime")


def export_cost(home: Path, threads: int) -> tuple[float, float]:
    """Seconds of the first and second ``zoo.engine(model).features(x)`` in an empty ZOO_HOME."""
    import torch

    import zoo

    model = zoo.load(MODEL, head=0)
    x = torch.randn(32, *model.data_config["input_size"])
    fast = zoo.engine(model, engine="onnxruntime", threads=threads)  # builds the logits graph (head=0: pooled out)
    t0 = time.perf_counter()
    fast.features(x)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast.features(x)
    return first, time.perf_counter() - t0


def extract_loop(root: Path, engine: str, threads: int, cache: Path):
    """(images/s after the first batch, the features) of one extract with an empty cache."""
    import zoo
    from zoo.transfer.datasets import scan
    from zoo.transfer.features import extract

    shutil.rmtree(cache, ignore_errors=True)
    model = zoo.load(MODEL, head=0)
    data = scan(root)
    marks: list[tuple[float, int]] = []
    got = extract(model, data, batch_size=32, cache_dir=cache, engine=engine, threads=threads,
                  on_forward=lambda n: marks.append((time.perf_counter(), n)))
    (t_first, _), (t_last, _) = marks[0], marks[-1]
    images = sum(n for _, n in marks[1:])
    return images / (t_last - t_first), got.features()


def extract_wall(root: Path, engine: str, threads: int, home: Path, out: Path) -> float:
    """Seconds of one ``zoo extract`` process with an empty feature cache."""
    shutil.rmtree(home / "features", ignore_errors=True)
    out.unlink(missing_ok=True)
    env = {**os.environ, "ZOO_HOME": str(home)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo", "extract", MODEL, "--data", str(root), "--out", str(out),
                    "--engine", engine, "--threads", str(threads)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def latency_ms(engine: str, threads: int) -> float:
    """Median ms of one batch-1 logits call on chelsea."""
    import skimage.data
    import torch
    from PIL import Image

    import zoo

    torch.set_num_threads(threads)
    model = zoo.load(MODEL)
    fast = zoo.engine(model, engine=engine, threads=threads)
    x = zoo.transforms(model)(Image.fromarray(skimage.data.chelsea())).unsqueeze(0)
    for _ in range(5):
        fast(x)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        fast(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def cold_finetune(root: Path, engine: str, threads: int, home: Path, out: Path, epochs: int) -> tuple[float, float]:
    """(seconds, validation accuracy) of a head fine-tune whose features are not cached."""
    import zoo

    shutil.rmtree(home / "features", ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = zoo.finetune(MODEL, root, out, strategy="head", epochs=epochs, lr=3e-3, engine=engine, threads=threads)
    return time.perf_counter() - t0, result.best.val_accuracy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import torch

    from bench._served import verdict
    from zoo.model.engine import missing_fast

    if missing_fast():
        print(f"the fast extra is not installed ({missing_fast()}): pip install 'zoo-hub[fast]'")
        return 1
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        os.environ["ZOO_HOME"] = str(home)
        root = make_digits(tmp / "digits", args.images)
        n = sum(1 for _ in root.rglob("*.png"))
        print(f"{n} digits (64x64 PNGs), {MODEL} at 224x224, batch 32, {args.threads} threads, "
              f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}")

        first, second = export_cost(home, args.threads)
        print(f"1. export, once per model and output: first features call {first:.1f} s "
              f"(export + hash + session + parity probe), second {1000 * second:.0f} ms")

        rates: dict[str, float] = {}
        features: dict[str, torch.Tensor] = {}
        for _ in range(2):
            for engine in ENGINES:
                rate, feats = extract_loop(root, engine, args.threads, tmp / "features")
                rates[engine] = max(rates.get(engine, 0.0), rate)
                features[engine] = feats
        diff = float((features["torch"] - features["onnxruntime"]).abs().max())
        loop_ratio = rates["onnxruntime"] / rates["torch"]
        print(f"2. extract loop: torch {rates['torch']:.1f} img/s, onnxruntime {rates['onnxruntime']:.1f} img/s; "
              f"ratio {loop_ratio:.2f}x; features max abs difference {diff:.1e}")

        walls = {e: extract_wall(root, e, args.threads, home, tmp / "f.h5") for e in ENGINES}
        wall_ratio = walls["torch"] / walls["onnxruntime"]
        print(f"3. zoo extract wall: torch {walls['torch']:.1f} s, onnxruntime {walls['onnxruntime']:.1f} s; "
              f"torch / ORT {wall_ratio:.2f} (bar >= 1.8)")

        lat = {e: latency_ms(e, args.threads) for e in ENGINES}
        print(f"4. batch-1 logits on chelsea: torch {lat['torch']:.1f} ms, onnxruntime {lat['onnxruntime']:.1f} ms "
              f"({lat['torch'] / lat['onnxruntime']:.1f}x)")

        tunes = {e: cold_finetune(root, e, args.threads, home, tmp / f"run-{e}", args.epochs) for e in ENGINES}
        tune_ratio = tunes["onnxruntime"][0] / tunes["torch"][0]
        print(f"5. cold head fine-tune, {args.epochs} epochs: torch {tunes['torch'][0]:.1f} s "
              f"(val acc {tunes['torch'][1]:.3f}), onnxruntime {tunes['onnxruntime'][0]:.1f} s "
              f"(val acc {tunes['onnxruntime'][1]:.3f}); ratio {tune_ratio:.2f} (target <= 0.6)")

    status = 0
    status |= verdict("torch / ORT extract-loop time (1 / img/s ratio)", 1 / loop_ratio, 0.5)
    status |= verdict("ORT / torch zoo extract wall", 1 / wall_ratio, 1 / 1.8)
    status |= verdict("ORT / torch cold fine-tune", tune_ratio, 0.6)
    if diff > 1e-3:
        print(f"features differ by {diff:.1e} > 1e-3: FAIL")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
