"""The embedded resize: OpenVINO's ``RESIZE_BILINEAR_PILLOW`` (``Interpolate-11``, what exports before
this one embedded) against ``otx_anomaly.deploy.resize`` (plain operations, what exports embed now),
in one run on this machine.

For each frame size: the first inference at a size the compiled model has not seen (what a dataset
of frames of many sizes pays on every image), the steady time once seen (median of ``--repeats``),
both as ratios against ``Interpolate-11``, and each one's largest difference from torchvision's
antialiased resize (what training does), on a [0, 1] scale. Only the pre-processing is compiled (a
graph that resizes to ``--size``), so the figures are the resize's own; ``export_speed.py`` times
whole models.

    python benchmarks/resize_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import torch
import torchvision.transforms.v2.functional as F
from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

from otx_anomaly.deploy.export import embed_preprocessing
from otx_anomaly.deploy.speed import CPU_CONFIG, cpu_description

#: frame sizes (height, width): up- and downscales, odd sizes, camera frames
FRAMES = ((64, 64), (208, 512), (300, 400), (311, 433), (600, 800), (1024, 1024), (1000, 1500), (2048, 1536))


def _identity(height: int, width: int) -> ov.Model:
    parameter = ops.parameter([-1, 3, height, width], ov.Type.f32)
    return ov.Model([ops.multiply(parameter, ops.constant(np.float32(1.0)))], [parameter])


def interpolate_11(height: int, width: int) -> ov.Model:
    """The pre-processing as exports before ``otx_anomaly.deploy.resize`` embedded it."""
    ppp = PrePostProcessor(_identity(height, width))
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.BGR).set_shape([-1, -1, -1, 3])
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).resize(
        ResizeAlgorithm.RESIZE_BILINEAR_PILLOW, height, width).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def timings(compiled: ov.CompiledModel, frame: np.ndarray, repeats: int) -> tuple[float, float]:
    """(ms of the first inference at this size, median ms once seen)."""
    start = time.perf_counter()
    compiled(frame)
    first = time.perf_counter() - start
    steady = []
    for _ in range(repeats):
        start = time.perf_counter()
        compiled(frame)
        steady.append(time.perf_counter() - start)
    return first * 1000, statistics.median(steady) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    height, width = args.size
    core = ov.Core()
    engines = {"Interpolate-11": core.compile_model(interpolate_11(height, width), "CPU", CPU_CONFIG),
               "otx_anomaly": core.compile_model(embed_preprocessing(_identity(height, width), height, width),
                                                 "CPU", CPU_CONFIG)}
    print(f"Machine: {cpu_description()}")
    print(f"Resize to {height}x{width}; ms per frame (first inference at a new size / once seen), ratio "
          "against Interpolate-11, largest difference from torchvision's antialiased resize")
    print("| frame | Interpolate-11 first / seen ms | ours first / seen ms | ours vs Interpolate-11 first / seen | "
          "max diff Interpolate-11 / ours |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for frame_size in FRAMES:
        frame = rng.integers(0, 256, (1, *frame_size, 3), dtype=np.uint8)
        rgb = torch.from_numpy(frame[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
        expected = F.resize(rgb, [height, width], antialias=True).numpy()
        times, diffs = {}, {}
        for name, compiled in engines.items():
            times[name] = timings(compiled, frame, args.repeats)
            diffs[name] = float(np.abs(compiled(frame)[0] - expected).max())
        (old_first, old_seen), (new_first, new_seen) = times["Interpolate-11"], times["otx_anomaly"]
        print(f"| {frame_size[0]}x{frame_size[1]} | {old_first:.1f} / {old_seen:.1f} | {new_first:.1f} / "
              f"{new_seen:.1f} | {old_first / new_first:.1f}x faster / {old_seen / new_seen:.2f}x | "
              f"{diffs['Interpolate-11']:.1e} / {diffs['otx_anomaly']:.1e} |")


if __name__ == "__main__":
    main()
