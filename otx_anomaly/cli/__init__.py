"""``otx-anomaly`` / ``python -m otx_anomaly``: one entry point, one dispatch, one error handler.

- ``fit``, ``validate``, ``test``, ``predict``: Lightning's CLI over our models and data
  (:mod:`otx_anomaly.cli.lightning`): ``--config`` takes a recipe, every key can be overridden;
- ``export``: a checkpoint to OpenVINO IR or ONNX (:mod:`otx_anomaly.cli.export`);
- ``optimize``: an exported model to INT8 with NNCF (:mod:`otx_anomaly.cli.optimize`);
- ``infer``: predict with an exported model, without torch (:mod:`otx_anomaly.cli.infer`);
- ``demo``: a synthetic dataset, then fit, test and predict (:mod:`otx_anomaly.cli.demo`).

Every flag is spelled ``--snake_case`` as Lightning's are. A user mistake (any
:class:`~otx_anomaly.errors.OtxAnomalyError`) ends with one ``error:`` line and exit code 2.

This module imports no torch: ``infer`` runs on machines without it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from otx_anomaly.errors import OtxAnomalyError

logger = logging.getLogger("otx_anomaly")

#: subcommand -> module whose ``run(argv)`` runs it; the others are LightningCLI's.
COMMANDS = {
    "demo": "otx_anomaly.cli.demo",
    "export": "otx_anomaly.cli.export",
    "infer": "otx_anomaly.cli.infer",
    "optimize": "otx_anomaly.cli.optimize",
}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so redirections made later still apply."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _QuietLightning(logging.Filter):
    """Lightning's advertising tips and notices our CLI makes moot (model summary modes, the
    model's default callbacks replacing the Trainer's) do not reach the user."""

    NOISE = ("💡 Tip", "litlogger", "litmodels", "modules in eval mode", "will override existing callbacks",
             "in train mode", "in eval mode")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


def quiet_console() -> None:
    """Silence the library noise a user of our CLI cannot act on; our own messages stay."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(timm|anomalib)(\..*)?")
    # the models silence the notices of Lightning's that do not apply to them (models.base.EXPECTED_LIGHTNING_NOTICES)
    # main(argv) hands LightningCLI its arguments on purpose (Lightning warns whenever sys.argv holds others too);
    # a checkpoint from another run folder restores its best path only, which test and predict need
    for message in ("will override existing callbacks", "does not have many workers",
                    r"isinstance\(treespec, LeafSpec\)", "LightningCLI's args parameter is intended",
                    "The dirpath has changed from"):
        warnings.filterwarnings("ignore", message=f".*{message}.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _QuietLightning) for f in target.filters):
            target.addFilter(_QuietLightning())


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; user mistakes end with a one-paragraph message and exit code 2, not a traceback.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
    """
    explicit = argv is not None
    args = list(sys.argv[1:] if argv is None else argv)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("OTX_ANOMALY_LOG", "INFO"))
    quiet_console()
    command = args[0] if args else ""
    try:
        if command in COMMANDS:
            importlib.import_module(COMMANDS[command]).run(args[1:])
        else:
            from otx_anomaly.cli.lightning import OTXAnomalyCLI

            OTXAnomalyCLI(args=args if explicit else None)
    except OtxAnomalyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
