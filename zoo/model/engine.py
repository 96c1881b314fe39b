"""Engines: what runs a model's forward pass. ``torch`` (eager, channels_last) or ``onnxruntime``
(the same forward exported once to an ONNX graph and run by ONNX Runtime's CPU provider: lite0's
extraction loop 3.6x faster than eager on 2 cores, bench/bench_engine.py).

Every pass over images (extract, predict, evaluate, compare's feature pass, finetune's) asks
:func:`choose` which engine to use and, for ONNX Runtime, :func:`onnx_forward` for a callable with
the torch function's interface (a batch tensor in, a tensor out). ``auto`` (the default, or
``ZOO_ENGINE``) means ONNX Runtime on the CPU when the ``fast`` extra is installed, torch on CUDA
or without it.

**Built once, kept, verified.** A graph is exported once per *key*: the model's identity (weights
sha256, and a run's head.safetensors sha256), the output (logits, pooled features, or a named
layer with its pooling), the input size, the opset and the exporter (torch and onnxscript
versions, :data:`GRAPH_FORMAT`). It lives in ``ZOO_HOME/engines/<key>.onnx`` beside
``<key>.json``, which records its sha256 (zoo/home.py; ``zoo cache prune`` removes graphs unused
for ``--older-than``). Using a graph reads its bytes once, hashes them and hands those same bytes
to ONNX Runtime: a graph changed on disk is refused (logged) and built again, never run. The batch
dimension is dynamic; ONNX Runtime gets ``threads`` intra-op threads (default: the cores).

**Parity or fall back.** The first use of a graph in a process runs a probe batch (seeded noise
at the input size) through both paths; a maximum absolute difference over :data:`ATOL` (or, on
logits, a relative one over :data:`LOGITS_RTOL`) logs a warning and the caller runs torch instead
(:func:`onnx_forward` returns None). Callers key their caches on the engine that ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from typing import Callable

import torch
from torch import nn

from zoo import config, home
from zoo.errors import EngineError, MissingExtra, UsageError
from zoo.model.decode import tag_output
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside

log = logging.getLogger(__name__)

#: what ``--engine`` takes
ENGINES = ("torch", "onnxruntime", "auto")
#: the layout of zoo's exported graphs (input ``images``, one output); a change builds every graph again
GRAPH_FORMAT = 1
#: ONNX opset of the graphs (the dynamo exporter's own default at torch 2.9+)
OPSET = 20
#: parity: the largest absolute difference allowed, and the relative one on logits (to the largest logit)
ATOL, LOGITS_RTOL = 1e-3, 1e-4
#: images in the parity probe
PROBE_IMAGES = 2
#: the loggers of torch's ONNX exporter, quiet while it runs
EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx")
#: the modules the fast extra brings
FAST_MODULES = ("onnxruntime", "onnx", "onnxscript")


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {name!r}")
    return name


def missing_fast() -> str | None:
    """The first module of the ``fast`` extra that does not import, or None when all do."""
    import importlib

    for module in FAST_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def choose(engine: str | None, device: str | torch.device | None = "cpu") -> str:
    """``torch`` or ``onnxruntime``: the engine ``engine`` (None: ``ZOO_ENGINE``, else ``auto``)
    means on ``device``. ``auto``: ONNX Runtime on the CPU when the fast extra is installed."""
    name = check_engine(engine or config.engine() or "auto")
    on_cpu = torch.device(device or "cpu").type == "cpu"
    if name == "auto":
        return "onnxruntime" if on_cpu and missing_fast() is None else "torch"
    if name == "onnxruntime":
        if not on_cpu:
            raise UsageError(f"--engine onnxruntime runs on the CPU, not {device}; use --engine torch (or auto) there")
        if missing_fast() is not None:
            raise MissingExtra("--engine onnxruntime", ", ".join(FAST_MODULES), "fast")
    return name


def identity(model: nn.Module) -> str:
    """What a model's outputs depend on besides its input: the weights sha256 it was loaded with
    and, for a run, the sha256 of its head.safetensors (a partial run changes backbone tensors)."""
    weights = getattr(model, "weights_sha256", None)
    if not weights:
        raise UsageError("this needs a model loaded by zoo.load with pretrained weights")
    run = getattr(model, "run", None)
    head = (getattr(run, "files", None) or {}).get("head.safetensors") if run is not None else None
    return weights if not head else f"{weights}+head:{head}"


def classifier_digest(model: nn.Module) -> str:
    """sha256 of the classifier's tensors as they are now: a model loaded with a fresh head (random,
    or trained in this process) has logits no recorded sha256 names. Small: one linear layer."""
    h = hashlib.sha256()
    head = model.get_classifier() if hasattr(model, "get_classifier") else model
    for name, tensor in sorted(head.state_dict().items()):
        h.update(name.encode() + b"\0" + str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def exporter_version() -> str:
    """What made a graph: torch and onnxscript (the dynamo exporter), and zoo's graph format."""
    import onnxscript

    return f"torch {torch.__version__}, onnxscript {onnxscript.__version__}, format {GRAPH_FORMAT}"


def graph_key(model_identity: str, output: str, input_size: tuple[int, int, int]) -> str:
    """The name of a graph: everything its outputs depend on (32 hex digits)."""
    h = hashlib.sha256()
    for part in (model_identity, output, "x".join(map(str, input_size)), f"opset {OPSET}", exporter_version()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:32]


class _Forward(nn.Module):
    """``fn`` as a module, so that torch.export sees the model's parameters as its own."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x):
        return self.fn(x)


def export_graph(model: nn.Module, fn: Callable, input_size: tuple[int, int, int], out: str | os.PathLike,
                 metadata: dict[str, str] | None = None) -> None:
    """Export ``fn`` (a function of ``model`` from an image batch to one tensor) to the ONNX file
    ``out`` (written in place: callers pass a temp path), input ``images`` with a dynamic batch,
    output ``output``, ``metadata`` in the model's metadata_props."""
    import onnx

    missing = missing_fast()
    if missing:
        raise MissingExtra("an ONNX export", ", ".join(FAST_MODULES), "fast")
    was_training = model.training
    model.eval()
    sample = torch.randn(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet(EXPORTER_LOGGERS):
            warnings.simplefilter("ignore")  # the exporter's deprecation notes are for its own callers
            program = torch.onnx.export(_Forward(model, fn).eval(), (sample,), None, dynamo=True, verbose=False,
                                        input_names=["images"], output_names=["output"], opset_version=OPSET,
                                        dynamic_shapes=({0: batch},))
    except Exception as exc:  # deliberate: any failure of the exporter means this model has no graph
        raise EngineError(f"{type(model).__name__} does not export to ONNX ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); use --engine torch") from exc
    finally:
        model.train(was_training)
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, os.fspath(out))


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]):
    """The exporter's loggers (and their many children, which inherit the level) at error level:
    it narrates every optimisation pass at info level."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _paths(key: str) -> tuple[str, str]:
    folder = home.engines()
    return os.path.join(folder, f"{key}.onnx"), os.path.join(folder, f"{key}.json")


def _read_verified(key: str) -> tuple[bytes, dict] | None:
    """The graph's bytes and record when both are there and the bytes hash to the recorded sha256;
    None when it is not built; a graph changed on disk is logged and removed (then built again)."""
    graph, record_path = _paths(key)
    try:
        with open(record_path, encoding="utf-8") as fh:
            record = json.load(fh)
        with open(graph, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    actual = hashlib.sha256(data).hexdigest()
    if not isinstance(record, dict) or actual != record.get("sha256"):
        log.warning("refusing the ONNX graph %s: its sha256 is %s, its record says %s (changed on disk); "
                    "building it again", graph, actual, record.get("sha256") if isinstance(record, dict) else None)
        for path in (graph, record_path):
            try:
                os.unlink(path)
            except OSError:
                pass
        return None
    for path in (graph, record_path):
        try:
            os.utime(path)  # last use, for zoo cache prune
        except OSError:  # a read-only cache still serves its graphs
            pass
    return data, record


def build(model: nn.Module, output: str, fn: Callable, input_size: tuple[int, int, int],
          progress: Progress | None = None) -> tuple[bytes, dict]:
    """The verified bytes and record of the graph of ``fn`` for ``model`` at ``input_size``, exported
    now when it is not built yet (written to a temp file, hashed, then renamed into place: the
    record last, so that a graph without a record is never used)."""
    key = graph_key(identity(model) + (f"+classifier:{classifier_digest(model)}" if output == "logits" else ""),
                    output, input_size)
    found = _read_verified(key)
    if found is not None:
        return found
    graph, record_path = _paths(key)
    os.makedirs(os.path.dirname(graph), exist_ok=True)
    name = getattr(getattr(model, "run", None), "name", None) or getattr(getattr(model, "card", None), "name", "model")
    tmp = temp_beside(graph, "partial")
    t0 = time.perf_counter()
    try:
        with Task(progress, "engine", f"export {name} ({output}) to ONNX, once", 1, "graphs") as task:
            export_graph(model, fn, input_size, tmp)
            task.advance(1)
        data = tmp.read_bytes()
        record = {"model": name, "identity": identity(model), "output": output, "input_size": list(input_size),
                  "opset": OPSET, "exporter": exporter_version(), "sha256": hashlib.sha256(data).hexdigest(),
                  "bytes": len(data), "export_seconds": round(time.perf_counter() - t0, 2), "built": time.time()}
        os.replace(tmp, graph)
        tmp_record = temp_beside(record_path, "partial")
        tmp_record.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(tmp_record, record_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%s) to %s in %.1f s", name, output, graph, record["export_seconds"])
    return data, record


class OnnxForward:
    """An ONNX Runtime session over a verified graph, called like the torch function it replaces:
    a float32 batch tensor (N, C, H, W) in, a float32 tensor out."""

    def __init__(self, data: bytes, record: dict, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its warnings are about its own kernels
        self.record = record
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.version = ort.__version__

    def run(self, images):
        """Outputs (numpy) of an NCHW float32 numpy batch."""
        return self.session.run(None, {"images": images})[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.run(array))


def parity(reference: torch.Tensor, candidate: torch.Tensor, logits: bool) -> tuple[float, float, str | None]:
    """(max absolute difference, relative one, why they differ too much or None)."""
    if tuple(reference.shape) != tuple(candidate.shape):
        return float("inf"), float("inf"), f"shape {tuple(candidate.shape)} where torch gives {tuple(reference.shape)}"
    diff = float((reference.float() - candidate.float()).abs().max()) if reference.numel() else 0.0
    scale = float(reference.float().abs().max()) if reference.numel() else 0.0
    rel = diff / scale if scale else diff
    if not diff <= ATOL:  # NaN fails too
        return diff, rel, f"max abs difference {diff:.3g} > {ATOL:g}"
    if logits and not rel <= LOGITS_RTOL:
        return diff, rel, f"relative difference {rel:.3g} > {LOGITS_RTOL:g} on logits"
    return diff, rel, None


_SESSIONS: dict[tuple[str, int], OnnxForward | None] = {}


def onnx_forward(model: nn.Module, output: str, fn: Callable, input_size: tuple[int, int, int], *,
                 threads: int | None = None, progress: Progress | None = None,
                 runtime: type[OnnxForward] | None = None) -> OnnxForward | None:
    """ONNX Runtime for ``fn`` (the torch function from an image batch to ``output``: ``logits``,
    ``pooled:avg``, ``module:blocks.5:max``, ...), built once (see the module docstring) and checked
    against ``fn`` on a probe batch on its first use in this process; None, with a warning logged,
    when the two disagree (the caller then runs torch). ``runtime`` is the session class (tests
    pass one that perturbs its outputs)."""
    size = tuple(int(v) for v in input_size)
    runtime = runtime or OnnxForward
    data, record = build(model, output, fn, size, progress)
    memo = (record["sha256"], threads or 0, runtime)
    if memo in _SESSIONS:
        return _SESSIONS[memo]
    try:
        session = runtime(data, record, threads)
    except Exception as exc:  # deliberate: a graph ONNX Runtime cannot load costs speed, not the run
        log.warning("ONNX Runtime cannot load the graph of %s (%s: %s); running torch", record["model"],
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        _SESSIONS[memo] = None
        return None
    probe = torch.randn(PROBE_IMAGES, *size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            reference = fn(probe).float()
        candidate = session(probe)
    except Exception as exc:  # deliberate: a graph that fails on the probe is not used
        reference, candidate, why = None, None, f"{type(exc).__name__}: {exc}"
    else:
        _, _, why = parity(reference, candidate, output == "logits")
    finally:
        model.train(was_training)
    if why is not None:
        log.warning("ONNX Runtime and torch disagree on %s (%s, %s): running torch", record["model"], output, why)
        session = None
    _SESSIONS[memo] = session
    return session


def logits_forward(model: nn.Module, engine: str | None = None, threads: int | None = None,
                   progress: Progress | None = None) -> OnnxForward | None:
    """ONNX Runtime's logits of ``model`` when ``engine`` means ONNX Runtime here and the graph
    agrees with torch; None: run the model itself (torch)."""
    if choose(engine, next(model.parameters()).device) != "onnxruntime":
        return None
    return onnx_forward(model, "logits", model.forward, tuple(model.data_config["input_size"]), threads=threads,
                        progress=progress)


def pooled_output(model: nn.Module) -> str:
    """The output name of a model's pooled features (the classifier's input) in graph keys: the
    name extract gives its pooled, average-pooled rows (zoo.transfer.features.layer_key), so that
    zoo.engine(model).features and extract use one graph (a test in tests/model/test_engine.py)."""
    return f"pooled:{getattr(getattr(model, 'global_pool', None), 'pool_type', '')} pool:avg"


# --- the public callable: zoo.engine(model)


class Engine:
    """A zoo.load model run by an engine, called like the model: ``engine(x)`` gives the logits
    (tagged with the class names, as the model's are), ``engine.features(x)`` the pooled features.
    Attributes the model has (``card``, ``data_config``, ``class_names``, ...) read through;
    ``engine.model`` is the torch module, ``engine.engine`` the engine that runs the logits."""

    def __init__(self, model: nn.Module, engine: str | None = None, threads: int | None = None,
                 progress: Progress | None = None):
        device = next(model.parameters()).device
        self.model, self.requested, self.threads, self._progress = model, engine, threads, progress
        self.engine = choose(engine, device)
        self._runs: dict[str, Callable] = {}
        if self.engine == "onnxruntime":
            self.engine = "onnxruntime" if isinstance(self._runner("logits"), OnnxForward) else "torch"

    def __getattr__(self, name):
        if name.startswith("__") or name in ("model", "_runs"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def _torch(self, output: str) -> Callable:
        model = self.model
        return model.forward if output == "logits" else (
            lambda x: model.forward_head(model.forward_features(x), pre_logits=True)
            if getattr(model, "num_classes", 0) and hasattr(model, "forward_head") else model(x))

    def _runner(self, output: str) -> Callable:
        if output not in self._runs:
            fn = self._torch(output)
            ort = None
            if self.engine == "onnxruntime":
                # a model without a classifier (head=0) gives its pooled features as logits: one graph for both
                pooled = output != "logits" or not getattr(self.model, "num_classes", 1)
                ort = onnx_forward(self.model, pooled_output(self.model) if pooled else "logits", fn,
                                   tuple(self.model.data_config["input_size"]), threads=self.threads,
                                   progress=self._progress)
            self._runs[output] = ort or fn
        return self._runs[output]

    def _call(self, output: str, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._runner(output)(x).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self._call("logits", x)
        tag_output(self.model, None, out)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._call("pooled", x)

    def __repr__(self) -> str:
        name = getattr(getattr(self.model, "card", None), "name", type(self.model).__name__)
        return f"Engine({name}, engine={self.engine!r})"
