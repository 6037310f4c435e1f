"""The results of a prediction run, without torch: records, the files written, metrics against
ground truth, overlays, the HTML report and the console tables.

The Lightning ``predict`` (:class:`~otx_anomaly.callbacks.AnomalyPredictionWriter`) and the
exported-model ``infer`` command both write through :class:`~otx_anomaly.results.writer.PredictionOutputs`,
so their folders, reports and metrics agree.
"""
