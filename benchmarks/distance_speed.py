"""PaDiM's Mahalanobis distance alone in OpenVINO FP32: anomalib's form against the export's
(``otx_anomaly.models.distance``: scaled, upper block rows only), on the same embeddings, timed in
alternating rounds in one run so that the machine's drift (memory bandwidth shared with other
tenants) hits both alike.

A third row times the export's blocks in the layout it had before the fifth session, ``(positions,
batch, channels)`` products, against today's positions-first 4-D one (same sums; see the module
docstring of ``otx_anomaly.models.distance``).

The product is bound by reading the per-position matrices at batch 1, so their bytes decide;
the figures are ms per image, the bytes of the graph's constants, the read rate those imply and
the largest difference from anomalib's distances. The Gaussians are random (the speed does not
depend on their values). ``--channels 550`` is wide_resnet50_2's PaDiM: 5 GB per copy of the
matrices, and the run holds several (torch's, OpenVINO's, both forms).

    python benchmarks/distance_speed.py
    OV_CPU_MAX_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/distance_speed.py   # AVX2 kernels
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def three_d_distance(distance, embedding):  # noqa: ANN001, ANN201
    """``distance.compute_distance(embedding)`` (a ``ScaledMahalanobis``) with its blocks as
    ``(positions, batch, channels)`` products, the export's layout before the fifth session, which
    OpenVINO runs as ``FullyConnected`` nodes: the same sums, kept to compare the layouts."""
    import torch

    batch, channels, height, width = embedding.shape
    mean, scale = distance.mean.T, distance.scale.T  # (C, P)
    upper_rows, lower_block = distance.upper_rows.squeeze(1), distance.lower_block.squeeze(1)  # (P, C/2, *)
    scaled = ((embedding.reshape(batch, channels, -1) - mean) * scale).permute(2, 0, 1)
    half = upper_rows.shape[1]
    upper = (torch.matmul(scaled[..., :half], upper_rows) * scaled).sum(2)
    lower = (torch.matmul(scaled[..., half:], lower_block) * scaled[..., half:]).sum(2)
    return (upper + lower).permute(1, 0).reshape(batch, 1, height, width).clamp(0).sqrt()


def distance_modules(channels: int, positions: int):  # noqa: ANN201
    """anomalib's distance and the export's, as ``torch.nn.Module``s taking ``(B, C, H, W)``
    embeddings, built from one random Gaussian per position."""
    import torch
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator

    from otx_anomaly.models.distance import ScaledMahalanobis

    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(positions, channels, channels, generator=generator) / channels**0.5
    inverse = factor @ factor.transpose(1, 2) + 0.1 * torch.eye(channels)
    mean = torch.randn(channels, positions, generator=generator)

    class Anomalib(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("inverse", inverse)

        def forward(self, embedding: torch.Tensor) -> torch.Tensor:
            return AnomalyMapGenerator.compute_distance(embedding, [self.mean, self.inverse])

    class Export(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.distance = ScaledMahalanobis(AnomalyMapGenerator(), mean, inverse)

        def forward(self, embedding: torch.Tensor) -> torch.Tensor:
            return self.distance.compute_distance(embedding)

    class ThreeD(torch.nn.Module):
        """The export's blocks in their layout before the fifth session (:func:`three_d_distance`)."""

        def __init__(self, distance: ScaledMahalanobis) -> None:
            super().__init__()
            self.distance = distance

        def forward(self, embedding: torch.Tensor) -> torch.Tensor:
            return three_d_distance(self.distance, embedding)

    export = Export()
    return {"anomalib": Anomalib(), "export (scaled, blocks)": export,
            "export, 3-D products (before)": ThreeD(export.distance)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=100, help="PaDiM's n_features")
    parser.add_argument("--side", type=int, default=64, help="the embedding's side (64 at a 256x256 input)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds; the median is kept")
    parser.add_argument("--calls", type=int, default=10, help="requests per round")
    args = parser.parse_args()

    import openvino as ov
    import torch

    from otx_anomaly.deploy.speed import CPU_CONFIG, cpu_description

    modules = distance_modules(args.channels, args.side**2)
    print(f"CPU: {cpu_description()}")
    print(f"PaDiM distance, {args.channels} channels at {args.side}x{args.side} positions, OpenVINO FP32; median of "
          f"{args.rounds} alternating rounds of {args.calls} requests\n")
    print("| batch | form | ms per image | vs anomalib | MB of constants | read GB/s | max difference |")
    print("|---|---|---|---|---|---|---|")
    core = ov.Core()
    for batch in args.batches:
        embedding = torch.randn(batch, args.channels, args.side, args.side)
        with torch.no_grad():
            reference = modules["anomalib"](embedding)  # anomalib's distances in eager PyTorch
        requests = {name: core.compile_model(ov.convert_model(module, example_input=embedding), "CPU",
                                             {**CPU_CONFIG, "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
                    for name, module in modules.items()}
        times = {name: [] for name in modules}
        array = embedding.numpy()
        for request in requests.values():
            request.infer([array])
        for _ in range(args.rounds):
            for name, request in requests.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    request.infer([array])
                times[name].append((time.perf_counter() - start) / args.calls / batch * 1000)
        base = statistics.median(times["anomalib"])
        for name, module in modules.items():
            ms = statistics.median(times[name])
            constants = sum(b.numel() * b.element_size() for b in module.buffers()) / 1e6
            result = torch.from_numpy(np.asarray(requests[name].get_output_tensor(0).data))
            difference = float((result - reference).abs().max() / reference.abs().max())
            print(f"| {batch} | {name} | {ms:.2f} | {base / ms:.2f}x | {constants:.0f} | {constants / ms / batch:.1f} "
                  f"| {difference:.1e} |")


if __name__ == "__main__":
    main()
