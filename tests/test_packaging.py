"""The wheel carries the shipped cards as package data, and a non-editable install reads them."""

import subprocess
import sys
import zipfile

import pytest

from conftest import CARDS_DIR, ROOT


@pytest.mark.slow
def test_wheel_contains_the_cards_and_works_without_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("zoo-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        expected = {f"zoo/shipped_cards/{p.name}" for p in CARDS_DIR.glob("*.toml")}
        assert len(expected) >= 45 and expected <= names
        assert {"zoo/__init__.py", "zoo/cli/__init__.py", "zoo/cli/cards.py", "zoo/cards/card.py", "zoo/cards/registry.py"} <= names
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
