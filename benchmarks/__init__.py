"""otx_anomaly's benchmarks: one tool, ``python -m benchmarks SUBCOMMAND`` (see ``__main__``).

``quality`` (ours beside anomalib's own models), ``speed`` (eager PyTorch and the OpenVINO exports
on this CPU), ``thresholds`` (thresholds from normal images only) and ``memory`` (PaDiM's fit
memory) each write their tables into ``docs/benchmarks.md``.
"""
