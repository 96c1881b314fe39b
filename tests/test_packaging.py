"""The wheel is the distribution ``zoo-hub`` (``zoo`` on PyPI is someone else's), carries the
shipped cards as package data, and installs into a fresh venv whose ``zoo`` command works."""

import json
import subprocess
import sys
import zipfile

import pytest

from zoo.errors import DISTRIBUTION

from conftest import CARDS_DIR, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (path,) = out.glob("*.whl")
    return path


def test_the_wheel_is_named_zoo_hub_and_installs_in_a_fresh_venv(wheel, tmp_path):
    assert DISTRIBUTION == "zoo-hub" and wheel.name.startswith("zoo_hub-")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # only zoo-hub itself: the command's --version, and the card listing, need no dependency
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    import zoo

    got = subprocess.run([str(venv / "bin" / "zoo"), "--version"], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.strip()
    assert got == f"zoo {zoo.__version__} (zoo-hub)"
    meta = subprocess.run([str(python), "-c", "import importlib.metadata as m, zoo; "
                           "print(m.version('zoo-hub'), zoo.__file__)"], capture_output=True, text=True, check=True,
                          cwd=tmp_path).stdout.split()
    assert meta[0] == zoo.__version__ and meta[1].startswith(str(venv))
    listed = subprocess.run([str(venv / "bin" / "zoo"), "list", "ResNet50", "--json"], capture_output=True, text=True,
                            check=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "ZOO_HOME": str(tmp_path / "home")})
    assert "resnet50.tv_in1k" in [c["name"] for c in json.loads(listed.stdout)]


def test_wheel_contains_the_cards_and_works_without_the_checkout(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        expected = {f"zoo/shipped_cards/{p.name}" for p in CARDS_DIR.glob("*.toml")}
        assert len(expected) >= 45 and expected <= names
        assert {"zoo/__init__.py", "zoo/cli/__init__.py", "zoo/cli/cards.py", "zoo/cards/card.py", "zoo/cards/registry.py"} <= names
        pages = ROOT / "zoo" / "hub"  # the hub's pages: templates, stylesheet and script are package data
        assert {p.relative_to(ROOT).as_posix() for d in ("templates", "static") for p in (pages / d).iterdir()} <= names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "zoo = zoo.cli:main" in zf.read(entry_points).decode()
        zf.extractall(tmp_path / "site")
    # import the unpacked wheel instead of the checkout: it must find its cards inside the package
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import zoo, zoo.config\n"
        "assert zoo.__file__.startswith(sys.argv[1]), zoo.__file__\n"
        "print(zoo.config.shipped_cards_dir())\n"
        "print(zoo.card('ResNet50').name, len(zoo.list_models()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], check=True, capture_output=True,
                         text=True, cwd=tmp_path).stdout.splitlines()
    assert out[0] == str(tmp_path / "site" / "zoo" / "shipped_cards")
    assert out[1] == f"resnet50.tv_in1k {len(expected)}"
