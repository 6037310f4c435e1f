"""Eager PyTorch with the networks' weights in the default (NCHW) layout against channels-last, the
layout the Trainer gives our models on CPU (``otx_anomaly.models.base.channels_last_on_cpu``), in
one run on this machine, on the same random 256x256 inputs (speed does not depend on the weights).

Timed per image: PaDiM's and STFPM's inference at batch 1 (pre-processing, network and
post-processing, as ``Trainer.test`` and ``predict`` run them) and one STFPM training step at
``--batch`` (teacher forward, student forward and backward, SGD step). The outputs of the two
layouts are compared too (largest relative difference of the anomaly map).

    python benchmarks/eager_layout.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch

from otx_anomaly.deploy.speed import cpu_description
from otx_anomaly.models import Padim, Stfpm


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _inference(model: torch.nn.Module, image: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(image).anomaly_map
    return run


def _training_step(model: Stfpm, images: torch.Tensor) -> Callable[[], None]:
    optimizer = model.configure_optimizers()

    def run() -> None:
        teacher, student = model.model(images)
        loss = model.loss(teacher, student)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    parser.add_argument("--batch", type=int, default=32, help="images per STFPM training step")
    args = parser.parse_args()
    torch.manual_seed(0)
    image = torch.rand(1, 3, 256, 256)
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| what | NCHW ms per image | channels-last ms per image | speed-up | largest map difference |")
    print("|---|---|---|---|---|")
    for model_class in (Padim, Stfpm):
        model = model_class(pre_trained=False).eval()
        if model_class is Padim:  # any Gaussians: the distance costs the same
            size, locations = model.model.n_features, (256 // 4) ** 2  # layer1's 64x64 grid
            model.model.gaussian.mean = torch.rand(size, locations)
            model.model.gaussian.inv_covariance = torch.eye(size).repeat(locations, 1, 1)
        fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
        before, after = _median_ms(_inference(model, image), args.repeats), _median_ms(_inference(fast, image),
                                                                                        args.repeats)
        reference, other = _inference(model, image)(), _inference(fast, image)()
        difference = float((reference - other).abs().max() / reference.abs().max())
        print(f"| {model_class.__name__} inference, batch 1 | {before:.1f} | {after:.1f} | {before / after:.2f}x "
              f"| {difference:.1e} |")
    images = torch.rand(args.batch, 3, 256, 256)
    slow, fast = Stfpm(pre_trained=False).train(), Stfpm(pre_trained=False).train()
    fast.model.to(memory_format=torch.channels_last)
    before = _median_ms(_training_step(slow, images), max(2, args.repeats // 3)) / args.batch
    after = _median_ms(_training_step(fast, images), max(2, args.repeats // 3)) / args.batch
    print(f"| STFPM training step, batch {args.batch} | {before:.1f} | {after:.1f} | {before / after:.2f}x | - |")


if __name__ == "__main__":
    main()
