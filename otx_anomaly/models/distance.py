"""PaDiM's Mahalanobis distance in a scaled form, for the exported graph: the same scores, and a
matrix product that INT8 can take.

anomalib computes, per patch position, ``d^2 = delta^T A delta`` with ``delta = x - mean`` and ``A``
the inverse covariance. Reading ``A`` (4096 matrices of 100x100 float32 at 256x256, 164 MB) is
most of PaDiM's time once the backbone is INT8: at batch 1 the product is bound by memory reads,
and OpenVINO folds weight-only compression (FP16 or INT8 ``A``) back to float32 for this batched
product, so compressed weights save nothing. A real INT8 product reads a quarter of the bytes, but
quantizing ``delta`` and ``A`` as they are ruins the scores: one 8-bit scale per tensor cannot
cover channels whose spreads differ by orders of magnitude.

With ``s = sqrt(diag(A))`` per position, ``d^2 = (s * delta)^T (A / (s s^T)) (s * delta)`` exactly.
The scaled matrix has a unit diagonal and every other entry in (-1, 1) (``A`` is positive
definite), and each scaled channel of ``s * delta`` is in units of its conditional standard
deviation, so one 8-bit scale fits all of them. In float32 the scores equal anomalib's up to
rounding (tested); the INT8 model quantizes this product (``deploy/quantization.py`` says when).

The scaled matrix is symmetric, so only its upper block rows are stored: with the channels split
in halves ``a`` and ``b``, ``d^2 = a^T [A11, 2 A12] [a; b] + b^T A22 b``, two products that read 3/4
of the bytes (123 MB instead of 164 MB at 256x256), the same sum in another order.

The products take the embedding positions first, ``(P, 1, B, C)``, and the matrices as
``(P, 1, C/2, C)``: OpenVINO runs them as batched ``MatMul`` nodes, one ``B``-row product per
position, where the 3-D form ``(P, B, C)`` becomes ``FullyConnected`` nodes that are slower at
batch 1. The channels-last permute that gets there costs less than a transpose of ``(B, C, P)``,
and the sums over channels are products with a row of ones, which OpenVINO runs faster than its
``ReduceSum`` over that layout. The same sums in another order: the exported maps equal anomalib's
to float rounding.

Example:
    >>> import torch
    >>> from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator
    >>> mean, inverse = torch.zeros(8, 16), torch.eye(8).repeat(16, 1, 1) * 4
    >>> scaled = ScaledMahalanobis(mean, inverse)
    >>> embedding = torch.randn(1, 8, 4, 4)
    >>> expected = AnomalyMapGenerator.compute_distance(embedding, [mean, inverse])
    >>> bool(torch.allclose(scaled.compute_distance(embedding), expected, atol=1e-5))
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from otx_anomaly.export_names import MAP_UPSAMPLING


class ScaledMahalanobis(nn.Module):
    """PaDiM's anomaly map from one fitted Gaussian, with the distance in the scaled form above:
    the export network's map generator (see the module docstring).

    Args:
        mean: the Gaussians' means, ``(C, P)``.
        inv_covariance: their inverse covariances, ``(P, C, C)``.
        order: the channel order of the embeddings it will see, as indices into the Gaussians'
            channels (default: the same order); applied while the scaled blocks are copied.
        upsample: takes the ``(B, 1, h, w)`` distances to the map at the input size (anomalib's
            upsampling and blur); default: none, the map is the distances.
    """

    def __init__(self, mean: torch.Tensor, inv_covariance: torch.Tensor, order: torch.Tensor | None = None,
                 upsample: nn.Module | None = None) -> None:
        super().__init__()
        # named as otx_anomaly.export_names says: INT8 keeps these nodes in float, the distance's products not
        self.add_module(MAP_UPSAMPLING, upsample if upsample is not None else nn.Identity())
        inverse, mean = inv_covariance.detach(), mean.detach()
        if order is None:
            order = torch.arange(mean.shape[0], device=mean.device)
        scale = inverse.diagonal(dim1=1, dim2=2)[:, order].clamp_min(torch.finfo(inverse.dtype).tiny).sqrt()  # (P, C)

        def scaled_block(rows: slice, columns: slice) -> torch.Tensor:
            """A block of ``A / (s s^T)`` in the embedding's channel order, scaled in place as it is copied."""
            block = inverse[:, order[rows, None], order[None, columns]]
            block /= scale[:, rows, None]
            block /= scale[:, None, columns]
            return block

        # the upper block rows of the symmetric scaled matrix (module docstring): 3/4 of one matrix
        half = len(order) // 2
        upper = scaled_block(slice(None, half), slice(None))
        upper[:, :, half:] *= 2
        lower = scaled_block(slice(half, None), slice(half, None))
        # positions first, as the products take them (module docstring)
        self.register_buffer("mean", mean[order].T.contiguous())  # (P, C)
        self.register_buffer("scale", scale.contiguous())  # (P, C)
        self.register_buffer("upper_rows", upper.unsqueeze(1))  # (P, 1, C/2, C): [A11, 2 A12]
        self.register_buffer("lower_block", lower.unsqueeze(1))  # (P, 1, C/2, C/2): A22

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """The anomaly map: the distances, upsampled.

        Args:
            embedding: ``(B, C, h, w)`` patch embeddings.
        """
        return self.get_submodule(MAP_UPSAMPLING)(self.compute_distance(embedding))

    def compute_distance(self, embedding: torch.Tensor) -> torch.Tensor:
        """The Mahalanobis distance per position, ``(B, 1, h, w)``.

        Args:
            embedding: ``(B, C, h, w)`` patch embeddings.
        """
        batch, channels, height, width = embedding.shape
        positions = height * width
        channels_last = embedding.permute(0, 2, 3, 1).reshape(batch, positions, channels)
        scaled = ((channels_last - self.mean) * self.scale).transpose(0, 1).unsqueeze(1)  # (P, 1, B, C)
        half = self.upper_rows.shape[-2]
        # the sums over channels as products with ones (module docstring); they stay in float, since
        # only ``aten::matmul`` is quantized (deploy/quantization.py's DISTANCE_PRODUCT)
        ones = torch.ones(1, channels, dtype=embedding.dtype, device=embedding.device)
        upper = F.linear(torch.matmul(scaled[..., :half], self.upper_rows) * scaled, ones)
        lower = F.linear(torch.matmul(scaled[..., half:], self.lower_block) * scaled[..., half:], ones[:, :half])
        squared = (upper + lower).reshape(positions, batch).transpose(0, 1)
        return squared.reshape(batch, 1, height, width).clamp(0).sqrt()
