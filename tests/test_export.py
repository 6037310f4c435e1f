"""Export: OpenVINO predictions equal the Lightning model's, metadata round-trips, writes are atomic."""

from __future__ import annotations

import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import openvino as ov
import pytest
from PIL import Image

from otx_anomaly.callbacks import OpenVINOExport
from otx_anomaly.cli import main
from otx_anomaly.data import MVTecDataModule
from otx_anomaly.deploy import FIELDS, OpenVINOInferencer, evaluate, export_model, labeled_images
from otx_anomaly.deploy.export import OUTPUT_NAMES
from otx_anomaly.errors import ExportError, MetadataError
from otx_anomaly.io.images import load_image, resize_image
from otx_anomaly.models import Padim, Stfpm
from otx_anomaly.tasks import AnomalyTask
from tests.helpers import SMALL, assert_same_predictions
from tests.helpers import demo_data as _data
from tests.helpers import trainer as _trainer


@pytest.mark.parametrize("task", list(AnomalyTask))
def test_openvino_fp32_predicts_as_the_lightning_model(task, padim_checkpoint, demo_root, tmp_path):
    model = Padim.load_from_checkpoint(padim_checkpoint, task=task)
    datamodule = _data(demo_root)
    expected = [p for batch in _trainer(tmp_path).predict(model, datamodule=datamodule) for p in batch]
    inferencer = OpenVINOInferencer(export_model(model, tmp_path / "fp32"))
    assert_same_predictions(expected, inferencer)


@pytest.mark.parametrize("frame", [(30, 50), (64, 80), (200, 97), (333, 517)],
                         ids=["upscale", "same-size", "mixed", "downscale"])
def test_the_embedded_resize_is_trainings_antialiased_resize_at_any_frame_size(frame):
    """The graph's pre-processing gives what training's torchvision ``Resize`` gives, batch of two."""
    import openvino.opset13 as ops
    import torch
    import torchvision.transforms.v2.functional as F

    from otx_anomaly.deploy.export import embed_preprocessing

    parameter = ops.parameter([1, 3, 64, 80], ov.Type.f32)
    graph = embed_preprocessing(ov.Model([ops.multiply(parameter, ops.constant(np.float32(1)))], [parameter]), 64, 80)
    # not OpenVINO's Interpolate, whose CPU kernel is prepared anew for each frame size (docs/benchmarks.md)
    assert "Interpolate" not in {op.get_type_name() for op in graph.get_ops()}
    compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    bgr = np.random.default_rng(sum(frame)).integers(0, 256, (2, *frame, 3), dtype=np.uint8)
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    expected = F.resize(rgb, [64, 80], antialias=True).numpy()
    assert np.abs(compiled(bgr)[0] - expected).max() < 1e-5


def test_metadata_round_trips_through_openvino_alone(padim_checkpoint, tmp_path):
    model = Padim.load_from_checkpoint(padim_checkpoint, task="detection")
    path = export_model(model, tmp_path / "fp32")
    ov_model = ov.Core().read_model(path)
    info = {key: ov_model.get_rt_info(["model_info", key]).astype(str) for key in FIELDS}
    stats = model.post_processor.statistics()
    assert info["model_type"] == "AnomalyDetection" and info["task"] == "detection"
    assert info["labels"] == "Normal Anomaly" and info["model_name"] == "Padim" and info["backbone"] == "resnet18"
    for key in ("image_threshold", "pixel_threshold", "image_min", "image_max", "pixel_min", "pixel_max"):
        assert float(info[key]) == stats[key], key  # exact: stored as text, not as a 6-digit float
    assert float(info["normalization_scale"]) == pytest.approx(stats["image_max"] - stats["image_min"])
    assert info["image_shape"].split() == ["64", "64"]
    assert [float(v) for v in info["mean_values"].split()] == pytest.approx([123.675, 116.28, 103.53])
    assert [float(v) for v in info["scale_values"].split()] == pytest.approx([58.395, 57.12, 57.375])
    assert info["reverse_input_channels"] == "True" and info["resize_type"] == "standard"
    assert info["min_box_area"] == "16" and info["input_range"] == "0-255 bgr nhwc u8"
    assert ov_model.get_rt_info(["model_info", "embedded_processing"]).astype(str) == "True"
    assert [ov_model.get_rt_info(["model_info", k]).astype(str) for k in ("orig_height", "orig_width")] == ["64", "64"]
    assert str(ov_model.inputs[0].get_partial_shape()) == "[?,?,?,3]"  # OpenCV frames of any size and batch
    assert info["outputs"] == "pred_score pred_label anomaly_map pred_mask"
    assert [o.get_any_name() for o in ov_model.outputs] == info["outputs"].split()
    assert OpenVINOInferencer(path).metadata["image_threshold"] == stats["image_threshold"]


def test_evaluated_aurocs_are_the_lightning_models_under_normal_only_validation(demo_root, tmp_path):
    """With normal validation images only, defects score beyond the normalization range and the graph's
    clipped outputs tie at 1.0; evaluate ranks the raw tensors the export names, as anomalib's metrics
    rank the Lightning model's scores (ranking the clipped maps instead moves this data's pixel AUROC
    by more than the tolerance)."""
    pl.seed_everything(1)
    data = MVTecDataModule(root=demo_root, category="demo", train_batch_size=16, eval_batch_size=16, num_workers=0,
                           val_split_mode="from_train", val_split_ratio=0.25, seed=1)
    model = Padim(task="segmentation", **SMALL)
    run = _trainer(tmp_path, **model.trainer_arguments)
    run.fit(model, datamodule=data)
    eager = run.test(model, datamodule=data, verbose=False)[0]
    path = export_model(model, tmp_path / "fp32")
    got = evaluate(path, labeled_images(data.test_data.samples))
    names = {"image_AUROC": "image_AUROC", "pixel_AUROC": "pixel_AUROC", "image_F1": "image_F1Score"}
    for metric, theirs in names.items():
        assert got[metric] == pytest.approx(eager[theirs], abs=1e-4), metric
    assert [o.get_any_name() for o in ov.Core().read_model(path).outputs] == list(OUTPUT_NAMES), "Model API sees four"


def test_a_graph_without_the_named_raw_tensors_is_refused_with_the_fix(padim_checkpoint, tmp_path):
    from otx_anomaly.deploy.export import RAW_TENSOR_NAMES

    path = export_model(Padim.load_from_checkpoint(padim_checkpoint), tmp_path / "fp32")
    renamed = ov.Core().read_model(path)
    for op in renamed.get_ops():  # metadata intact, the raw tensors under the tracer's names
        for output in op.outputs():
            if output.get_names() & set(RAW_TENSOR_NAMES.values()):
                output.get_tensor().set_names({f"traced_{op.get_friendly_name()}"})
    ov.save_model(renamed, tmp_path / "renamed" / "model.xml")
    with pytest.raises(MetadataError, match="raw_pred_score.*export it again"):
        OpenVINOInferencer(tmp_path / "renamed" / "model.xml")


def test_deploy_imports_neither_torch_nor_lightning():
    code = "import otx_anomaly.deploy, sys; assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_inferencer_takes_paths_and_arrays_of_any_size(padim_checkpoint, demo_root, tmp_path):
    inferencer = OpenVINOInferencer(export_model(Padim.load_from_checkpoint(padim_checkpoint), tmp_path / "m"))
    path = demo_root / "demo" / "test" / "stain" / "000.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    from_path, from_array = inferencer.predict(path), inferencer.predict(rgb)
    assert from_array.pred_score == from_path.pred_score
    np.testing.assert_array_equal(from_array.pred_mask, from_path.pred_mask)
    gray = inferencer.predict(rgb[..., 0])
    assert gray.pred_mask.shape == rgb.shape[:2]
    wide = inferencer.predict(np.zeros((30, 200, 3), np.uint8))
    assert wide.pred_mask.shape == (30, 200) and 0.0 <= wide.pred_score <= 1.0


def test_onnx_export_carries_the_metadata_and_runs(padim_checkpoint, demo_root, tmp_path):
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the [onnx] extra")
    model = Padim.load_from_checkpoint(padim_checkpoint)
    path = export_model(model, tmp_path / "onnx", export_format="onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["model_type"] == "AnomalyDetection" and float(props["image_threshold"]) == pytest.approx(
        model.post_processor.statistics()["image_threshold"])
    assert props["input_range"] == "0-1" and props["embedded_processing"] == "False"  # a plain float tensor
    ir = OpenVINOInferencer(export_model(model, tmp_path / "ir"))
    image = demo_root / "demo" / "test" / "stain" / "001.png"
    tensor = np.ascontiguousarray(resize_image(load_image(image), ir.input_size).transpose(2, 0, 1)[None])
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    onnx_score = float(np.asarray(compiled(tensor)[compiled.outputs[0]]).reshape(-1)[0])
    assert onnx_score == pytest.approx(ir.predict(image).pred_score, abs=1e-5)


def test_failed_export_leaves_no_partial_model_and_keeps_the_previous(padim_checkpoint, tmp_path, monkeypatch):
    model = Padim.load_from_checkpoint(padim_checkpoint)
    target = tmp_path / "export"
    first = export_model(model, target)
    before = first.read_bytes()

    def disk_full(ov_model, path, *args, **kwargs):
        with open(path, "w") as file:
            file.write("<net")  # half a file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ov, "save_model", disk_full)
    with pytest.raises(ExportError, match="No space left on device.*nothing was written"):
        export_model(model, target)
    assert first.read_bytes() == before, "the previous export is untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "no staging folder is left behind"
    with pytest.raises(ExportError):
        export_model(model, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_interrupted_export_leaves_nothing(padim_checkpoint, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ov, "save_model", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_model(Padim.load_from_checkpoint(padim_checkpoint), tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_unfitted_model_and_model_without_metadata_are_refused(tmp_path):
    with pytest.raises(ExportError, match="after `fit`"):
        export_model(Padim(**SMALL), tmp_path / "x")
    from openvino import opset13 as ops

    parameter = ops.parameter([1, 3, 8, 8], np.float32)
    ov.save_model(ov.Model([ops.relu(parameter)], [parameter]), tmp_path / "plain.xml")
    with pytest.raises(MetadataError, match="not exported by otx_anomaly"):
        OpenVINOInferencer(tmp_path / "plain.xml")


def test_export_callback_writes_fp32_and_fp16_after_fit(demo_root, tmp_path):
    pl.seed_everything(0)
    model = Stfpm(task="detection", **SMALL)
    callback = OpenVINOExport(precision=["FP32", "FP16"])
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[callback])
    trainer.fit(model, datamodule=_data(demo_root))
    assert [p.parent.name for p in callback.exported] == ["fp32", "fp16"]
    fp32, fp16 = (OpenVINOInferencer(p) for p in callback.exported)
    assert fp16.path.with_suffix(".bin").stat().st_size < 0.6 * fp32.path.with_suffix(".bin").stat().st_size
    image = demo_root / "demo" / "test" / "scratch" / "000.png"
    assert fp16.predict(image).pred_score == pytest.approx(fp32.predict(image).pred_score, abs=2e-2)
    with pytest.raises(Exception, match="FP32, FP16 and/or INT8"):
        OpenVINOExport(precision="INT4")


def test_export_command(padim_checkpoint, tmp_path, capsys):
    assert main(["export", "--ckpt_path", padim_checkpoint, "--output_dir", str(tmp_path / "ir")]) == 0
    assert (tmp_path / "ir" / "model.xml").is_file() and (tmp_path / "ir" / "model.bin").is_file()
    assert "Exported openvino FP32 model" in capsys.readouterr().out
    assert main(["export", "--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_inferencer_runs_lists_in_batches_with_the_answers_of_single_images(padim_checkpoint, demo_root, tmp_path):
    inferencer = OpenVINOInferencer(export_model(Padim.load_from_checkpoint(padim_checkpoint), tmp_path / "fp32"))
    paths = sorted((demo_root / "demo" / "test").rglob("*.png"))
    calls = []
    infer = inferencer.infer
    inferencer.infer = lambda tensor: calls.append(len(tensor)) or infer(tensor)
    batched = inferencer.predict(paths, batch_size=4)
    assert calls == [4] * (len(paths) // 4) + [len(paths) % 4] * bool(len(paths) % 4)  # a request per 4 images
    assert len(batched) == len(paths)
    for path, prediction in zip(paths, batched, strict=True):
        single = inferencer.predict(path)
        assert prediction.image_path == str(path) and prediction.pred_label == single.pred_label
        assert prediction.pred_score == pytest.approx(single.pred_score, abs=1e-5)


@pytest.mark.parametrize("model_class", [Padim, Stfpm])
def test_exported_maps_are_upsampled_by_matrix_products(model_class, padim_checkpoint, tmp_path):
    """No convolution or interpolation on the map (models/map_products.py): one (H, h) and one (w, W)
    product per map (PaDiM's upsampling and blur, each of STFPM's layer maps)."""
    if model_class is Padim:
        model = Padim.load_from_checkpoint(padim_checkpoint)
    else:  # the graph's structure, not its values: thresholds set by hand on an untrained student
        model = Stfpm(**SMALL)
        model.post_processor.set_normalization(image_min=0.0, image_max=1.0, pixel_min=0.0, pixel_max=1.0)
        model.post_processor.set_thresholds(image=0.5, pixel=0.5, rules={"image": "manual", "pixel": "manual"})
    ops = ov.Core().read_model(export_model(model, tmp_path / "fp32")).get_ops()
    generator = [op for op in ops if "anomaly_map_generator" in op.get_friendly_name()]
    assert not [op for op in generator if op.get_type_name() in ("Convolution", "Interpolate")]
    maps = [op for op in generator  # the map's products, not PaDiM's distance
            if any(f"generator.{part}" in op.get_friendly_name() for part in ("blur", "upsample"))]
    constants = sorted(str(value.get_partial_shape()) for op in maps if op.get_type_name() == "MatMul"
                       for value in op.input_values() if value.get_node().get_type_name() == "Constant"
                       and value.get_partial_shape().rank.get_length() == 2)
    height, width = (int(s) for s in model.input_size)
    strides = (4,) if model_class is Padim else (4, 8, 16)  # the maps: resnet18's layer1 (PaDiM), layers 1-3
    assert constants == sorted(shape for stride in strides
                               for shape in (f"[{height},{height // stride}]", f"[{width},{width // stride}]"))


def test_stage_profile_attributes_every_node_to_a_stage(padim_checkpoint, tmp_path):
    from benchmarks.speed import STAGES, stage_of, stage_profile

    inferencer = OpenVINOInferencer(export_model(Padim.load_from_checkpoint(padim_checkpoint), tmp_path / "fp32"))
    inputs = [inferencer.preprocess(np.zeros((48, 80, 3), np.uint8))[0]] * 2
    profile = stage_profile(inferencer.path, inputs, repeats=1)
    assert list(profile) == list(STAGES) and all(ms >= 0 for ms in profile.values())
    assert profile["backbone"] > 0 and profile["distance"] > 0 and profile["upsample + blur"] > 0
    assert stage_of("Multiply_1,__module.model.feature_extractor.feature_extractor.layer1.0.bn1/aten::batch_norm") \
        == "backbone"
    assert stage_of("__module.model.anomaly_map_generator/aten::matmul/MatMul") == "distance"
    assert stage_of("__module.post_processor/aten::gt/Greater") == "post-processing"
    assert stage_of("Interpolate_8988") == "pre-processing"  # PrePostProcessor's resize has no module name
