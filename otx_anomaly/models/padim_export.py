"""PaDiM as the exported graph computes it: anomalib's maths, rearranged for inference speed.

Three exact rewrites of anomalib's ``PadimModel`` forward, each chosen from OpenVINO's per-node
counters (the benchmarks' stage profile, docs/benchmarks.md):

- **Channels picked before they are upsampled.** anomalib concatenates all 448 channels of layers
  1-3 (layers 2 and 3 upsampled) and then keeps its random 100. Picking each layer's share first
  and upsampling only those gives the same embedding, in sorted channel order, and spares the
  copies and upsampling of the channels anomalib then drops; the Gaussians are permuted once to
  that order, so every distance is the same sum in another order.
- **The distance in the scaled form** (:class:`~otx_anomaly.models.distance.ScaledMahalanobis`):
  the same scores, a product INT8 can take, and only the upper block rows of the symmetric
  matrices (3/4 of the bytes), computed positions first (the module's docstring).
- **Upsampling and blur as two matrix products**
  (:class:`~otx_anomaly.models.map_products.SeparableProducts`; 10 MFLOP for a 64x64 map to
  256x256, about what the upsampling and the two 1-D blur passes cost). OpenVINO's resize and
  convolution passes on a one-channel map run far below the machine's speed and leave the map in a
  channels-last layout, where every element-wise step of the post-processing runs one channel at a
  time; the products keep it plain.

Tiled (:mod:`otx_anomaly.models.tiling`), the graph cuts its input into the tiles, scores each
with the Gaussians shared by the tiles, and stitches the distances before the products, as
:class:`~otx_anomaly.models.padim.Padim` does.

Maps and scores equal anomalib's to float rounding (``tests/test_models.py``). The model itself
keeps anomalib's modules (eager parity, checkpoints); only :meth:`Padim.export_network` builds this.

Example:
    >>> import torch
    >>> from otx_anomaly.models import Padim
    >>> model = Padim(pre_trained=False).eval()
    >>> model.model.gaussian.mean = torch.zeros(100, 64 * 64)
    >>> model.model.gaussian.inv_covariance = torch.eye(100).repeat(64 * 64, 1, 1)
    >>> network = PadimExportNetwork(model.model, image_size=(256, 256))
    >>> images = torch.rand(1, 3, 256, 256)
    >>> with torch.no_grad():
    ...     expected, actual = model.model(images).anomaly_map, network(images).anomaly_map
    >>> bool(torch.allclose(actual, expected, rtol=1e-4, atol=1e-4))
    True
"""

from __future__ import annotations

import torch
from anomalib.data import InferenceBatch
from anomalib.models.image.padim.torch_model import PadimModel
from torch import nn
from torch.nn import functional as F  # noqa: N812

from otx_anomaly.export_names import MAP_GENERATOR
from otx_anomaly.models.backbone import feature_shapes
from otx_anomaly.models.distance import ScaledMahalanobis
from otx_anomaly.models.map_products import SeparableProducts
from otx_anomaly.models.tiling import TileGrid


class Untile(nn.Module):
    """The tiles' maps stitched (:meth:`TileGrid.untile`), as a module of the graph."""

    def __init__(self, tiling: TileGrid) -> None:
        super().__init__()
        self.tiling = tiling

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.tiling.untile(tiles)


class PadimExportNetwork(nn.Module):
    """anomalib's ``PadimModel`` forward with the rewrites of the module docstring; same outputs
    (``InferenceBatch`` with ``pred_score`` and ``anomaly_map``).

    Args:
        model: a fitted ``PadimModel`` (its feature extractor is shared, not copied).
        image_size: the network's input (height, width).
        tiling: the tiles the input is cut into; ``None``: untiled.
    """

    def __init__(self, model: PadimModel, image_size: tuple[int, int], tiling: TileGrid | None = None) -> None:
        super().__init__()
        self.feature_extractor, self.layers, self.tiling = model.feature_extractor, list(model.layers), tiling
        shapes = feature_shapes(self.feature_extractor, image_size if tiling is None else tiling.tile_size)
        self.map_size = tuple(shapes[self.layers[0]][-2:])
        device = model.gaussian.mean.device
        kept, order = model.idx.cpu().sort()  # the kept channels, sorted: grouped by layer
        #: per layer that keeps channels: the buffer of its channels, the layer, whether it is upsampled.
        #: Decided here, at the export's input size, so that the traced graph has no branch on a tensor.
        self.picks: list[tuple[str, str, bool]] = []
        first = 0
        for number, layer in enumerate(self.layers):
            count = shapes[layer][1]
            chosen = kept[(kept >= first) & (kept < first + count)] - first
            if len(chosen):
                self.register_buffer(f"channels_{number}", chosen.to(device))
                self.picks.append((f"channels_{number}", layer, tuple(shapes[layer][-2:]) != self.map_size))
            first += count
        generator = model.anomaly_map_generator  # anomalib's: its upsampling and blur, as two products
        stitched = self.map_size if tiling is None else tiling.stitched_size(self.map_size)
        upsample = SeparableProducts(lambda maps, size: generator.smooth_anomaly_map(generator.up_sample(maps, size)),
                                     stitched, image_size, device)
        if tiling is not None:
            upsample = nn.Sequential(Untile(tiling), upsample)
        # named as otx_anomaly.export_names says: INT8 and the stage profile find the map's nodes by it
        self.add_module(MAP_GENERATOR, ScaledMahalanobis(model.gaussian.mean, model.gaussian.inv_covariance,
                                                         order.to(device), upsample))

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Score ``(B, 3, H, W)`` images at the network's input size; tiled, the backbone takes the
        tiles in groups (:meth:`TileGrid.tile_batches`), one after another."""
        if self.tiling is None:
            embedding = self._embedding(images)
        else:
            embedding = self.tiling.join_batches([self._embedding(group) for group in self.tiling.tile_batches(images)])
        # called as a module, so that its nodes carry its name in the exported graph
        anomaly_map = self.get_submodule(MAP_GENERATOR)(embedding)
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)

    def _embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The kept channels of the backbone's layers, at the first layer's size."""
        features = self.feature_extractor(images)
        parts = []
        for channels, layer, upsampled in self.picks:
            part = features[layer].index_select(1, getattr(self, channels))
            parts.append(F.interpolate(part, size=self.map_size, mode="nearest") if upsampled else part)
        return torch.cat(parts, 1)
