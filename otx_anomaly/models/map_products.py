"""A map-to-map transform that acts on rows and columns separately, as one matrix per axis.

Bilinear upsampling and a Gaussian blur with reflect borders are linear and separable: each output
row mixes input rows, each output column input columns. Any chain of them is then
``R @ map @ C`` with ``R`` of shape ``(H, h)`` and ``C`` of shape ``(w, W)``. In the exported
graphs this replaces OpenVINO's ``Interpolate`` and convolution nodes on one-channel maps, which
run far below the machine's speed and can leave the map in a channels-last layout that slows
every step after them (the benchmarks' stage profile shows the share of each stage).

The matrices are read off the eager transform itself, applied to basis maps that vary along one
axis and are constant along the other (both operations keep a constant a constant: the blur's
kernel sums to one), so they are anomalib's operators, not a re-derivation; results equal the
transform to float rounding. The constant axis is kept narrow (:data:`CONSTANT_SIDE`, at its own
size, where the upsampling is the identity), so reading the matrices of a 4096x4096 map costs
hundreds of megabytes, not the tens of gigabytes of full-size basis maps.

Example:
    >>> import torch
    >>> from torch.nn import functional as F
    >>> upsample = lambda m, size: F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    >>> products = SeparableProducts(upsample, map_size=(8, 12), output_size=(32, 48))
    >>> maps = torch.rand(2, 1, 8, 12)
    >>> bool(torch.allclose(products(maps), upsample(maps, (32, 48)), atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: the side of the constant axis of the basis maps: wider than the blur's reflect padding (16)
CONSTANT_SIDE = 40


class SeparableProducts(nn.Module):
    """``transform`` as two matrix products (see the module docstring).

    Args:
        transform: the eager transform ``(maps, (H, W))`` of ``(N, 1, h, w)`` maps to ``(N, 1, H, W)``,
            linear and separable, the identity along an axis whose size it keeps.
        map_size: the input maps' (h, w).
        output_size: the output maps' (H, W).
        device: where ``transform`` runs and the matrices stay (the model's device).
    """

    def __init__(self, transform: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor], map_size: tuple[int, int],
                 output_size: tuple[int, int], device: torch.device | str | None = None) -> None:
        super().__init__()
        (height, width), (out_height, out_width), side = map_size, output_size, CONSTANT_SIDE
        with torch.no_grad():
            rows = transform(torch.eye(height, device=device).reshape(height, 1, height, 1).expand(-1, -1, -1, side),
                             (out_height, side))
            columns = transform(torch.eye(width, device=device).reshape(width, 1, 1, width).expand(-1, -1, side, -1),
                                (side, out_width))
        self.register_buffer("rows", rows[:, 0, :, side // 2].T.contiguous())  # (H, h)
        self.register_buffer("columns", columns[:, 0, side // 2, :].contiguous())  # (w, W)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``(N, 1, h, w)`` maps to ``(N, 1, H, W)``."""
        return torch.matmul(torch.matmul(self.rows, maps), self.columns)
