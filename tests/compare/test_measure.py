"""Computed and timed figures (zoo/compare/measure.py)."""

import pytest

from zoo.compare.measure import gmacs


def test_gmacs_match_the_published_figure():
    # tools/reference/torchvision-weights.csv: ResNet50 at 224, "GFLOPS" 4.089 (torchvision counts MACs)
    assert gmacs("resnet50", (3, 224, 224)) == pytest.approx(4.1, rel=0.05)


def test_gmacs_scale_with_the_input_area():
    assert gmacs("resnet50", (3, 448, 448)) == pytest.approx(4 * gmacs("resnet50", (3, 224, 224)), rel=0.02)
