"""PaDiM as the exported graph computes it: anomalib's maths, rearranged for inference speed.

Three exact rewrites of anomalib's ``PadimModel`` forward, each measured in OpenVINO's per-node
counters on a 2-core Intel Xeon (ISA AVX2, AVX-512F, AVX-512 VNNI, AVX-VNNI, AMX; resnet18,
256x256, BSData frames, FP32; ``benchmarks/export_speed.py`` prints the stage profile):

- **Channels picked before they are upsampled.** anomalib concatenates all 448 channels of layers
  1-3 (layers 2 and 3 upsampled) and then keeps its random 100. Picking each layer's share first
  and upsampling only those gives the same embedding, in sorted channel order; the Gaussians are
  permuted once to that order, so every distance is the same sum in another order. The concat,
  upsample and reorder of the 448 channels took 2.3 ms per image (a one-off reading of the
  per-node counters; the stage profile counts them in the backbone).
- **The distance in the scaled form** (:class:`~otx_anomaly.models.distance.ScaledMahalanobis`):
  the same scores, a product INT8 can take, and only the upper block rows of the symmetric
  matrices (3/4 of the bytes; the distance alone 1.2x to 1.3x faster at batch 1 and 0.93x to
  1.01x at batch 8 on a 2-core Intel Xeon, ISA AVX2, AVX-512F, AVX-512 VNNI, AVX-VNNI, AMX;
  ``benchmarks/distance_speed.py``), computed positions first (the module's docstring).
- **Upsampling and blur as two matrix products**
  (:class:`~otx_anomaly.models.map_products.SeparableProducts`; 10 MFLOP for a 64x64 map to
  256x256, about what the upsampling and the two 1-D blur passes cost). The passes took 0.75 ms
  and left the map in a channels-last layout, where OpenVINO ran each element-wise step of the
  post-processing one channel at a time (1.9 ms for six comparisons and selects on a 256x256 map);
  now about 0.1 ms and 0.2 ms.

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

from otx_anomaly.models.backbone import feature_shapes
from otx_anomaly.models.distance import ScaledMahalanobis
from otx_anomaly.models.map_products import SeparableProducts


class PadimExportNetwork(nn.Module):
    """anomalib's ``PadimModel`` forward with the rewrites of the module docstring; same outputs
    (``InferenceBatch`` with ``pred_score`` and ``anomaly_map``).

    Args:
        model: a fitted ``PadimModel`` (its feature extractor is shared, not copied).
        image_size: the network's input (height, width).
    """

    def __init__(self, model: PadimModel, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.feature_extractor, self.layers = model.feature_extractor, list(model.layers)
        shapes = feature_shapes(self.feature_extractor, image_size)
        self.map_size = tuple(shapes[self.layers[0]][-2:])
        device = model.gaussian.mean.device
        kept, order = model.idx.cpu().sort()  # the kept channels, sorted: grouped by layer
        first = 0
        for number, layer in enumerate(self.layers):
            count = shapes[layer][1]
            chosen = kept[(kept >= first) & (kept < first + count)] - first
            self.register_buffer(f"channels_{number}", chosen.to(device))
            first += count
        self.anomaly_map_generator = ScaledMahalanobis(model.anomaly_map_generator, model.gaussian.mean,
                                                       model.gaussian.inv_covariance, order.to(device))
        # anomalib's generator smooths with ``blur`` after its own upsampling, which is skipped here
        # (no image_size): this blur upsamples too
        generator = model.anomaly_map_generator
        self.anomaly_map_generator.blur = SeparableProducts(
            lambda maps: generator.smooth_anomaly_map(generator.up_sample(maps, image_size)), self.map_size, device)

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Score ``(B, 3, H, W)`` images at the network's input size."""
        features = self.feature_extractor(images)
        parts = []
        for number, layer in enumerate(self.layers):
            chosen = getattr(self, f"channels_{number}")
            if len(chosen):
                part = features[layer].index_select(1, chosen)
                parts.append(part if part.shape[-2:] == self.map_size else F.interpolate(part, size=self.map_size,
                                                                                      mode="nearest"))
        generator = self.anomaly_map_generator  # called as a module: its nodes keep its name in the IR
        anomaly_map = generator(embedding=torch.cat(parts, 1), mean=generator.mean,  # the generator ignores
                                inv_covariance=generator.lower_block)  # anomalib's stats: it reads its own
        return InferenceBatch(pred_score=torch.amax(anomaly_map, dim=(-2, -1)), anomaly_map=anomaly_map)
