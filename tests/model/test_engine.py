"""The ONNX Runtime engine: parity with torch on the bundled models, fallback when they disagree,
feature caches per engine, graphs verified on use, ``zoo export --onnx`` in stock onnxruntime, and
zoo without the fast extra.

Graphs cost a few seconds each to export, so the tests share one ZOO_HOME (``engine_home``): each
graph is built once per session. The suite's default engine is torch (tests/conftest.py); these
tests ask for ONNX Runtime by name.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import zoo
from tests.conftest import ROOT, run_zoo
from zoo.errors import MissingExtra, UsageError
from zoo.model import engine as engines
from zoo.transfer.datasets import scan
from zoo.transfer.features import extract

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def engine_home(tmp_path_factory):
    return tmp_path_factory.mktemp("engine_home")


@pytest.fixture
def shared_home(engine_home, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(engine_home))
    return engine_home


@pytest.fixture(scope="session")
def chelsea_batch():
    """skimage's chelsea (a real cat photo) and coffee through lite0's transform: a real batch."""
    import skimage.data
    from PIL import Image

    from zoo.model.transforms import transforms

    tf = transforms("efficientnet_lite0")
    return torch.stack([tf(Image.fromarray(skimage.data.chelsea())), tf(Image.fromarray(skimage.data.coffee()))])


def _within(a: torch.Tensor, b: torch.Tensor, atol: float) -> float:
    diff = float((a - b).abs().max())
    assert diff <= atol, diff
    return diff


# --- choosing an engine


def test_auto_picks_onnxruntime_on_the_cpu_and_torch_on_cuda_and_names_are_checked(monkeypatch):
    assert engines.choose("auto", "cpu") == "onnxruntime"
    assert engines.choose("auto", "cuda") == "torch"
    assert engines.choose("torch", "cpu") == "torch"
    with pytest.raises(UsageError, match="runs on the CPU"):
        engines.choose("onnxruntime", "cuda")
    with pytest.raises(UsageError, match="--engine must be one of torch, onnxruntime, auto"):
        engines.choose("tensorrt")
    monkeypatch.setenv("ZOO_ENGINE", "onnxruntime")
    assert engines.choose(None) == "onnxruntime"
    monkeypatch.delenv("ZOO_ENGINE")
    assert engines.choose(None) == "onnxruntime"  # unset: auto


# --- parity on the bundled models


def test_predict_on_onnxruntime_gives_torchs_logits_on_a_real_photo(shared_home, chelsea_batch):
    model = zoo.load("efficientnet_lite0")
    fast = zoo.engine(model, "onnxruntime")
    assert fast.engine == "onnxruntime" and fast.card.name == model.card.name
    logits = fast(chelsea_batch)
    with torch.inference_mode():
        reference = model(chelsea_batch)
    _within(logits, reference, 1e-3)
    assert float((logits - reference).abs().max() / reference.abs().max()) <= engines.LOGITS_RTOL
    top = [label for label, _ in zoo.decode(logits, top=3)[0]]  # the class names travel on the output
    assert top[0] in ("tiger cat", "Egyptian cat", "tabby, tabby cat")
    # the graph is in ZOO_HOME/engines with its record, which names its sha256
    records = [json.loads(p.read_text()) for p in (shared_home / "engines").glob("*.json")]
    assert any(r["output"] == "logits" and r["input_size"] == [3, 224, 224] for r in records)


@pytest.mark.slow
def test_zoo_predict_cli_names_the_same_classes_on_both_engines(shared_home, tmp_path):
    import skimage.data
    from PIL import Image

    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    answers = {}
    for name in ("torch", "onnxruntime"):
        done = run_zoo("predict", "efficientnet_lite0", str(photo), "--engine", name, "--json", "--top", "3",
                       env={"ZOO_HOME": str(shared_home), "ZOO_OFFLINE": "1"}, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        answers[name] = json.loads(done.stdout)["results"][0]["predictions"]
    assert [p["label"] for p in answers["torch"]] == [p["label"] for p in answers["onnxruntime"]]
    for a, b in zip(answers["torch"], answers["onnxruntime"]):
        assert abs(a["probability"] - b["probability"]) < 1e-4


@pytest.mark.parametrize("name", [pytest.param("efficientnet_lite0", marks=pytest.mark.slow), pytest.param("efficientnet_lite1", marks=pytest.mark.slow),
                                  pytest.param("efficientnet_lite2", marks=pytest.mark.slow)])
def test_pooled_features_of_each_bundled_model_match_torch(shared_home, small_digits, name):
    model = zoo.load(name, head=0)
    counted = {"torch": 0, "onnxruntime": 0}
    out = {}
    for engine in ("torch", "onnxruntime"):
        data = scan(small_digits)
        fs = extract(model, data, engine=engine, cache_dir=shared_home / f"features-{name}-{engine}",
                     on_forward=lambda n, e=engine: counted.__setitem__(e, counted[e] + n))
        out[engine] = (fs.features(), fs.space)
    assert counted == {"torch": 200, "onnxruntime": 200}
    _within(out["onnxruntime"][0], out["torch"][0], engines.ATOL)
    assert out["onnxruntime"][1] != out["torch"][1]  # the engine is part of the space


@pytest.mark.slow
def test_a_named_layer_max_pooled_matches_torch(shared_home, small_digits):
    model = zoo.load("efficientnet_lite0", head=0)
    got = {e: extract(model, scan(small_digits), layer="blocks.3", pool="max", engine=e).features()
           for e in ("torch", "onnxruntime")}
    assert got["torch"].shape == (200, 80)
    _within(got["onnxruntime"], got["torch"], engines.ATOL)


@pytest.mark.slow
def test_a_runs_logits_match_torch_and_its_graph_is_not_the_bases(shared_home, small_run, small_digits):
    run_dir, _ = small_run
    model = zoo.load(run_dir)
    fast = zoo.engine(model, "onnxruntime")
    batch = torch.stack([model_input for model_input in _digit_batch(model, small_digits)])
    with torch.inference_mode():
        reference = model(batch)
    logits = fast(batch)
    _within(logits, reference, 1e-3)
    assert float((logits - reference).abs().max() / reference.abs().max()) <= engines.LOGITS_RTOL
    assert logits.shape[-1] == 10
    keys = {json.loads(p.read_text())["identity"] for p in (shared_home / "engines").glob("*.json")}
    assert any("+head:" in k for k in keys)  # the run's head.safetensors is part of its graph's key


def _digit_batch(model, folder, n: int = 6):
    from PIL import Image

    from zoo.model.transforms import transforms

    tf = transforms(model)
    files = sorted(p for d in sorted(folder.iterdir()) for p in sorted(d.iterdir())[:1])[:n]
    return [tf(Image.open(p).convert("RGB")) for p in files]


@pytest.mark.slow
def test_evaluate_on_onnxruntime_agrees_with_torch_on_a_runs_split(shared_home, small_run, small_digits):
    run_dir, _ = small_run
    got = {e: zoo.evaluate(run_dir, small_digits, val=True, engine=e) for e in ("torch", "onnxruntime")}
    assert got["onnxruntime"].predicted == got["torch"].predicted
    assert got["onnxruntime"].accuracy == pytest.approx(got["onnxruntime"].recorded_accuracy)


# --- fallback, verification


class Perturbed(engines.OnnxForward):
    """A test engine: ONNX Runtime's outputs, each off by 0.01."""

    def run(self, images):
        return super().run(images) + np.float32(0.01)


def test_an_engine_that_disagrees_with_torch_falls_back_with_a_warning(shared_home, small_digits, caplog,
                                                                       monkeypatch):
    model = zoo.load("efficientnet_lite0", head=0)
    fn = lambda x: model.forward_head(model.forward_features(x), pre_logits=True)  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="zoo.model.engine"):
        assert engines.onnx_forward(model, "pooled:avg pool:avg", fn, (3, 224, 224), runtime=Perturbed) is None
    assert "disagree" in caplog.text and "max abs difference 0.01" in caplog.text
    # through extract: the rows are torch's, in torch's space
    monkeypatch.setattr(engines, "OnnxForward", Perturbed)
    engines._SESSIONS.clear()
    fallback = extract(model, scan(small_digits), engine="onnxruntime", cache_dir=shared_home / "features-fallback")
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_HOME", str(shared_home))
    engines._SESSIONS.clear()
    plain = extract(model, scan(small_digits), engine="torch", cache_dir=shared_home / "features-fallback")
    assert plain.space == fallback.space and plain.cached  # torch found the fallback's rows: same space


@pytest.mark.slow
def test_engine_features_logits_of_a_headless_model_and_extract_share_one_graph(small_digits, chelsea_batch,
                                                                                tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))  # an empty one: every graph built here is counted
    engines._SESSIONS.clear()
    model = zoo.load("efficientnet_lite0", head=0)
    fast = zoo.engine(model, engine="onnxruntime")
    features = fast.features(chelsea_batch)
    assert fast.engine == "onnxruntime" and torch.equal(fast(chelsea_batch), features)  # head=0: logits are features
    extract(model, scan(small_digits), engine="onnxruntime")
    assert len(list((tmp_path / "engines").glob("*.onnx"))) == 1


def test_parity_is_absolute_on_features_and_relative_on_logits():
    ref = torch.tensor([[100.0, -50.0]])
    assert engines.parity(ref, ref + 5e-4, logits=False)[2] is None
    assert engines.parity(ref, ref + 0.9e-3, logits=True)[2] is None  # 9e-6 of the largest logit
    assert "max abs difference" in engines.parity(ref, ref + 2e-3, logits=False)[2]
    small = torch.tensor([[1.0, 2.0]])
    assert "relative difference" in engines.parity(small, small + torch.tensor([[0.0, 9e-4]]), logits=True)[2]
    assert engines.parity(small, small + torch.tensor([[0.0, 9e-4]]), logits=False)[2] is None
    assert "max abs" in engines.parity(ref, torch.full_like(ref, float("nan")), logits=False)[2]
    assert "shape" in engines.parity(ref, ref[:, :1], logits=False)[2]


@pytest.mark.slow
def test_a_graph_changed_on_disk_is_refused_and_built_again(shared_home, chelsea_batch, caplog):
    model = zoo.load("efficientnet_lite0")
    engines.logits_forward(model, "onnxruntime")  # built (or already there)
    record = next(json.loads(p.read_text()) for p in (shared_home / "engines").glob("*.json")
                  if json.loads(p.read_text())["output"] == "logits" and "+head:" not in json.loads(p.read_text())["identity"]
                  and json.loads(p.read_text())["model"] == model.card.name)
    graph = next(p for p in (shared_home / "engines").glob("*.onnx")
                 if engines.hashlib.sha256(p.read_bytes()).hexdigest() == record["sha256"])
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    graph.write_bytes(bytes(data))
    engines._SESSIONS.clear()
    with caplog.at_level(logging.WARNING, logger="zoo.model.engine"):
        fast = engines.logits_forward(model, "onnxruntime")
    assert "refusing the ONNX graph" in caplog.text and "changed on disk" in caplog.text
    assert engines.hashlib.sha256(graph.read_bytes()).hexdigest() == record["sha256"]  # rebuilt, same bytes
    with torch.inference_mode():
        _within(fast(chelsea_batch), model(chelsea_batch), 1e-3)


def test_cache_prune_removes_graphs_not_used(shared_home, monkeypatch, tmp_path):
    import shutil

    home = tmp_path / "home"
    (home / "engines").mkdir(parents=True)
    for p in (shared_home / "engines").iterdir():
        shutil.copy(p, home / "engines" / p.name)
    monkeypatch.setenv("ZOO_HOME", str(home))
    removed = zoo.Cache().prune(older_than=3600, now=__import__("time").time() + 7200)
    assert removed["engines"] and not list((home / "engines").iterdir())


# --- zoo export --onnx


@pytest.mark.slow
def test_export_onnx_of_a_run_runs_in_stock_onnxruntime_with_its_classes_and_preprocessing(shared_home, small_run,
                                                                                        small_digits, tmp_path):
    import onnxruntime

    run_dir, _ = small_run
    out = tmp_path / "digits.onnx"
    done = run_zoo("export", str(run_dir), "--onnx", str(out), env={"ZOO_HOME": str(shared_home), "ZOO_OFFLINE": "1"},
                   timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    pre = json.loads(meta["preprocessing"])
    assert pre["crop"] == [224, 224] and pre["resize"] == 256 and pre["interpolation"] == "bicubic"
    model = zoo.load(run_dir)
    batch = torch.stack(_digit_batch(model, small_digits))
    logits = session.run(None, {"images": batch.numpy()})[0]
    with torch.inference_mode():
        reference = model(batch).numpy()
    assert float(np.abs(logits - reference).max() / np.abs(reference).max()) <= 1e-4
    # the two exports exclude each other, and a second export needs --overwrite
    both = run_zoo("export", str(run_dir), "--onnx", str(out), "--merged", str(tmp_path / "m"))
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    again = run_zoo("export", str(run_dir), "--onnx", str(out), env={"ZOO_HOME": str(shared_home), "ZOO_OFFLINE": "1"})
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_the_readme_snippet_runs_an_exported_model_without_zoo(shared_home, tmp_path):
    """The README's lines, run as written (paths replaced) in a process that cannot import zoo."""
    import skimage.data
    from PIL import Image

    out = zoo.export_onnx(zoo.load("efficientnet_lite0"), tmp_path / "lite0.onnx")
    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "cat.jpg")
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```python\n# zoo export --onnx") + len("```python\n")
    code = readme[start:readme.index("```", start)]
    code = code.replace('"model.onnx"', repr(str(out))).replace('"cat.jpg"', repr(str(tmp_path / "cat.jpg")))
    blocker = "import sys; sys.modules['zoo'] = None\n"
    done = subprocess.run([sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0].strip() in ("tiger cat", "Egyptian cat", "tabby, tabby cat")


# --- without the extra


@pytest.mark.slow
def test_without_the_fast_extra_auto_is_torch_and_onnxruntime_says_what_to_install(small_digits, tmp_path):
    code = f"""
import sys
for m in ("onnxruntime", "onnx", "onnxscript"):
    sys.modules[m] = None  # as if the fast extra were not installed
from zoo.model import engine
from zoo.errors import MissingExtra
assert engine.choose("auto") == "torch", engine.choose("auto")
try:
    engine.choose("onnxruntime")
except MissingExtra as exc:
    print("refused:", exc)
from zoo.cli import main
sys.exit(main(["extract", "efficientnet_lite0", "--data", {str(small_digits)!r}, "--out", {str(tmp_path / 'f.h5')!r},
               "--engine", "auto"]))
"""
    env = {**os.environ, "ZOO_OFFLINE": "1"}
    env.pop("ZOO_ENGINE", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: --engine onnxruntime needs onnxruntime, onnx, onnxscript: pip install 'zoo-hub[fast]'" in done.stdout
    assert (tmp_path / "f.h5").is_file()
    assert not os.path.exists(os.path.join(os.environ["ZOO_HOME"], "engines"))  # no graph was built
