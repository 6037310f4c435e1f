"""The exported graph's resize: Pillow's antialiased bilinear (what torchvision's ``Resize`` does in
training) built from plain OpenVINO operations, for inputs of any size.

Why not OpenVINO's own ``RESIZE_BILINEAR_PILLOW`` (``Interpolate-11``): its CPU kernel is prepared
anew for every input size it has not seen, and that preparation grows with the frame: 0.3 s for a
64x64 frame, 0.7 s for 300x400, 3.9 s for 1024x1024 and 10 s for 2048x1536, against 3 to 70 ms for
the resize itself once prepared (``benchmarks/resize_speed.py``, 2-core AMD EPYC with AVX2 only). A
camera with one frame size pays it once; a dataset of crops of many sizes (magnetic tiles: every
frame differs) paid it on every image. Here a new size costs 6 to 106 ms, and a seen one 0.83x to
1.76x the old kernel's speed.

The same filter as two products with weights computed in the graph from the input's shape: Pillow's
triangle filter, support ``max(in / out, 1)``, the taps inside the image, normalized. Rows first, as
a gather of the few rows each output row reads (their count follows from the scale) summed by a
batched product with their weights, then the columns as one matrix product. The batched product
replaced a multiply and a sum over the gathered rows, which wrote and read them twice more: 1.8 ms
-> 1.4 ms for 208x512, 7.5 -> 5.1 for 1024x1024, 24.1 -> 13.7 for 2048x1536 (steady, to 256x256;
2-core Intel Xeon, ISA AVX2, AVX-512F, AVX-512 VNNI, AVX-VNNI, AMX; ``benchmarks/resize_speed.py``
before and after). Against
``Interpolate-11``: within 1.2e-5 on a [0, 1] scale, and within 4e-7 of torchvision's antialiased
resize where ``Interpolate-11`` is 1.1e-5 off. The cost of a new size is the shape inference of
plain operations (tens of milliseconds).
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
