"""The image threshold from normal scores alone, at a target false-positive rate.

With few normal validation images an empirical high quantile is their maximum, so one unusual
normal image decides the threshold (and anomalib's rule, the maximum, is that by definition). A
robust fit of the normal scores uses all of them: the threshold is ``median + z(1 - rate) * 1.4826
* MAD``, the ``1 - rate`` quantile of a normal distribution whose centre and spread are the median
and the scaled median absolute deviation, so a few outlying normal images barely move it. The fit
is made on distances: PaDiM's scores as they are, the square roots of STFPM's squared errors (a
normal fit of raw squared errors puts the threshold too low, flagging more normal images than the
target rate); the model's ``normal_fit_scale`` says which. ``python -m benchmarks thresholds``
chooses between scales leave one dataset out and compares the rule with the best threshold
reachable on the test images (docs/benchmarks.md).
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
        scale: the scale of the fit, ``roots`` (squared distances) or ``raw`` (distances).

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

    def __init__(self, target_false_positive_rate: float = 0.02, scale: str = "roots", **kwargs) -> None:
        super().__init__(**kwargs)
        self.target_false_positive_rate = check_rate(target_false_positive_rate)
        self.scale = scale
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
        return torch.tensor(normal_tail_threshold(scores, self.target_false_positive_rate, self.scale),
                            dtype=torch.float64)
