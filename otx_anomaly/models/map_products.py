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
transform to float rounding.

Example:
    >>> import torch
    >>> from torch.nn import functional as F
    >>> upsample = lambda m: F.interpolate(m, size=(32, 48), mode="bilinear", align_corners=False)
    >>> products = SeparableProducts(upsample, map_size=(8, 12))
    >>> maps = torch.rand(2, 1, 8, 12)
    >>> bool(torch.allclose(products(maps), upsample(maps), atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SeparableProducts(nn.Module):
    """``transform`` as two matrix products (see the module docstring).

    Args:
        transform: the eager transform of ``(N, 1, h, w)`` maps, linear and separable.
        map_size: the input maps' (h, w).
        device: where ``transform`` runs and the matrices stay (the model's device).
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], map_size: tuple[int, int],
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        height, width = map_size
        with torch.no_grad():
            rows = transform(torch.eye(height, device=device).reshape(height, 1, height, 1).expand(-1, -1, -1, width))
            columns = transform(torch.eye(width, device=device).reshape(width, 1, 1, width).expand(-1, -1, height, -1))
        self.register_buffer("rows", rows[:, 0, :, 0].T.contiguous())  # (H, h)
        self.register_buffer("columns", columns[:, 0, 0, :].contiguous())  # (w, W)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``(N, 1, h, w)`` maps to ``(N, 1, H, W)``."""
        return torch.matmul(torch.matmul(self.rows, maps), self.columns)
