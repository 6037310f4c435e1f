"""What PaDiM and STFPM cost per backbone: GFLOPs of one inference and the size of the model.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over the graph that ``export``
writes (pre-processing, network, post-processing) for one image; it counts convolutions and
matrix products at 2 FLOPs per multiply-add and ignores element-wise operations. Sizes are the
bytes of the tensors (shape times element size): "inference" those of the exported graph
(FP32), which is what the OpenVINO ``.bin`` holds; "model state" those of the LightningModule's
state dict after a fit (PaDiM adds its running statistics), which is what a checkpoint holds
besides optimizer state. Weights are random (``pre_trained: false``): neither figure depends on
their values. Everything runs on PyTorch's meta device, so wide backbones need no memory;
``--export`` also exports the resnet18 models for real and reports the ``.bin`` sizes as a check.

    python benchmarks/model_cost.py --image-sizes 256 224 --export
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

MB, MIB = 1e6, 2**20


def _bytes(state: dict) -> int:
    """Bytes of the distinct tensors of a state dict."""
    seen, total = set(), 0
    for tensor in state.values():
        if not hasattr(tensor, "untyped_storage"):  # extra state (the post-processor's threshold rules)
            continue
        key = tensor.untyped_storage().data_ptr() if tensor.device.type != "meta" else id(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def build(model_name: str, backbone: str, image_size: int, device: str = "meta"):  # noqa: ANN201
    """A model as after a fit: Gaussians and statistics of their fitted shapes, thresholds set."""
    import torch

    from otx_anomaly.models import Padim, Stfpm

    size = (image_size, image_size)
    if model_name == "Padim":
        model = Padim(backbone=backbone, pre_trained=False, image_size=size)
    else:
        model = Stfpm(backbone=backbone, pre_trained=False, image_size=size)
    model.post_processor.set_thresholds(1.0, 1.0)
    model.post_processor.set_normalization(0.0, 2.0, 0.0, 2.0)
    if model_name == "Padim":
        with torch.no_grad():
            features = model.model.feature_extractor(torch.zeros(1, 3, *size))
        positions = features[model.model.layers[0]].shape[-2:].numel()
    idx = model.model.idx if model_name == "Padim" else None
    model = model.to(device).eval()
    if model_name == "Padim":
        model.model.idx = idx  # which channels PaDiM keeps (the export picks them by value): not on meta
        channels = model.model.n_features
        inverse = torch.eye(channels) if device != "meta" else torch.empty(channels, channels, device=device)
        model.model.gaussian.mean = torch.zeros(channels, positions, device=device)
        model.model.gaussian.inv_covariance = inverse.expand(positions, channels, channels).contiguous()
        model.statistics.count = torch.ones((), dtype=torch.float64, device=device)
        model.statistics.mean = torch.zeros(channels, positions, dtype=torch.float64, device=device)
        model.statistics.covariance = torch.zeros(positions, channels, channels, device=device)
    return model


def _exported_state(graph) -> dict:  # noqa: ANN001
    """The export graph's tensors that the exported model holds: PaDiM's scaled distance
    (``models/distance.py``) carries its own copy of the Gaussians, so anomalib's are not traced."""
    state = graph.state_dict()
    if hasattr(graph.model.anomaly_map_generator, "upper_rows"):
        state = {k: v for k, v in state.items() if not k.startswith("model.gaussian.")}
    return state


def count_flops(model, device: str = "meta"):  # noqa: ANN001, ANN201
    """FLOPs of one image through the graph that ``export`` writes, with the export graph: the
    counter (total and per module) and the graph. 2 FLOPs per multiply-add of convolutions and
    matrix products; element-wise operations not counted.

    Args:
        model: an otx_anomaly model (on ``device``).
        device: where the example image is made (``meta``: shapes only).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from otx_anomaly.deploy.export import _export_graph

    graph = _export_graph(model)
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        graph(torch.zeros(1, 3, *model.input_size, device=device))
    return counter, graph


def graph_gflop(model) -> float:  # noqa: ANN001
    """GFLOP of one image through a fitted model's exported graph (for the roofline in ``export_speed.py``)."""
    return count_flops(model, "cpu")[0].get_total_flops() / 1e9


def measure(model_name: str, backbone: str, image_size: int) -> dict:
    model = build(model_name, backbone, image_size)
    counter, graph = count_flops(model)
    per_module = counter.get_flop_counts()
    networks = ("feature_extractor",) if model_name == "Padim" else ("teacher_model", "student_model")
    backbone_flops = sum(sum(per_module.get(f"{type(graph).__name__}.model.{name}", {}).values()) for name in networks)
    parameters = sum(p.numel() for name in networks for p in getattr(model.model, name).parameters())
    return {
        "gflops": counter.get_total_flops() / 1e9,
        "backbone_gflops": backbone_flops / 1e9,
        "parameters_m": parameters / 1e6,
        "inference_bytes": _bytes(_exported_state(graph)),
        "state_bytes": _bytes(model.state_dict()),
    }


def exported_bin_size(model_name: str, image_size: int, precision: str) -> int:
    """Export resnet18 for real (identity Gaussians) and return the size of its ``.bin``."""
    from otx_anomaly.deploy.export import export_model

    model = build(model_name, "resnet18", image_size, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model, Path(tmp) / "export", precision=precision)
        return path.with_suffix(".bin").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "wide_resnet50_2"])
    parser.add_argument("--models", nargs="+", default=["Padim", "Stfpm"], choices=["Padim", "Stfpm"])
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[256])
    parser.add_argument("--export", action="store_true", help="also export the resnet18 models and report .bin sizes")
    args = parser.parse_args()

    import logging
    import platform

    import torch

    logging.getLogger("otx_anomaly").setLevel(logging.ERROR)  # the random-weights warning: intended here

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}; FLOPs: 2 per multiply-add "
          "(convolutions and matrix products), batch 1; sizes in MiB (MB)")
    print("| model | backbone | input | GFLOPs | of which backbone(s) | parameters (M) | inference FP32 MiB (MB) "
          "| model state MiB (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for model_name in args.models:
        for backbone in args.backbones:
            for size in args.image_sizes:
                cost = measure(model_name, backbone, size)
                inference, state = cost["inference_bytes"], cost["state_bytes"]
                print(f"| {model_name} | {backbone} | {size}x{size} | {cost['gflops']:.2f} | "
                      f"{cost['backbone_gflops']:.2f} | {cost['parameters_m']:.2f} | "
                      f"{inference / MIB:.1f} ({inference / MB:.1f}) | {state / MIB:.1f} ({state / MB:.1f}) |")
    if args.export:
        print("\nExported OpenVINO IR, resnet18, model.bin:")
        print("| model | input | FP32 MiB (MB) | FP16 MiB (MB) |")
        print("|---|---|---|---|")
        for model_name in args.models:
            for size in args.image_sizes:
                fp32, fp16 = (exported_bin_size(model_name, size, p) for p in ("FP32", "FP16"))
                print(f"| {model_name} | {size}x{size} | {fp32 / MIB:.1f} ({fp32 / MB:.1f}) | "
                      f"{fp16 / MIB:.1f} ({fp16 / MB:.1f}) |")


if __name__ == "__main__":
    main()
