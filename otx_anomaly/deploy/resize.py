"""The exported graph's resize: Pillow's antialiased bilinear (what torchvision's ``Resize`` does in
training) built from plain OpenVINO operations, for inputs of any size.

Why not OpenVINO's own ``RESIZE_BILINEAR_PILLOW`` (``Interpolate-11``): its CPU kernel is prepared
anew for every input size it has not seen, and that preparation grows with the frame until it
costs far more than the resize itself. A camera with one frame size pays it once; a dataset of
crops of many sizes would pay it on every image. Plain operations cost a new size only their shape
inference.

The same filter as two products with weights computed in the graph from the input's shape: Pillow's
triangle filter, support ``max(in / out, 1)``, the taps inside the image, normalized. Rows first, as
a gather of the few rows each output row reads (their count follows from the scale) summed by a
batched product with their weights, which writes and reads the gathered rows once; then the columns
as one matrix product. It equals torchvision's antialiased resize to float rounding
(``tests/test_export.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops

#: friendly-name prefix of the resize's nodes (quantization leaves them in float by it)
RESIZE_PREFIX = "otx_resize/"


def _f32(value: float) -> Any:
    return ops.constant(np.float32(value))


def _filter(length: Any, out: int) -> tuple[Any, Any, Any]:
    """Pillow's triangle filter from ``length`` input samples to ``out``: each output sample's centre
    (out, 1), the filter's half-width, and a function of the tap positions giving the weights."""
    size = ops.convert(length, ov.Type.f32)
    scale = ops.divide(size, _f32(out))
    support = ops.maximum(scale, _f32(1.0))  # a downscale widens the filter; an upscale keeps width 1
    centers = ops.multiply(ops.constant((np.arange(out, dtype=np.float32) + 0.5)[:, None]), scale)  # (out, 1)

    def weights(taps: Any) -> Any:
        """Normalized weights of the taps (out, k) inside the image; zero for those outside."""
        distance = ops.absolute(ops.subtract(ops.add(taps, _f32(0.5)), centers))
        weight = ops.relu(ops.subtract(_f32(1.0), ops.divide(distance, support)))
        inside = ops.logical_and(ops.greater_equal(taps, _f32(0.0)), ops.less(taps, size))
        weight = ops.multiply(weight, ops.convert(inside, ov.Type.f32))
        return ops.divide(weight, ops.reduce_sum(weight, ops.constant([1]), keep_dims=True))

    return centers, support, weights


def _resize_rows(image: Any, height: Any, out: int) -> Any:
    """(N, C, height, W) -> (N, C, out, W): each output row a weighted sum of the rows it reads."""
    centers, support, weights = _filter(height, out)
    first = ops.floor(ops.subtract(centers, support))
    count = ops.add(ops.multiply(ops.ceiling(support), _f32(2.0)), _f32(1.0))  # taps that can reach the filter
    taps = ops.add(first, ops.unsqueeze(ops.range(_f32(0.0), count, _f32(1.0), ov.Type.f32), ops.constant(0)))
    index = ops.minimum(ops.convert(ops.relu(taps), ov.Type.i64), ops.subtract(height, ops.constant(np.int64(1))))
    rows = ops.gather(image, index, ops.constant(2))  # (N, C, out, k, W)
    tap_weights = ops.unsqueeze(weights(taps), ops.constant(1))  # (out, 1, k)
    summed = ops.matmul(tap_weights, rows, False, False)  # (N, C, out, 1, W)
    return ops.squeeze(summed, ops.constant([3]))


def _resize_columns(image: Any, width: Any, out: int) -> Any:
    """(N, C, H, width) -> (N, C, H, out) as one product with the (out, width) weight matrix."""
    _, _, weights = _filter(width, out)
    columns = ops.unsqueeze(ops.range(_f32(0.0), ops.convert(width, ov.Type.f32), _f32(1.0), ov.Type.f32),
                            ops.constant(0))
    return ops.matmul(image, weights(columns), False, True)


def antialiased_resize(image: ov.Output, height: int, width: int) -> ov.Output:
    """A float NCHW image of any size resized to (``height``, ``width``) as Pillow's bilinear filter does.

    Args:
        image: an (N, C, H, W) ``f32`` output of the graph.
        height: the output height.
        width: the output width.
    """
    shape = ops.shape_of(image)
    axis = ops.constant(0)
    rows = _resize_rows(image, ops.gather(shape, ops.constant(2), axis), height)
    resized = _resize_columns(rows, ops.gather(shape, ops.constant(3), axis), width)
    # every node gets the prefix, so that quantization and the speed profile can find the resize
    for op in _ops_between(resized, image):
        op.set_friendly_name(RESIZE_PREFIX + op.get_friendly_name())
    return resized.output(0)


def _ops_between(last: Any, source: ov.Output) -> list[Any]:
    """The nodes that compute ``last`` from ``source`` (and constants), ``last`` included."""
    start = source.get_node().get_friendly_name()
    seen, stack, found = set(), [last], []
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()  # unique: the new nodes' names are generated
        if name in seen or name == start:
            continue
        seen.add(name)
        found.append(node)
        stack.extend(value.get_node() for value in node.input_values())
    return found
