"""INT8 post-training quantization of exported models with NNCF, metadata carried over, written atomically.

Calibration uses normal images only (the training set), which is what the model sees in service.
The backbones, where most of the compute is, become INT8; the anomaly-map generator (STFPM's
feature comparison, the upsampling and blur) and the normalization stay in floating point
(:data:`FLOAT_SCOPE`): the score is a small distance between features, or a threshold on it, and
8-bit rounding there moves scores across the threshold (docs/quantization.md).

PaDiM's distance product is the exception (:data:`DISTANCE_PRODUCT`, ``quantize_distance``): with
the backbone in INT8 it is most of PaDiM's time, because it reads every position's inverse
covariance per request, and OpenVINO folds weight-only compression back to float32 for this
product. Quantized as anomalib writes it, it ruins the scores; the export writes it in a scaled
form (:mod:`otx_anomaly.models.distance`: unit-diagonal matrices, channels in units of their
spread) where one 8-bit scale fits, and then it runs as an INT8 product that reads a quarter of
the bytes.

That pays only on a CPU with an INT8 dot-product instruction (:data:`INT8_DOT_PRODUCT_FLAGS`: VNNI or
AMX), where OpenVINO runs it as a brgemm INT8 product. Without one, OpenVINO falls back to a generic
INT8 GEMM (``jit_gemm_i8``) that is slower than the FP32 product. So by default
(``quantize_distance=None``) the product is quantized when the CPU running the quantization has such
an instruction, as the model is usually quantized where it is served; set it to true or false to
quantize for another CPU. docs/benchmarks.md has INT8's speed-up over FP32 per kind of CPU.

The scope is the nodes matching those patterns *and every node they feed* (:func:`float_scope`):
OpenVINO renames some nodes of the map generator (STFPM's product of the three layer maps becomes a
``Multiply_<n>``, the image score's ``ReduceMax`` loses its prefix), so the patterns alone would let
NNCF put 8-bit quantizers on the upsampled layer maps and their product, clipping the map at the
calibration images' maximum. The patterns are built from :mod:`otx_anomaly.export_names`, the
names the models give these modules.

:func:`quantize` imports NNCF, which imports torch; importing this module does not.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import openvino as ov

from otx_anomaly.deploy import speed
from otx_anomaly.deploy.accuracy import METRICS, LabeledImage, metrics_of, prepare, run
from otx_anomaly.deploy.inferencer import OpenVINOInferencer, expose_raw_outputs, remove_raw_outputs
from otx_anomaly.deploy.metadata import MODEL_INFO
from otx_anomaly.deploy.resize import RESIZE_PREFIX
from otx_anomaly.errors import QuantizationError
from otx_anomaly.export_names import MAP_GENERATOR, NETWORK, POST_PROCESSOR, node_prefix
from otx_anomaly.io.files import replace_folder, staging_folder

logger = logging.getLogger(__name__)

#: OpenVINO node-name patterns of the exported graph kept in floating point: the map generator and
#: the post-processing.
FLOAT_SCOPE = (f".*{re.escape(MAP_GENERATOR)}.*", f".*{re.escape(POST_PROCESSOR)}.*")
#: PaDiM's two distance products (the block form of ``models/distance.py``): the matrix products the
#: map generator makes itself, not in its upsampling. Only PaDiM's export has them.
DISTANCE_PRODUCT = re.escape(node_prefix(NETWORK, MAP_GENERATOR)) + r"/aten::matmul/MatMul(_\d+)?"
#: ``/proc/cpuinfo`` flags of an INT8 dot-product instruction, without which OpenVINO's INT8
#: distance product is slower than its FP32 one (see the module docstring).
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class QuantizationOptions:
    """How to quantize to INT8: one declaration for :func:`quantize`, the ``optimize`` command and
    the :class:`~otx_anomaly.callbacks.OpenVINOExport` callback, validated when made.

    Args:
        subset_size: calibration images (normal ones, at most this many are used).
        accuracy_control: with labeled validation images, NNCF reverts the layers that cost the
            most back to float until ``metric`` drops by at most ``max_drop``.
        metric: what accuracy control holds: ``image_AUROC``, ``image_F1`` or ``pixel_AUROC``
            (``pixel_AUROC`` needs masks on the anomalous images).
        max_drop: the absolute drop accuracy control allows.
        keep_float: keep :data:`FLOAT_SCOPE` and everything downstream of it in floating point
            (recommended; see the module docstring).
        fast_bias_correction: NNCF's quicker bias correction. The full one (the default here) takes
            longer and keeps STFPM's INT8 scores closer to FP32's (docs/quantization.md).
        quantize_distance: quantize PaDiM's distance product too: it reads a quarter of the
            bytes, but only a CPU with VNNI or AMX turns that into speed. ``None`` (the default):
            quantize it when the CPU running the quantization has one (:func:`distance_in_int8`);
            true or false decides for another target CPU.

    Raises:
        QuantizationError: an option is out of range.

    Example:
        >>> QuantizationOptions(subset_size=100).max_drop
        0.01
    """

    subset_size: int = 300
    accuracy_control: bool = False
    metric: Literal["image_AUROC", "image_F1", "pixel_AUROC"] = "image_AUROC"
    max_drop: float = 0.01
    keep_float: bool = True
    fast_bias_correction: bool = False
    quantize_distance: bool | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise QuantizationError(f"Unknown metric {self.metric!r}: choose one of {', '.join(METRICS)}.")
        if not 0 <= self.max_drop < 1:
            raise QuantizationError(f"max_drop must be in [0, 1), got {self.max_drop}.")
        if self.subset_size < 1:
            raise QuantizationError(f"subset_size must be at least 1, got {self.subset_size}.")


def is_quantized(model: ov.Model) -> bool:
    """Whether the graph already holds quantization nodes (NNCF's or any other tool's).

    Args:
        model: an OpenVINO model.
    """
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())


def float_scope(model: ov.Model, quantize_distance: bool = False) -> list[str]:
    """Names of the nodes matching :data:`FLOAT_SCOPE` and of every node downstream of them (the
    module docstring says why the patterns alone are not enough).

    Args:
        model: the exported FP32 graph.
        quantize_distance: leave :data:`DISTANCE_PRODUCT` out.
    """
    stack = [op for op in model.get_ops() if any(re.fullmatch(p, op.get_friendly_name()) for p in FLOAT_SCOPE)]
    names: set[str] = set()
    while stack:
        op = stack.pop()
        if op.get_friendly_name() not in names:
            names.add(op.get_friendly_name())
            stack.extend(target.get_node() for output in op.outputs() for target in output.get_target_inputs())
    if quantize_distance:
        names = {name for name in names if not re.fullmatch(DISTANCE_PRODUCT, name)}
    return sorted(names)


def int8_dot_products() -> tuple[str, list[str] | None]:
    """This CPU's name and which of :data:`INT8_DOT_PRODUCT_FLAGS` it has (``None``: its flags are
    unknown, as off Linux)."""
    name, flags = speed.cpu_model()
    cap = speed.isa_cap()
    if cap in speed.ISA_CAPS:
        name = f"{name}, kernels capped at {cap}"
    return name, [flag for flag in INT8_DOT_PRODUCT_FLAGS if flag in flags] if flags else None


def _warn_where_int8_gains_little() -> None:
    """Say so where the CPU that quantizes (often the one that serves) lacks VNNI and AMX, which INT8 gains most by."""
    name, found = int8_dot_products()
    if found == []:  # flags known, none of them
        logger.warning(
            "This CPU (%s) has no VNNI or AMX: INT8 gains less here than on a CPU that has them, and on some cores "
            "nothing. Compare the two models' latencies on the CPU that serves them (the optimize command prints "
            "both; docs/benchmarks.md).", name)


def has_distance_product(model: ov.Model) -> bool:
    """Whether the exported graph has PaDiM's distance products (:data:`DISTANCE_PRODUCT`).

    Args:
        model: the exported FP32 graph.
    """
    return any(re.fullmatch(DISTANCE_PRODUCT, op.get_friendly_name()) for op in model.get_ops())


def distance_in_int8(options: QuantizationOptions, distance_product: bool) -> bool:
    """Whether :func:`quantize` quantizes PaDiM's distance product, and a log line saying why.

    Args:
        options: ``options.quantize_distance`` decides; ``None`` asks this machine's CPU.
        distance_product: the graph has one (:func:`has_distance_product`); without, nothing to decide.
    """
    if not distance_product:
        return False
    if options.quantize_distance is not None:
        return options.quantize_distance
    name, found = int8_dot_products()
    if found:
        logger.info("PaDiM's distance product is quantized: this CPU (%s) has %s.", name, " ".join(found))
    else:
        logger.info("PaDiM's distance product stays in float: this CPU (%s) has no VNNI or AMX, where OpenVINO's "
                    "INT8 product is slower than FP32. Set quantize_distance true to quantize it for a CPU that "
                    "has them.", name)
    return bool(found)


def _read_model(model_path: Path) -> tuple[OpenVINOInferencer, ov.Model]:
    source = OpenVINOInferencer(model_path)  # a missing file, foreign model or missing metadata is a clear error
    model = ov.Core().read_model(model_path)
    if is_quantized(model):
        raise QuantizationError(
            f"{str(model_path)!r} is already quantized (it holds FakeQuantize nodes): quantizing twice compounds "
            "the rounding. Quantize the FP32 export instead (`python -m otx_anomaly export --precision FP32`).")
    return source, model


def quantize(
    model_path: str | Path,
    calibration_images: Sequence[str | Path | np.ndarray],
    output_dir: str | Path | None = None,
    options: QuantizationOptions | None = None,
    validation: Sequence[LabeledImage] | None = None,
) -> Path:
    """Write an INT8 copy of an exported model and return its ``model.xml``.

    Args:
        model_path: an FP32 (or FP16) ``model.xml`` written by otx_anomaly's export.
        calibration_images: normal images (paths or arrays); up to ``options.subset_size`` are used.
        output_dir: default ``int8`` beside the model's folder (``export/fp32/model.xml`` gives
            ``export/int8/model.xml``). Written atomically: an interrupted run leaves no partial model.
        options: how to quantize (default :class:`QuantizationOptions`).
        validation: labeled images: given, NNCF's accuracy control holds ``options.metric`` within
            ``options.max_drop`` on them (``options.accuracy_control`` asks the ``optimize`` command
            and the export callback to pass the validation split here, and requires it).

    Raises:
        QuantizationError: the model is already quantized or has no metadata, the calibration set
            is empty, or accuracy control lacks validation images of both kinds.

    Example:
        >>> int8 = quantize("export/fp32/model.xml", normal_images,  # doctest: +SKIP
        ...                 options=QuantizationOptions(subset_size=100))
    """
    import nncf

    options = options or QuantizationOptions()
    model_path = Path(model_path)
    if options.accuracy_control and validation is None:
        raise QuantizationError("Accuracy control needs labeled validation images (normal and anomalous).")
    source, model = _read_model(model_path)
    _warn_where_int8_gains_little()
    calibration_images = list(calibration_images)
    if not calibration_images:
        raise QuantizationError(
            "The calibration set is empty: give normal images (a dataset's train/good folder) to calibrate on.")
    if len(calibration_images) < options.subset_size:
        logger.info("Calibrating on all %d normal images (fewer than subset_size=%d); more images give steadier "
                    "activation ranges.", len(calibration_images), options.subset_size)
    subset = min(options.subset_size, len(calibration_images))
    calibration = nncf.Dataset(calibration_images, lambda image: source.preprocess(image)[0])
    floats = float_scope(model, quantize_distance=distance_in_int8(options, has_distance_product(model)))
    # the embedded resize stays in float always (pixel values in, pixel values out: nothing to gain)
    ignored = nncf.IgnoredScope(names=floats if options.keep_float else [], patterns=[re.escape(RESIZE_PREFIX) + ".*"],
                                validate=False)
    common = {"subset_size": subset, "ignored_scope": ignored, "fast_bias_correction": options.fast_bias_correction}
    with _quiet_node_lists():
        if validation is not None:
            quantized = _quantize_with_accuracy_control(nncf, model, calibration, source, list(validation),
                                                        options, **common)
        else:
            quantized = nncf.quantize(model, calibration, **common)
    quantized.set_rt_info("INT8", [MODEL_INFO, "precision"])
    target = Path(output_dir) if output_dir is not None else model_path.parent.parent / "int8"
    return _save_atomically(quantized, target)


@contextlib.contextmanager
def _quiet_node_lists() -> Iterator[None]:
    """Drop NNCF's list of every node it leaves unquantized (dozens of lines on each run); its
    progress bars and accuracy-control reports stay."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Not adding activation input quantizer")

    nncf_logger = logging.getLogger("nncf")
    nncf_logger.addFilter(keep)
    try:
        yield
    finally:
        nncf_logger.removeFilter(keep)


def _quantize_with_accuracy_control(nncf: Any, model: ov.Model, calibration: Any, source: OpenVINOInferencer,
                                    validation: list[LabeledImage], options: QuantizationOptions,
                                    **common: Any) -> ov.Model:
    labels = {int(sample.label) for sample in validation}
    if labels != {0, 1}:
        raise QuantizationError(
            f"Accuracy control needs normal and anomalous validation images; got labels {sorted(labels)}. Use a "
            "validation split with both (for example --data.val_split_mode from_test).")
    if options.metric == "pixel_AUROC" and not any(sample.mask is not None for sample in validation if sample.label):
        raise QuantizationError("pixel_AUROC needs masks for the anomalous validation images; choose image_AUROC.")
    prepared = prepare(source, validation)

    def validate(compiled: ov.CompiledModel, items: Any) -> tuple[float, list[list[np.ndarray]]]:
        """The metric, and each image's outputs: NNCF ranks the layers to restore by how much they
        change the outputs (an AUROC of one image would say nothing)."""
        chosen = list(items)
        outputs = run(compiled, [x for x, _, _ in chosen])
        value = metrics_of(outputs, chosen, (options.metric,)).get(options.metric, float("nan"))
        return value, [[np.asarray(output.score), output.anomaly_map] for output in outputs]

    expose_raw_outputs(model)  # the metric ranks raw scores, as evaluate does; the saved model keeps four outputs
    quantized = nncf.quantize_with_accuracy_control(
        model, calibration, nncf.Dataset(prepared, lambda item: item[0]), validate, max_drop=options.max_drop,
        **common)
    remove_raw_outputs(quantized)
    return quantized


def _save_atomically(model: ov.Model, target: Path) -> Path:
    try:
        staging = staging_folder(target)
    except OSError as error:
        raise QuantizationError(f"Cannot write to {str(target.parent)!r} ({error}); choose a writable "
                                "output folder.") from error
    try:
        ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("INT8 model written to %s", target / "model.xml")
    return target / "model.xml"

