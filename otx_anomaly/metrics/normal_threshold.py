"""The image threshold from normal scores alone, at a target false-positive rate.

With 10 to 50 normal validation images an empirical high quantile is their maximum, so one
unusual normal image decides the threshold (and anomalib's rule, the maximum, is that by
definition). A robust fit of the normal scores uses all of them: on the square roots of the scores,
the threshold is ``median + z(1 - rate) * 1.4826 * MAD``, the ``1 - rate`` quantile of a normal
distribution whose centre and spread are the median and the scaled median absolute deviation, so
a few outlying normal images barely move it. The square root because anomaly scores are
non-negative and skewed to the right (distances, and squared errors such as STFPM's): on their
roots the normal images' scores are close to symmetric, and a normal fit of raw squared errors
puts the threshold too low, flagging more normal images than the target rate. Negative scores (no
model here gives them) are fitted as they are. ``python -m benchmarks thresholds`` compares the
rule with the best threshold reachable on the test images (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from otx_anomaly.thresholds import check_rate, normal_tail_threshold


class NormalTailThreshold(Metric):
    """The score above which a share ``target_false_positive_rate`` of normal images is expected.

    The maths is :func:`otx_anomaly.thresholds.normal_tail_threshold`, which deployment uses too.

    Args:
        target_false_positive_rate: the share of normal images the threshold may flag, in (0, 0.5).

    Raises:
        ConfigError: the rate is out of range.

    Example:
        >>> import torch
        >>> metric = NormalTailThreshold(target_false_positive_rate=0.02)
        >>> metric.update(torch.tensor([1.0, 1.2, 0.9, 1.1, 1.0, 5.0]))  # one unusual normal image
        >>> round(float(metric.compute()), 3)
        1.368
    """

    full_state_update = False

    def __init__(self, target_false_positive_rate: float = 0.02, **kwargs) -> None:
        super().__init__(**kwargs)
        self.target_false_positive_rate = check_rate(target_false_positive_rate)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor) -> None:
        """Add image scores of normal images.

        Args:
            scores: raw anomaly scores, any shape.
        """
        self.scores.append(scores.detach().reshape(-1).double())

    def compute(self) -> torch.Tensor:
        """The threshold (the largest score when the scores do not spread: nothing to fit)."""
        scores = dim_zero_cat(self.scores).cpu().numpy()
        return torch.tensor(normal_tail_threshold(scores, self.target_false_positive_rate), dtype=torch.float64)
