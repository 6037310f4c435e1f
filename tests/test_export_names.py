"""The names INT8 quantization and the stage profile find layers by reach every model's exported graph.

A model that renames one of the modules named in ``otx_anomaly.export_names`` fails here, instead of
silently changing what INT8 keeps in floating point.
"""

from __future__ import annotations

import re

import openvino as ov
import pytest
import torch

from otx_anomaly.deploy import export_model
from otx_anomaly.deploy.quantization import DISTANCE_PRODUCT, FLOAT_SCOPE, has_distance_product
from otx_anomaly.deploy.resize import RESIZE_PREFIX
from otx_anomaly.export_names import (
    BACKBONES,
    MAP_GENERATOR,
    MAP_UPSAMPLING,
    NETWORK,
    POST_PROCESSOR,
    PRE_PROCESSOR,
    node_prefix,
)
from otx_anomaly.models import Padim, Stfpm
from tests.helpers import SMALL

#: per model: its backbones (of BACKBONES) and how many distance products INT8 may quantize
EXPECTED = {Padim: (("feature_extractor",), 2), Stfpm: (("teacher_model", "student_model"), 0)}


def _export(model_class, folder) -> ov.Model:
    """A tiny model's OpenVINO export (random backbone; Gaussians and thresholds set by hand: the
    graph's structure is what counts here, not its values)."""
    model = model_class(**SMALL)
    if model_class is Padim:
        positions = 16 * 16  # resnet18's layer1 at 64x64
        model.model.gaussian.mean = torch.zeros(100, positions)
        model.model.gaussian.inv_covariance = torch.eye(100).repeat(positions, 1, 1)
    model.post_processor.set_normalization(image_min=0.0, image_max=1.0, pixel_min=0.0, pixel_max=1.0)
    model.post_processor.set_thresholds(image=0.5, pixel=0.5, rules={"image": "manual", "pixel": "manual"})
    return ov.Core().read_model(export_model(model, folder))


@pytest.mark.parametrize("model_class", [Padim, Stfpm])
def test_every_name_the_int8_scope_and_the_stage_profile_rely_on_is_in_the_exported_graph(model_class, tmp_path):
    model = _export(model_class, tmp_path / "fp32")
    names = [op.get_friendly_name() for op in model.get_ops()]
    backbones, products = EXPECTED[model_class]

    def nodes(*path: str) -> list[str]:
        prefix = node_prefix(*path)
        return [name for name in names if name.startswith((prefix + "/", prefix + "."))]

    for part in (PRE_PROCESSOR, NETWORK, POST_PROCESSOR):
        assert nodes(part), f"no node of the export graph's {part}"
    assert nodes(NETWORK, MAP_GENERATOR) and nodes(NETWORK, MAP_GENERATOR, MAP_UPSAMPLING)
    assert [b for b in BACKBONES if nodes(NETWORK, b)] == list(backbones)
    assert [n for n in names if n.startswith(RESIZE_PREFIX)], "the embedded resize"
    for pattern in FLOAT_SCOPE:
        assert [n for n in names if re.fullmatch(pattern, n)], pattern
    # PaDiM's two block products of models/distance.py: the generator's own, not its upsampling's
    distance = [n for n in nodes(NETWORK, MAP_GENERATOR) if re.fullmatch(DISTANCE_PRODUCT, n)]
    assert len(distance) == products and not [n for n in distance if MAP_UPSAMPLING in n]
    assert has_distance_product(model) is bool(products)
