"""NNCF INT8: the quantized model keeps its metadata and predictions, the CLI and the export callback
produce it, and the inputs that cannot work fail with a message that says what to do."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import lightning.pytorch as pl
import openvino as ov
import pytest

from otx_anomaly.callbacks import OpenVINOExport
from otx_anomaly.cli import main
from otx_anomaly.deploy import OpenVINOInferencer, QuantizationOptions, evaluate, labeled_images, quantize
from otx_anomaly.deploy.export import OUTPUT_NAMES, export_model
from otx_anomaly.deploy.inferencer import expose_raw_outputs
from otx_anomaly.deploy.metadata import read_metadata
from otx_anomaly.deploy.quantization import is_quantized
from otx_anomaly.deploy.resize import RESIZE_PREFIX
from otx_anomaly.errors import ConfigError, MetadataError, QuantizationError
from otx_anomaly.models import Padim
from tests.helpers import SMALL
from tests.helpers import demo_data as _data
from tests.helpers import trainer as _trainer


@pytest.fixture(scope="module")
def fitted(padim_checkpoint, demo_root, tmp_path_factory):
    """The session's tiny PaDiM, its FP32 export and its data module (set up)."""
    model = Padim.load_from_checkpoint(padim_checkpoint)
    datamodule = _data(demo_root)
    datamodule.setup()
    fp32 = export_model(model, tmp_path_factory.mktemp("export") / "fp32")
    return model, fp32, datamodule


@pytest.fixture(scope="module")
def int8(fitted):
    """Quantized for a CPU with VNNI or AMX (the distance product too), whichever CPU runs the tests."""
    _, fp32, datamodule = fitted
    return quantize(fp32, list(datamodule.train_data.samples.image_path),
                    options=QuantizationOptions(quantize_distance=True))


def test_int8_is_written_beside_the_fp32_model_with_its_metadata(fitted, int8):
    _, fp32, _ = fitted
    assert int8 == fp32.parent.parent / "int8" / "model.xml" and int8.with_suffix(".bin").is_file()
    core = ov.Core()
    original, quantized = core.read_model(fp32), core.read_model(int8)
    assert is_quantized(quantized) and not is_quantized(original)
    assert read_metadata(quantized) == read_metadata(original)
    assert quantized.get_rt_info(["model_info", "precision"]).astype(str) == "INT8"
    assert not [p for p in int8.parent.parent.iterdir() if p.name.startswith(".")]  # no staging folders left


def _quantized_consumers(model_path) -> set[str]:
    """Names of the nodes that a FakeQuantize feeds."""
    model = ov.Core().read_model(model_path)
    return {target.get_node().get_friendly_name() for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
            for output in op.outputs() for target in output.get_target_inputs()}


def test_int8_keeps_the_anomaly_map_and_normalization_in_float_but_the_distance_product(fitted, int8):
    """The backbone and PaDiM's (scaled) distance product are quantized; no FakeQuantize feeds the
    rest of the map generator or the post-processor."""
    from otx_anomaly.deploy.quantization import DISTANCE_PRODUCT

    consumers = _quantized_consumers(int8)
    product = {n for n in consumers if re.fullmatch(DISTANCE_PRODUCT, n)}
    assert any("feature_extractor" in n for n in consumers) and len(product) == 2  # the two blocks
    assert not [n for n in consumers - product if "anomaly_map_generator" in n or "post_processor" in n]
    assert not [n for n in consumers if n.startswith(RESIZE_PREFIX)], "the embedded resize stays in float"


def test_stage_profile_counts_each_quantizer_with_the_layer_it_feeds(int8):
    """NNCF's quantizers carry no module name; the benchmark's stage profile counts them with the
    layers they quantize, not as pre-processing, so that INT8's stages compare with FP32's."""
    from benchmarks.speed import node_stages
    from otx_anomaly.deploy.speed import CPU_CONFIG

    runtime = ov.Core().compile_model(str(int8), "CPU", CPU_CONFIG).get_runtime_model()
    stages = node_stages(runtime)
    quantizers = {op.get_friendly_name() for op in runtime.get_ops()
                  if op.get_rt_info()["layerType"].astype(str) == "FakeQuantize"}
    feeding_layers = {name for name in quantizers if "pre_processor" not in name}  # not the input's own
    assert feeding_layers and {stages[name] for name in feeding_layers} <= {"backbone", "distance"}
    assert set(stages) == {op.get_friendly_name() for op in runtime.get_ops()}


@pytest.mark.parametrize(("flags", "warned"), [({"avx2", "fma"}, True), ({"avx2", "avx512_vnni"}, False),
                                               (set(), False)])
def test_quantizing_on_a_cpu_without_int8_dot_products_says_int8_gains_little_there(
        flags, warned, fitted, tmp_path, monkeypatch, caplog):
    """Without VNNI or AMX INT8 gains less (on some CPUs nothing); unknown flags (not Linux) say nothing."""
    from otx_anomaly.deploy import speed

    _, fp32, datamodule = fitted
    monkeypatch.setattr(speed, "cpu_model", lambda: ("Test CPU", frozenset(flags)))
    with caplog.at_level("WARNING", logger="otx_anomaly.deploy.quantization"):
        quantize(fp32, list(datamodule.train_data.samples.image_path)[:4], tmp_path / "int8")
    # the name may carry a kernel cap (", kernels capped at AVX2") when the suite runs under one
    assert ("has no VNNI or AMX" in caplog.text) is warned
    assert ("This CPU (Test CPU" in caplog.text) is warned


def test_int8_keeps_the_distance_product_in_float_when_asked(fitted, tmp_path):
    _, fp32, datamodule = fitted
    calibration = list(datamodule.train_data.samples.image_path)
    kept = quantize(fp32, calibration, tmp_path / "kept", QuantizationOptions(quantize_distance=False))
    assert not [n for n in _quantized_consumers(kept) if "anomaly_map_generator" in n]


@pytest.mark.parametrize(("flags", "expected"), [({"avx2", "avx512f", "avx512_vnni"}, True),
                                                 ({"avx2", "avx_vnni"}, True), ({"avx2", "amx_int8"}, True),
                                                 ({"avx2", "fma"}, False), (set(), False)])
def test_the_distance_product_is_quantized_by_default_only_where_the_cpu_has_int8_dot_products(
        flags, expected, monkeypatch, caplog):
    """On AVX2 without VNNI OpenVINO's INT8 product is slower than FP32, so the default asks the CPU;
    an explicit choice and a graph without the product (STFPM's) are not affected by it."""
    from otx_anomaly.deploy import speed
    from otx_anomaly.deploy.quantization import distance_in_int8

    monkeypatch.setattr(speed, "cpu_model", lambda: ("Test CPU", frozenset(flags)))
    with caplog.at_level("INFO", logger="otx_anomaly.deploy.quantization"):
        assert distance_in_int8(QuantizationOptions(), True) is expected
    assert ("is quantized" if expected else "stays in float") in caplog.text and "Test CPU" in caplog.text
    assert distance_in_int8(QuantizationOptions(quantize_distance=not expected), True) is (not expected)
    assert distance_in_int8(QuantizationOptions(quantize_distance=True), False) is False


@pytest.mark.parametrize(("cap", "expected"), [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_VNNI", True),
                                               ("ALL", True)])
def test_an_isa_cap_in_the_environment_decides_like_a_cpu_without_the_capped_instructions(
        cap, expected, monkeypatch):
    """``ONEDNN_MAX_CPU_ISA`` makes OpenVINO run the capped kernels (an AVX-512 machine standing in
    for an AVX2 one): the distance default and the benchmarks' CPU line follow the cap."""
    from pathlib import Path

    from benchmarks.report import Machine
    from otx_anomaly.deploy import speed
    from otx_anomaly.deploy.quantization import distance_in_int8

    cpuinfo = ("cpu family\t: 25\nmodel\t\t: 17\nmodel name\t: Test CPU\n"
               "flags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: cpuinfo if str(self) == "/proc/cpuinfo" else "")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert distance_in_int8(QuantizationOptions(), True) is expected
    assert "fpu" in speed.cpu_model()[1]  # flags outside the ISA list are kept
    machine = Machine.here()
    assert f"kernels capped: ONEDNN_MAX_CPU_ISA={cap}" in machine.describe()
    assert machine.cpu == "Test CPU (family 25 model 17)"
    assert (machine.kind != "AVX2") is expected and (machine.isa == "avx2") is (cap == "AVX2")


def test_int8_predicts_like_the_fp32_model(fitted, int8):
    _, fp32, datamodule = fitted
    test = labeled_images(datamodule.test_data.samples)
    before, after = evaluate(fp32, test), evaluate(int8, test)
    assert set(before) == {"image_AUROC", "image_F1", "pixel_AUROC"}
    for name in before:
        assert after[name] == pytest.approx(before[name], abs=0.05), name
    assert OpenVINOInferencer(int8).predict(test[0].image).anomaly_map.shape == (64, 64)


def test_quantizing_an_int8_model_is_refused(fitted, int8):
    _, _, datamodule = fitted
    with pytest.raises(QuantizationError, match="already quantized.*FP32"):
        quantize(int8, list(datamodule.train_data.samples.image_path), int8.parent.parent / "again")
    assert not (int8.parent.parent / "again").exists()


def test_a_model_without_metadata_is_refused(fitted, tmp_path):
    _, fp32, datamodule = fitted
    graph = ov.Core().read_model(fp32)
    foreign = ov.Model(graph.get_results(), graph.get_parameters(), "foreign")  # same graph, no model_info
    ov.save_model(foreign, tmp_path / "foreign.xml")
    with pytest.raises(MetadataError, match="not exported by otx_anomaly"):
        quantize(tmp_path / "foreign.xml", list(datamodule.train_data.samples.image_path), tmp_path / "int8")
    assert not (tmp_path / "int8").exists()


def test_an_empty_calibration_set_is_refused(fitted, tmp_path):
    _, fp32, _ = fitted
    with pytest.raises(QuantizationError, match="calibration set is empty"):
        quantize(fp32, [], tmp_path / "int8")
    assert not (tmp_path / "int8").exists()


def test_accuracy_control_needs_both_labels(fitted, tmp_path):
    _, fp32, datamodule = fitted
    normals = [s for s in labeled_images(datamodule.test_data.samples) if not s.label]
    with pytest.raises(QuantizationError, match="normal and anomalous"):
        quantize(fp32, list(datamodule.train_data.samples.image_path), tmp_path / "int8", validation=normals)


def test_accuracy_control_quantizes_within_the_allowed_drop(fitted, tmp_path, monkeypatch):
    import nncf

    _, fp32, datamodule = fitted
    validation = labeled_images(datamodule.val_data.samples)
    calls = []
    real = nncf.quantize_with_accuracy_control

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", spy)
    options = QuantizationOptions(accuracy_control=True, metric="image_AUROC", max_drop=0.01)
    int8 = quantize(fp32, list(datamodule.train_data.samples.image_path), tmp_path / "int8", options,
                    validation=validation)
    before, after = evaluate(fp32, validation, ["image_AUROC"]), evaluate(int8, validation, ["image_AUROC"])
    assert after["image_AUROC"] >= before["image_AUROC"] - 0.01
    assert len(calls) == 1 and calls[0]["max_drop"] == 0.01  # NNCF's accuracy control ran, not plain PTQ
    saved = ov.Core().read_model(int8)  # it ranked raw scores; the model it saved has the four outputs still
    assert [o.get_any_name() for o in saved.outputs] == list(OUTPUT_NAMES)
    expose_raw_outputs(saved)  # the raw tensors keep their names


def test_an_interrupted_quantization_leaves_the_previous_model(fitted, int8, monkeypatch):
    _, fp32, datamodule = fitted
    before = int8.with_suffix(".bin").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ov, "save_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        quantize(fp32, list(datamodule.train_data.samples.image_path))
    assert int8.with_suffix(".bin").read_bytes() == before
    assert not [p for p in int8.parent.parent.iterdir() if p.name.startswith(".")]


def test_optimize_command_writes_int8_and_prints_the_comparison(fitted, demo_root, tmp_path, capsys):
    _, fp32, _ = fitted
    output = tmp_path / "int8"
    code = main(["optimize", "--model_path", str(fp32), "--config", "recipes/padim_seg.yaml",
                 "--data.root", str(demo_root), "--data.category", "demo", "--data.num_workers", "0",
                 "--subset_size", "8", "--output_dir", str(output), "--benchmark_images", "2"])
    assert code == 0
    assert is_quantized(ov.Core().read_model(output / "model.xml"))
    table = capsys.readouterr().out
    for row in ("size (MB)", "image_AUROC", "pixel_AUROC", "latency (ms)", "throughput (images/s)"):
        assert row in table


def test_optimize_command_names_a_wrong_data_key(fitted, demo_root, tmp_path, capsys):
    _, fp32, _ = fitted
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", "--model_path", str(fp32), "--config", "recipes/padim_seg.yaml",
              "--data.root", str(demo_root), "--data.category", "demo", "--data.batch_sise", "4"])
    assert exit_info.value.code == 2
    assert "batch_sise" in capsys.readouterr().err


def test_optimize_command_on_a_missing_dataset_is_a_clear_error(fitted, tmp_path, capsys):
    _, fp32, _ = fitted
    code = main(["optimize", "--model_path", str(fp32), "--config", "recipes/padim_seg.yaml",
                 "--data.root", str(tmp_path / "nowhere"), "--data.category", "demo", "--data.num_workers", "0"])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_export_callback_writes_fp32_and_int8_at_the_end_of_fit(demo_root, tmp_path):
    pl.seed_everything(0)
    model = Padim(task="classification", **SMALL)
    callback = OpenVINOExport(output_dir=tmp_path / "export", precision="INT8",
                              quantization=QuantizationOptions(subset_size=8))
    trainer = _trainer(tmp_path, callbacks=[callback], **model.trainer_arguments)
    trainer.fit(model, datamodule=_data(demo_root))
    assert [p.parent.name for p in callback.exported] == ["fp32", "int8"]
    assert is_quantized(ov.Core().read_model(callback.exported[1]))
    assert OpenVINOInferencer(callback.exported[1]).task == "classification"


def test_export_callback_rejects_unknown_options():
    with pytest.raises(ConfigError, match="INT8"):
        OpenVINOExport(precision="INT4")
    with pytest.raises(QuantizationError, match="metric"):
        QuantizationOptions(metric="accuracy")


def test_deploy_stays_torch_free_until_quantize_is_used():
    code = "import sys, otx_anomaly.deploy as d; d.OpenVINOInferencer; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_nothing_downstream_of_the_map_generator_is_quantized(fitted, int8):
    """The float scope follows the graph, not only node names: OpenVINO renames some map-generator
    nodes, and quantizers there clip the anomaly map (docs/quantization.md)."""
    import openvino as ov

    from otx_anomaly.deploy.quantization import float_scope

    _, fp32, _ = fitted
    model = ov.Core().read_model(fp32)
    scope = set(float_scope(model, quantize_distance=True))  # as quantize() uses it for a scaled PaDiM export
    assert {result.get_friendly_name() for result in model.get_results()} <= scope  # the outputs are downstream
    quantized = ov.Core().read_model(int8)
    fed = {target.get_node().get_friendly_name() for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize"
           for output in op.outputs() for target in output.get_target_inputs()}
    assert fed and not fed & scope, sorted(fed & scope)[:5]
