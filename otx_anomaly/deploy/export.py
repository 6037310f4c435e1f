"""Export a trained model to OpenVINO IR (or ONNX) with its metadata, atomically.

The graph contains the normalization by mean and std, the model and the post-processing (min-max
normalization and thresholds): its outputs are the normalized ``pred_score``, ``pred_label``,
``anomaly_map`` and ``pred_mask``, as anomalib's exports. The conversion goes straight from torch
to OpenVINO (``openvino.convert_model``); no ONNX step, so no extra packages.

The OpenVINO IR takes images as OpenCV gives them, so that OpenVINO Model API
(``Model.create_model(xml)``) and OpenVINO Model Server run it unchanged: uint8, BGR, NHWC, any
height and width, any batch (``[?, ?, ?, 3]``; the images of one batch share a size). OpenVINO's
``PrePostProcessor`` embeds the pre-processing: to float, resize to the model's input size with
Pillow's antialiased bilinear filter, which torchvision's ``Resize`` used in training follows (built
from plain operations, :mod:`otx_anomaly.deploy.resize` says why; a plain linear resize skips the
antialiasing and so differs from training on every downscaled frame), BGR to RGB, divide by 255.
The metadata says ``embedded_processing: True``, so Model API adds no pre-processing of its own. The ONNX file keeps
the plain float input (RGB in [0, 1], NCHW, at the input size) for tools that bring their own
pre-processing.

Why not anomalib's ``AnomalibModule.to_openvino``: it traces the LightningModule itself (whose
trainer-bound properties break outside a fit), writes its files in place (an interrupted export
leaves a partial model) and stores no metadata; here the three plain modules are traced, the
folder appears complete or not at all, and the metadata makes the model runnable with no other file.

torch is imported when a model is exported, not with this module: ``otx_anomaly.deploy`` stays
importable on machines without it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from otx_anomaly.deploy.metadata import MODEL_TYPE, metadata_strings, write_metadata
from otx_anomaly.errors import ExportError, OtxAnomalyError
from otx_anomaly.export_names import NETWORK, POST_PROCESSOR, PRE_PROCESSOR
from otx_anomaly.io.files import replace_folder, staging_folder

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("pred_score", "pred_label", "anomaly_map", "pred_mask")
#: Names the OpenVINO IR gives the network's raw score and map, the post-processing's inputs. They
#: are tensors inside the graph, not outputs (Model API sees the four above): evaluation adds them as
#: outputs, because the normalized values are clipped to [0, 1] and ties among clipped scores would
#: lower an AUROC (:mod:`otx_anomaly.deploy.accuracy`).
RAW_TENSOR_NAMES = {"pred_score": "raw_pred_score", "anomaly_map": "raw_anomaly_map"}
#: ``input_range`` of the OpenVINO IR (embedded pre-processing) and of the ONNX file (plain tensor).
EMBEDDED_INPUT, FLOAT_INPUT = "0-255 bgr nhwc u8", "0-1"
Precision = Literal["FP32", "FP16"]
ExportFormat = Literal["openvino", "onnx"]


def _export_graph(model: Any, raw_outputs: bool = False) -> Any:
    """anomalib's ``AnomalibModule.forward`` (pre-processing, network, post-processing) over the
    three plain modules, with tuple outputs; ``raw_outputs`` appends the network's score and map
    (:data:`RAW_TENSOR_NAMES`)."""
    from torch import nn

    class ExportGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # the parts' names prefix their nodes' names, by which INT8 finds what stays in float
            for name, part in ((PRE_PROCESSOR, model.pre_processor), (NETWORK, model.export_network()),
                               (POST_PROCESSOR, model.post_processor)):
                self.add_module(name, part)

        def forward(self, image: Any) -> tuple[Any, ...]:
            pre, network, post = (self.get_submodule(name) for name in (PRE_PROCESSOR, NETWORK, POST_PROCESSOR))
            raw = network(pre(image))  # PaDiM and STFPM give both a score and a map
            batch = post(raw)
            outputs = tuple(getattr(batch, name) for name in OUTPUT_NAMES)
            return outputs + tuple(getattr(raw, name) for name in RAW_TENSOR_NAMES) if raw_outputs else outputs

    return ExportGraph().eval()


@contextlib.contextmanager
def _expected_tracing_notices() -> Iterator[None]:
    """Silence what tracing says of anomalib's and torchvision's code (values it records as
    constants, and the deprecation of the ``torch.jit.trace`` that ``openvino.convert_model`` calls):
    the graph is traced at one input size, for which those constants hold (tests compare the export
    with the eager model). Notices about our own modules still show."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"(anomalib|torchvision)\.")
        # the tile grid is fixed: its sizes are meant to be constants of the graph
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"otx_anomaly\.models\.tiling")
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace(_method)?` is deprecated", FutureWarning)
        yield


def export_metadata(model: Any) -> dict[str, Any]:
    """Everything needed to run the exported model with no other file.

    Args:
        model: a fitted otx_anomaly model (``Padim``, ``Stfpm``).

    Raises:
        ExportError: the model has no thresholds yet.
    """
    from anomalib.data.transforms.utils import extract_transforms_by_type
    from torchvision.transforms.v2 import Normalize

    from otx_anomaly import __version__

    post = model.post_processor
    if post is None or not post.is_fitted:
        raise ExportError("The model has no thresholds yet: export it after `fit` (or from a checkpoint of a fit).")
    stats = post.statistics()
    normalize = extract_transforms_by_type(model.pre_processor.transform, Normalize)
    mean, std = (normalize[0].mean, normalize[0].std) if normalize else ([0.0] * 3, [1.0] * 3)
    return {
        "model_type": MODEL_TYPE,
        "task": str(model.task),
        "labels": "Normal Anomaly",
        "image_threshold": stats["image_threshold"],
        "pixel_threshold": stats["pixel_threshold"],
        "normalization_scale": stats["image_max"] - stats["image_min"],
        "image_shape": [int(s) for s in model.input_size],
        "mean_values": [round(255 * m, 6) for m in mean],
        "scale_values": [round(255 * s, 6) for s in std],
        "reverse_input_channels": True,
        "resize_type": "standard",
        "model_name": type(model).__name__,
        "backbone": str(model.hparams.get("backbone", "")),
        **{key: stats[key] for key in ("image_min", "image_max", "pixel_min", "pixel_max")},
        "min_box_area": int(model.head.min_box_area),
        "input_range": EMBEDDED_INPUT,
        "embedded_processing": True,
        "orig_height": int(model.input_size[0]),
        "orig_width": int(model.input_size[1]),
        "outputs": " ".join(OUTPUT_NAMES),
        "otx_anomaly_version": __version__,
        "threshold_rules": "; ".join(f"{kind}: {rule}" for kind, rule in sorted(post.rules.items())),
        "normal_scores": [float(v) for v in post.normal_scores.tolist()],
        "normal_fit_scale": str(model.normal_fit_scale),
    }


def embed_preprocessing(ov_model: Any, height: int, width: int) -> Any:
    """The graph with OpenCV-frame input (uint8 BGR NHWC, any size and batch) resized inside; see
    the module docstring.

    Args:
        ov_model: an ``openvino.Model`` taking (N, 3, ``height``, ``width``) RGB float in [0, 1].
        height: the model's input height.
        width: the model's input width.
    """
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    from otx_anomaly.deploy.resize import antialiased_resize

    ov_model.reshape({ov_model.inputs[0]: ov.PartialShape([-1, 3, height, width])})  # dynamic batch
    ppp = PrePostProcessor(ov_model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.BGR).set_shape([-1, -1, -1, 3])
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_layout(ov.Layout("NCHW")).custom(
        lambda image: antialiased_resize(image, height, width)).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def _write_openvino(graph: Any, example: Any, metadata: dict, folder: Path, precision: str) -> Path:
    import openvino as ov

    ov_model = ov.convert_model(graph, example_input=example)
    for output, name in zip(ov_model.outputs[:len(OUTPUT_NAMES)], OUTPUT_NAMES, strict=True):
        output.get_tensor().set_names({name})
    for result, name in zip(ov_model.get_results()[len(OUTPUT_NAMES):], RAW_TENSOR_NAMES.values(), strict=True):
        result.input_value(0).get_tensor().set_names({name})  # the producer's tensor: it stays when its output goes
        ov_model.remove_result(result)
    ov_model = embed_preprocessing(ov_model, *metadata["image_shape"])
    ov_model.inputs[0].get_tensor().set_names({"image"})
    write_metadata(ov_model, metadata)
    path = folder / "model.xml"
    ov.save_model(ov_model, path, compress_to_fp16=precision == "FP16")
    return path


def _write_onnx(graph: Any, example: Any, metadata: dict, folder: Path) -> Path:
    import torch

    try:
        import onnx
    except ImportError as error:
        raise ExportError("ONNX export needs the onnx and onnxscript packages: "
                          "pip install 'otx_anomaly[onnx]'.") from error
    path = folder / "model.onnx"
    torch.onnx.export(graph, (example,), str(path), input_names=["image"], output_names=list(OUTPUT_NAMES),
                      dynamo=True, external_data=False)
    proto = onnx.load(str(path))
    plain = {**metadata, "input_range": FLOAT_INPUT, "embedded_processing": False}
    for key, value in metadata_strings(plain).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def export_model(
    model: Any,
    output_dir: str | Path,
    export_format: ExportFormat = "openvino",
    precision: Precision = "FP32",
) -> Path:
    """Write ``output_dir/model.xml`` + ``model.bin`` (or ``model.onnx``) and return the model file.

    The files are written to a temporary folder beside ``output_dir`` and moved into place only
    when complete: an interrupted or failed export leaves the previous export (or nothing).

    Args:
        model: a fitted otx_anomaly model.
        output_dir: the folder to write.
        export_format: ``openvino`` or ``onnx``.
        precision: ``FP32`` or ``FP16`` (OpenVINO only); INT8 is :func:`otx_anomaly.deploy.quantize`'s.

    Raises:
        ExportError: a bad option, a model without thresholds, or a failed conversion.
    """
    import torch

    if export_format not in ("openvino", "onnx"):
        raise ExportError(f"Unknown export format {export_format!r}: choose openvino or onnx.")
    if precision not in ("FP32", "FP16"):
        raise ExportError(f"Unknown precision {precision!r}: choose FP32 or FP16.")
    if export_format == "onnx" and precision != "FP32":
        raise ExportError("ONNX export is FP32 only; use the OpenVINO format for FP16.")
    output_dir = Path(output_dir)
    metadata = export_metadata(model)
    try:
        staging = staging_folder(output_dir)
    except OSError as error:
        raise ExportError(f"Cannot write to {str(output_dir.parent)!r} ({error}). Choose a writable output folder.") \
            from error
    was_training, device = model.training, next(model.parameters()).device
    graph = _export_graph(model.eval().cpu(), raw_outputs=export_format == "openvino")
    example = torch.zeros(1, 3, *metadata["image_shape"])
    try:
        with torch.no_grad(), _expected_tracing_notices():
            if export_format == "openvino":
                written = _write_openvino(graph, example, metadata, staging, precision)
            else:
                written = _write_onnx(graph, example, metadata, staging)
        replace_folder(staging, output_dir)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OtxAnomalyError | KeyboardInterrupt):
            raise
        raise ExportError(f"Export to {str(output_dir)!r} failed ({type(error).__name__}: {error}); "
                          "nothing was written.") from error
    finally:
        model.to(device).train(was_training)
    logger.info("Exported %s %s model to %s", export_format, precision, output_dir / written.name)
    return output_dir / written.name
