"""anomalib's Gaussian blur of the anomaly map, computed as two 1-D passes.

PaDiM smooths its upsampled map with a 33x33 Gaussian (sigma 4). A Gaussian kernel is the outer
product of two 1-D kernels, so convolving with a column and then a row gives the same map with 66
multiply-adds per pixel instead of 1089, in the training, validation and test passes alike.

The module keeps anomalib's ``GaussianBlur2d`` interface and state (the 2-D ``kernel`` buffer, so
anomalib's checkpoints load unchanged); the 1-D kernels are its row and
column sums, which equal the 1-D Gaussians because the 2-D kernel is normalized. The padding
(reflect, "same") is anomalib's. Results equal the 2-D convolution up to float rounding (about
1e-6 of the map's values, tested).

Example:
    >>> import torch
    >>> from anomalib.models.components import GaussianBlur2d
    >>> blur = SeparableGaussianBlur(sigma=(4.0, 4.0), kernel_size=(33, 33))
    >>> x = torch.rand(2, 1, 64, 64)
    >>> reference = GaussianBlur2d(sigma=(4.0, 4.0), kernel_size=(33, 33))(x)
    >>> bool(torch.allclose(blur(x), reference, atol=1e-6))
    True
"""

from __future__ import annotations

import torch
from anomalib.models.components import GaussianBlur2d
from torch.nn import functional as F  # noqa: N812


class SeparableGaussianBlur(GaussianBlur2d):
    """:class:`anomalib.models.components.GaussianBlur2d` with the same kernel applied as a column
    pass and a row pass (see the module docstring)."""

    @classmethod
    def like(cls, blur: GaussianBlur2d) -> SeparableGaussianBlur:
        """The separable form of an existing blur: same kernel, channels, border and padding.

        Args:
            blur: anomalib's blur (for example ``PadimModel.anomaly_map_generator.blur``).
        """
        separable = cls(sigma=1.0, channels=blur.channels, kernel_size=(blur.height, blur.width),
                        border_type=blur.border_type, padding=blur.padding)
        separable.kernel = blur.kernel.clone()  # the exact kernel, whatever sigma made it
        return separable

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:
        """Blur ``(B, C, H, W)`` maps (shape kept with ``padding="same"``)."""
        if self.padding == "same":
            input_tensor = F.pad(input_tensor, self.padding_shape, mode=self.border_type)
        kernel = self.kernel  # (C, 1, kh, kw), normalized
        column = kernel.sum(dim=3, keepdim=True)  # (C, 1, kh, 1)
        row = kernel.sum(dim=2, keepdim=True)  # (C, 1, 1, kw)
        output = F.conv2d(input_tensor, column, groups=self.channels)
        return F.conv2d(output, row, groups=self.channels)
