"""The module names the exported graph is read by, written once for the models and the deployment code.

OpenVINO names each node of a converted torch module after the attribute path of the module that
computed it: ``__module.model.anomaly_map_generator/aten::matmul/MatMul`` is a matrix product made
by the map generator of the export graph's network. INT8 quantization finds what it keeps in
floating point by these names (:mod:`otx_anomaly.deploy.quantization`), and the benchmarks' stage
profile attributes time by them, so the modules that build the graph are named with these
constants, and ``tests/test_export_names.py`` checks that every model's exported graph carries them.
Renaming a module therefore changes the constant, never silently what INT8 quantizes.

Torch-free and at the bottom of the package, so ``models/`` and ``deploy/`` both import it.

Example:
    >>> node_prefix(NETWORK, MAP_GENERATOR)
    '__module.model.anomaly_map_generator'
"""

from __future__ import annotations

#: The export graph's parts (``deploy.export``): the embedded pre-processing, the network (the
#: model's ``export_network()``) and the post-processing (normalization and thresholds).
PRE_PROCESSOR = "pre_processor"
NETWORK = "model"
POST_PROCESSOR = "post_processor"

#: In the network: the module that turns features into the anomaly map (PaDiM's distance, STFPM's
#: feature comparison) with its resampling to the input size. anomalib's name, which STFPM's
#: forward reads.
MAP_GENERATOR = "anomaly_map_generator"
#: In the map generator: the upsampling to the input size (PaDiM's includes the blur). Every other
#: node of the generator is the comparison itself; PaDiM's distance products are its matrix products.
MAP_UPSAMPLING = "upsample"
#: The CNNs in the network: PaDiM's feature extractor, STFPM's teacher and student (anomalib's names).
BACKBONES = ("feature_extractor", "teacher_model", "student_model")


def node_prefix(*modules: str) -> str:
    """The prefix of the OpenVINO node names made by the module at this attribute path of the export graph.

    Args:
        modules: attribute names from the graph down, e.g. ``NETWORK, MAP_GENERATOR``.
    """
    return ".".join(("__module", *modules))
