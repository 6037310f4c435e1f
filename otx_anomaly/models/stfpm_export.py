"""STFPM as the exported graph computes it: anomalib's map, with each layer's upsampling as two
matrix products (:class:`~otx_anomaly.models.map_products.SeparableProducts`).

anomalib upsamples each layer's map (64x64, 32x32 and 16x16 for resnet18 at 256x256) to the image
size with a bilinear ``Interpolate`` before multiplying them. Those one-channel resizes stay in
float in the INT8 model, where OpenVINO runs them far below the machine's speed; as products they
cost a fraction (the benchmarks' stage profile, docs/benchmarks.md). Maps equal anomalib's to float
rounding (``tests/test_models.py``); the model keeps anomalib's generator for training, testing and
checkpoints.

Example:
    >>> import torch
    >>> from otx_anomaly.models import Stfpm
    >>> model = Stfpm(pre_trained=False).eval()
    >>> network = model.export_network()
    >>> images = torch.rand(1, 3, 256, 256)
    >>> with torch.no_grad():
    ...     expected, actual = model.model(images).anomaly_map, network(images).anomaly_map
    >>> bool(torch.allclose(actual, expected, rtol=1e-4, atol=1e-6))
    True
"""

from __future__ import annotations

import copy

import torch
from anomalib.models.image.stfpm.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.stfpm.torch_model import STFPMModel
from torch import nn
from torch.nn import functional as F  # noqa: N812

from otx_anomaly.export_names import MAP_GENERATOR, MAP_UPSAMPLING
from otx_anomaly.models.backbone import feature_shapes
from otx_anomaly.models.map_products import SeparableProducts
from otx_anomaly.models.tiling import TileGrid


class UpsampledLayerMaps(AnomalyMapGenerator):
    """anomalib's STFPM map generator with each layer map upsampled by matrix products.

    Args:
        layer_sizes: each layer's feature map (height, width), by layer name.
        image_size: the map's (height, width), the network's input size.
        device: the model's device.
    """

    def __init__(self, layer_sizes: dict[str, tuple[int, int]], image_size: tuple[int, int],
                 device: torch.device | str | None = None) -> None:
        super().__init__()

        def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # anomalib's compute_layer_map's
            return F.interpolate(maps, size=size, align_corners=False, mode="bilinear")

        # named as otx_anomaly.export_names says: INT8 and the stage profile find the map's nodes by it
        self.add_module(MAP_UPSAMPLING, nn.ModuleDict({layer: SeparableProducts(upsample, size, image_size, device)
                                                       for layer, size in layer_sizes.items()}))

    def compute_anomaly_map(self, teacher_features: dict[str, torch.Tensor], student_features: dict[str, torch.Tensor],
                            image_size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor:
        """The product of the layer maps, each anomalib's (half the squared distance between the
        normalized features), upsampled to the image size.

        Args:
            teacher_features: the teacher's features by layer.
            student_features: the student's features by layer.
            image_size: unused: the size the products were built for.
        """
        anomaly_map, upsample = None, self.get_submodule(MAP_UPSAMPLING)
        # anomalib's compute_layer_map resizes inside it (an Interpolate even to the same size), so
        # its two lines of arithmetic are written here and the resize is the products'
        for layer, teacher in teacher_features.items():
            distance = F.normalize(teacher) - F.normalize(student_features[layer])
            layer_map = upsample[layer](0.5 * torch.norm(distance, p=2, dim=-3, keepdim=True) ** 2)
            anomaly_map = layer_map if anomaly_map is None else anomaly_map * layer_map
        return anomaly_map


def stfpm_export_network(model: STFPMModel, image_size: tuple[int, int], tiling: TileGrid | None = None) -> nn.Module:
    """A shallow copy of ``model`` (the networks are shared) whose map generator is
    :class:`UpsampledLayerMaps`; tiled, anomalib's forward cuts and stitches with ``tiling``.

    Args:
        model: anomalib's ``STFPMModel``.
        image_size: the network's input (height, width).
        tiling: the tiles the input is cut into; ``None``: untiled.
    """
    shapes = feature_shapes(model.teacher_model, image_size if tiling is None else tiling.tile_size)
    device = next(model.teacher_model.parameters()).device
    sizes = {layer: tuple(shape[-2:]) for layer, shape in shapes.items()}
    if tiling is not None:  # the stitched maps: each layer's size over the whole input
        sizes = {layer: tiling.stitched_size(size) for layer, size in sizes.items()}
    generator = UpsampledLayerMaps(sizes, image_size, device)
    network = copy.copy(model)
    network._modules = {**model._modules, MAP_GENERATOR: generator}  # noqa: SLF001 - anomalib's forward calls it
    network.tiler = tiling
    return network
