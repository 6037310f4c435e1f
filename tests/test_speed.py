"""How ``optimize`` and the speed benchmark time engines against each other (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks.speed import batch_throughput
from otx_anomaly.deploy.speed import latencies_ms
from otx_anomaly.errors import ConfigError


def test_engines_are_timed_in_alternating_passes_so_that_drift_hits_all_alike():
    """A shared machine's speed drifts from minute to minute, which would favour whichever engine ran
    first; alternating passes make the ratio fair."""
    calls = []

    def engine(name):
        return lambda item: calls.append((name, item))

    latencies = latencies_ms({"FP32": (engine("FP32"), ["a", "b"]), "INT8": (engine("INT8"), ["a", "b"])}, repeats=2)
    one_round = [("FP32", "a"), ("FP32", "b"), ("INT8", "a"), ("INT8", "b")]
    assert calls == [("FP32", "a"), ("INT8", "a"), *one_round, *one_round]  # warm-ups, then rounds
    assert set(latencies) == {"FP32", "INT8"} and all(ms >= 0 for ms in latencies.values())


def test_batches_are_stacked_from_single_images_and_empty_inputs_are_refused():
    import numpy as np

    shapes = []
    rate = batch_throughput(lambda batch: shapes.append(batch.shape), [np.zeros((1, 3))], batch_size=4, repeats=1)
    assert rate > 0 and shapes == [(4, 3), (4, 3)]  # one image repeated to fill a batch: warm-up and one pass
    with pytest.raises(ConfigError, match="inputs for each"):
        latencies_ms({"FP32": (print, [])})
