"""zoo.load, transforms, decode, freezing and heads on the bundled real weights (zoo/api.py, zoo/model/)."""

import pytest
import torch
from PIL import Image

import zoo
from zoo.errors import UsageError
from zoo.model.heads import param_modules

from conftest import ROOT, run_zoo


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")


@pytest.fixture(scope="module")
def photos():
    from skimage import data
    from sklearn.datasets import load_sample_images

    return {"chelsea": Image.fromarray(data.chelsea()), "china": Image.fromarray(load_sample_images().images[0])}


def _top(model, image, k=3):
    x = zoo.transforms(model)(image).unsqueeze(0)
    with torch.inference_mode():
        return [label for label, _ in zoo.decode(model(x), top=k)[0]]


CATS = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


def test_lite0_recognises_real_photos(photos):
    model = zoo.load("efficientnet_lite0")
    assert model.card.name == "tf_efficientnet_lite0.bundled_in1k" and not model.training
    assert model.weights_sha256 == model.card.sha256
    assert CATS & set(_top(model, photos["chelsea"]))
    assert "palace" in _top(model, photos["china"])


def test_the_same_through_torch_hub_local(photos):
    model = torch.hub.load(str(ROOT), "efficientnet_lite0", source="local", trust_repo=True)
    assert CATS & set(_top(model, photos["chelsea"]))


def test_new_head_keeps_every_backbone_tensor():
    base = zoo.load("efficientnet_lite0")
    model = zoo.load("efficientnet_lite0", head=10)
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 10)
    base_sd, sd = base.state_dict(), model.state_dict()
    differing = {k for k in sd if not torch.equal(sd[k], base_sd[k]) or sd[k].shape != base_sd[k].shape}
    assert differing == {"classifier.weight", "classifier.bias"}


def test_head_as_class_names_and_as_module():
    model = zoo.load("efficientnet_lite0", head=["cat", "dog", "bird"])
    assert model.class_names == ["cat", "dog", "bird"]
    out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 3)
    assert sorted(label for label, _ in zoo.decode(out, top=3, model=model)[0]) == ["bird", "cat", "dog"]
    head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(1280, 7))
    model = zoo.load("efficientnet_lite0", head=head)
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 7) and model.classifier is head


def test_pooled_features_and_feature_maps():
    model = zoo.load("efficientnet_lite0", head=0, pool="max")
    x = torch.randn(2, 3, 224, 224)
    assert model(x).shape == (2, model.num_features)
    maps = zoo.load("efficientnet_lite0", head=0, pool=None)(x)
    assert maps.shape == (2, 1280, 7, 7)
    assert torch.allclose(model(x), maps.amax(dim=(2, 3)), atol=1e-5)
    fmodel = zoo.load("efficientnet_lite0", features=True)
    outs = fmodel(x)
    assert [224 // o.shape[-1] for o in outs] == fmodel.feature_info.reduction()
    some = zoo.load("efficientnet_lite0", features=True, out_indices=(2, 4))(x)
    assert [o.shape[1] for o in some] == [40, 320]


def test_freeze_n_modules_is_exact_and_an_optimizer_step_moves_only_trainable_tensors():
    model = zoo.load("efficientnet_lite0", head=5, freeze=40)
    modules = param_modules(model)
    for i, (_, m) in enumerate(modules):
        assert all(p.requires_grad == (i >= 40) for p in m.parameters(recurse=False))
    model.train()
    frozen_bn = [m for _, m in modules[:40] if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen_bn and not any(m.training for m in frozen_bn)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(4, 3, 224, 224)).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    after = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen_names = {f"{n}.{k}" for n, m in modules[:40] for k, _ in m.named_parameters(recurse=False)}
    assert all(torch.equal(before[k], after[k]) for k in frozen_names)
    assert any(not torch.equal(before[k], after[k]) for k in trainable)
    for n, m in modules[:40]:  # frozen BN running stats did not move in train mode
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(before[f"{n}.running_mean"], after[f"{n}.running_mean"])


def test_vgg16_freeze_10_is_the_keras_tutorial_cut():
    model = zoo.load("vgg16", pretrained=False, head=2, freeze=10)
    trainable = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"features.24", "features.26", "features.28", "pre_logits.fc1", "pre_logits.fc2", "head.fc"}


def test_freeze_backbone_bn_and_unfreeze():
    model = zoo.load("efficientnet_lite0", head=3, freeze="backbone")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    zoo.unfreeze(model, last=1)
    opened = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
              for n, p in model.named_parameters() if p.requires_grad}
    assert "classifier" in opened and "blocks.0" not in opened and len(opened) > 1
    bn = zoo.load("efficientnet_lite0", freeze="bn")
    assert all(not p.requires_grad for m in bn.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert bn.conv_stem.weight.requires_grad


def test_input_size():
    model = zoo.load("efficientnet_lite0", input_size=(3, 150, 150))
    assert model.data_config["input_size"] == (3, 150, 150)
    assert zoo.transforms(model)(Image.new("RGB", (300, 200))).shape == (3, 150, 150)
    with pytest.raises(UsageError, match="minimum is 75x75"):
        zoo.load("inception_v3", pretrained=False, input_size=(3, 40, 40))
    vit = zoo.load("vit_base_patch16_224", pretrained=False, head=2, input_size=(3, 160, 160))
    assert vit(torch.randn(1, 3, 160, 160)).shape == (1, 2)


def test_bad_arguments_are_usage_errors():
    for kwargs in ({"head": -1}, {"head": "ten"}, {"pool": "median"}, {"freeze": "half"}, {"freeze": 10_000},
                   {"pool": None, "head": 3}):
        with pytest.raises(UsageError):
            zoo.load("efficientnet_lite0", **kwargs)


def test_decode_needs_names_for_other_heads():
    with pytest.raises(UsageError, match="class names"):
        zoo.decode(torch.randn(1, 10))
    assert zoo.decode(torch.tensor([0.0, 5.0]), top=1, class_names=["a", "b"])[0][0][0] == "b"


def test_timm_tag_without_a_card_gets_one_on_the_fly():
    from zoo.model.load import card_for

    card = card_for("convnext_tiny.fb_in22k_ft_in1k")
    assert card.architecture == "convnext_tiny" and card.hub_repo == "timm/convnext_tiny.fb_in22k_ft_in1k"
    assert card.top1 is None and "metrics unknown" in card.notes
    assert card_for("hf://timm/resnet18.a1_in1k").name == "resnet18.a1_in1k"


def test_missing_weights_offline_say_what_to_do():
    from zoo.weights.pull import PullError

    with pytest.raises(PullError, match="zoo pull resnet50.a1_in1k"):
        zoo.load("resnet50")


@pytest.mark.slow  # ~6 s; zoo.predict (tests/model/test_predict.py) and predict on a run stay quick
def test_predict_cli(tmp_path, photos, isolated_env):
    photos["chelsea"].save(tmp_path / "chelsea.jpg")
    (tmp_path / "broken.jpg").write_bytes((tmp_path / "chelsea.jpg").read_bytes()[:2000])
    (tmp_path / "text.png").write_text("not an image")
    env = {"ZOO_OFFLINE": "1", "ZOO_HOME": str(isolated_env)}
    ok = run_zoo("predict", "efficientnet_lite0", str(tmp_path / "chelsea.jpg"), "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    import json

    result = json.loads(ok.stdout)["results"][0]
    assert CATS & {p["label"] for p in result["predictions"][:3]}
    bad = run_zoo("predict", "efficientnet_lite0", str(tmp_path), "--top", "2", env=env)
    assert bad.returncode == 1
    assert "broken.jpg" in bad.stderr and "text.png" in bad.stderr and "Traceback" not in bad.stderr
    assert "chelsea.jpg" in bad.stdout  # the good image was still processed


@pytest.mark.slow
def test_every_card_architecture_loads_with_a_new_head_and_runs(monkeypatch):
    from zoo.cards.registry import get_registry

    torch.set_num_threads(2)
    for card in get_registry().cards:
        model = zoo.load(card.name, pretrained=False, head=3)
        with torch.inference_mode():
            out = model(torch.randn(1, *card.input_size))
        assert out.shape == (1, 3), card.name
        del model


def test_unfreeze_after_train_puts_opened_bn_back_in_train_mode():
    model = zoo.load("efficientnet_lite0", head=3, freeze="backbone")
    model.train()
    assert not model.bn2.training  # frozen with the backbone
    zoo.unfreeze(model, last=1)
    assert model.bn2.training and not model.bn1.training


def test_third_party_noise_goes_to_the_debug_log_not_the_terminal(caplog):
    import logging
    import subprocess
    import sys

    # a fresh process, as a user's script: timm's "Unexpected keys" warning (zoo drops the head on
    # purpose for features=True) never reaches stderr
    code = "import zoo; m = zoo.load('efficientnet_lite0', features=True); print(len(m.feature_info))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "5" and r.stderr == "", r.stderr
    with caplog.at_level(logging.DEBUG, logger="zoo"):
        zoo.load("efficientnet_lite0", features=True)
    said = [r.getMessage() for r in caplog.records if r.name == "zoo.third_party"]
    assert any("Unexpected keys" in m for m in said)
