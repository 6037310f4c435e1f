"""The machine's floor for a model: what its arithmetic and the bytes it reads cost at best here.

Two measured peaks, both with torch on the threads the benchmark uses: the FP32 GEMM rate (a large
square matrix product, best of several runs) and the memory read bandwidth (summing a tensor far
larger than the caches). A model's floor per image is its GFLOP over the GEMM peak plus its bytes
read (the exported FP32 weights, read once per request) over the bandwidth; the measured latency
divided by that floor says how far an engine is from what the hardware allows. The sum is a
conservative floor: an engine that overlapped compute with reads could beat it, none here does.

A batch of N images shares the reads, not the arithmetic, so batching can at best bring a model
from its batch-1 floor down to its batch-N floor: ``batch_gain`` is that ratio. Where the reads are
a small part of the floor (fast memory, heavy backbone), no engine can make a batch pay much.

    python benchmarks/roofline.py   # prints the two peaks of this machine
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class MachinePeaks:
    """Measured FP32 GEMM rate (GFLOP/s) and memory read bandwidth (GB/s)."""

    gemm_gflops: float
    read_gbps: float

    def floor_ms(self, gflop: float, bytes_read: float, batch_size: int = 1) -> float:
        """Milliseconds per image at best: compute at the GEMM peak plus reads at the bandwidth.

        Args:
            gflop: arithmetic per image (2 per multiply-add).
            bytes_read: bytes read per request (the weights; activations stay in cache at batch 1).
            batch_size: images per request, which share its reads.
        """
        return (gflop / self.gemm_gflops + bytes_read / batch_size / 1e9 / self.read_gbps) * 1000.0

    def batch_gain(self, gflop: float, bytes_read: float, batch_size: int) -> float:
        """Images/s at ``batch_size`` over batch 1 with both at their floors (see the module docstring).

        Args:
            gflop: arithmetic per image.
            bytes_read: bytes read per request.
            batch_size: images per request.
        """
        return self.floor_ms(gflop, bytes_read) / self.floor_ms(gflop, bytes_read, batch_size)


def _best_s(run, repeats: int) -> float:  # noqa: ANN001
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure_peaks(size: int = 2048, read_mb: int = 1024, repeats: int = 5) -> MachinePeaks:
    """The machine's FP32 GEMM peak and read bandwidth with torch's current thread count.

    Args:
        size: the square matrices' side (2 * size^3 FLOP per product).
        read_mb: the tensor summed to measure the bandwidth, in MB (well above the last-level cache).
        repeats: runs per figure; the best is kept.
    """
    import torch

    a, b = torch.rand(size, size), torch.rand(size, size)
    gemm_s = _best_s(lambda: torch.mm(a, b), repeats)
    big = torch.ones(read_mb * 10**6 // 4)
    read_s = _best_s(lambda: big.sum(), repeats)
    return MachinePeaks(gemm_gflops=2 * size**3 / gemm_s / 1e9, read_gbps=big.numel() * 4 / read_s / 1e9)


if __name__ == "__main__":
    import torch

    peaks = measure_peaks()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: FP32 GEMM {peaks.gemm_gflops:.0f} GFLOP/s, "
          f"memory read {peaks.read_gbps:.1f} GB/s")
