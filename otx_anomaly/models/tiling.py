"""Tiling: a large model input cut into tiles that the backbone sees at their own resolution, and
what the networks compute on the tiles stitched back into one map.

A 1024x1024 image resized to 256x256 loses three quarters of its resolution in each direction, and
a defect of a few pixels with it. With tiling, the model input (``image_size``) can be as large as
the image itself: it is cut into ``tile_size`` tiles every ``stride`` pixels, the backbone runs on
the tiles in batches of :data:`TILE_BATCH` (memory bounded by the batch, not the image), and the
tiles' feature or distance maps are stitched back, overlaps averaged. The grid is anomalib's
(``anomalib.data.utils.tiler.Tiler``: the same tile order and the same averaging, tested), in a
form the exported graph can carry: tiles are slices, and stitching is one ``fold`` (OpenVINO's
``Col2Im``), so a tiled model exports as one graph that still takes a frame of any size.

Unlike anomalib's ``Tiler``, the grid must cover the input exactly (``image_size - tile_size`` a
multiple of ``stride``): anomalib pads or stretches the input to fit, which changes what a pixel
means near the border. :meth:`TileGrid.create` names the nearest sizes that fit.

Example:
    >>> import torch
    >>> grid = TileGrid.create(image_size=(512, 512), tile_size=256, stride=128)
    >>> images = torch.rand(2, 3, 512, 512)
    >>> tiles = grid.tile(images)
    >>> tiles.shape
    torch.Size([18, 3, 256, 256])
    >>> bool(torch.allclose(grid.untile(tiles), images))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F  # noqa: N812

from otx_anomaly.errors import ConfigError

#: tiles per backbone pass: bounds the activations' memory, whatever the input size
TILE_BATCH = 16
#: tile sizes and strides are multiples of this: the largest stride of the backbones' layers, so
#: that every layer's feature map has whole positions per tile and per step
TILE_MULTIPLE = 32


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) <= 0 or any(v % TILE_MULTIPLE for v in pair):
        raise ConfigError(f"{name} must be a positive multiple of {TILE_MULTIPLE} or [height, width] of them, "
                          f"got {value!r}.")
    return pair


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a model input lie, and how to cut and stitch them.

    Args:
        image_size: the model input (height, width) the grid covers.
        tile_size: each tile's (height, width).
        stride: the step between tiles' origins (height, width); equal to ``tile_size``, tiles do
            not overlap.
    """

    image_size: tuple[int, int]
    tile_size: tuple[int, int]
    stride: tuple[int, int]

    @classmethod
    def create(cls, image_size: Sequence[int], tile_size: int | Sequence[int] | None,
               stride: int | Sequence[int] | None = None) -> TileGrid | None:
        """A validated grid, or ``None`` without ``tile_size`` (no tiling).

        Args:
            image_size: the model input (height, width).
            tile_size: tile (height, width), or one int for square tiles; ``None``: no tiling.
            stride: step between tiles; ``None``: ``tile_size`` (no overlap).

        Raises:
            ConfigError: sizes that are not multiples of :data:`TILE_MULTIPLE`, a stride larger
                than the tile, a tile larger than the input, or a grid that does not cover the input
                exactly (the message names the nearest input sizes that fit).
        """
        if tile_size is None:
            if stride is not None:
                raise ConfigError("tile_stride is set but tile_size is not: set tile_size to tile the input.")
            return None
        tile = _pair(tile_size, "tile_size")
        step = tile if stride is None else _pair(stride, "tile_stride")
        size = tuple(int(s) for s in image_size)
        if any(s > t for s, t in zip(step, tile, strict=True)):
            raise ConfigError(f"tile_stride {list(step)} is larger than tile_size {list(tile)}: parts of the image "
                              "would be skipped. Use a stride <= the tile size.")
        for axis, (length, t, s) in enumerate(zip(size, tile, step, strict=True)):
            name = ("height", "width")[axis]
            if length < t:
                raise ConfigError(f"The tile {name} {t} exceeds the image_size {name} {length}: lower tile_size or "
                                  f"raise image_size.")
            if (length - t) % s:
                below = length - (length - t) % s
                raise ConfigError(f"Tiles of {t} every {s} pixels do not cover the image_size {name} {length} "
                                  f"exactly: use an image_size {name} of {below} or {below + s}, or another stride.")
        return cls(size, tile, step)

    @property
    def counts(self) -> tuple[int, int]:
        """Tiles along the height and along the width."""
        return tuple((i - t) // s + 1 for i, t, s in zip(self.image_size, self.tile_size, self.stride, strict=True))

    @property
    def overlapping(self) -> bool:
        return self.stride != self.tile_size

    def __len__(self) -> int:
        rows, columns = self.counts
        return rows * columns

    def tile(self, images: torch.Tensor) -> torch.Tensor:
        """Cut ``(B, C, H, W)`` inputs into ``(B * tiles, C, h, w)``, image by image, each row of
        tiles left to right (anomalib's order)."""
        (height, width), (step_h, step_w), (rows, columns) = self.tile_size, self.stride, self.counts
        tiles = [images[:, :, i * step_h:i * step_h + height, j * step_w:j * step_w + width]
                 for i in range(rows) for j in range(columns)]
        return torch.stack(tiles, dim=1).flatten(0, 1)

    def tile_batches(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The tiles of ``(B, C, H, W)`` inputs in :data:`TILE_BATCH` groups of tile positions, each
        ``(B * n, C, h, w)``; concatenated along a ``(B, tiles, ...)`` view they are :meth:`tile`'s.
        An exported graph built from them runs the backbone on one group after another, so that one
        group's activations are alive at a time, whatever the batch size."""
        tiles = self.tile(images)
        grouped = tiles.reshape(-1, len(self), *tiles.shape[1:])
        return [grouped[:, first:first + TILE_BATCH].flatten(0, 1) for first in range(0, len(self), TILE_BATCH)]

    def join_batches(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Outputs of :meth:`tile_batches`' groups, back in :meth:`tile`'s order."""
        counts = [min(TILE_BATCH, len(self) - first) for first in range(0, len(self), TILE_BATCH)]
        grouped = [part.reshape(-1, count, *part.shape[1:]) for part, count in zip(parts, counts, strict=True)]
        return torch.cat(grouped, dim=1).flatten(0, 1)

    def stitched_size(self, tile_map_size: Sequence[int]) -> tuple[int, int]:
        """(height, width) of the stitched map of tile maps of ``tile_map_size`` (a layer's
        features, a distance map): the input's size at the same fraction of the tile's."""
        return tuple(int(m) * i // t for m, i, t in zip(tile_map_size, self.image_size, self.tile_size, strict=True))

    def untile(self, tiles: torch.Tensor) -> torch.Tensor:
        """Stitch ``(B * tiles, C, h, w)`` maps of the tiles into ``(B, C, H', W')``, overlaps
        averaged. A map at a fraction of the tile's resolution (a layer's features) stitches at
        that fraction of the input's."""
        # plain ints: the grid is fixed, so the exported graph takes these sizes as constants
        channels, height, width = (int(s) for s in tiles.shape[1:])
        rows, columns = self.counts
        if not self.overlapping:
            grid = tiles.reshape(-1, rows, columns, channels, height, width)
            return grid.permute(0, 3, 1, 4, 2, 5).reshape(-1, channels, rows * height, columns * width)
        output = self.stitched_size((height, width))
        stride = (self.stride[0] * height // self.tile_size[0], self.stride[1] * width // self.tile_size[1])
        columns_ = tiles.reshape(-1, len(self), channels * height * width).transpose(1, 2)
        summed = F.fold(columns_, output, (height, width), stride=stride)
        ones = torch.ones(1, height * width, len(self), dtype=tiles.dtype, device=tiles.device)
        return summed / F.fold(ones, output, (height, width), stride=stride)
