"""``otx-anomaly`` / ``python -m otx_anomaly``: Lightning's CLI over our models and data, plus a demo.

Subcommands ``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's: ``--config`` takes a
recipe and every model, data and trainer argument can be overridden on the command line.
``demo`` generates a small synthetic dataset and trains and tests on it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence

from otx_anomaly.errors import OtxAnomalyError

logger = logging.getLogger("otx_anomaly")


def _quiet_imports() -> None:
    """anomalib's package import warns about its own deprecated modules; users cannot act on that."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(timm|anomalib)\..*")
    warnings.filterwarnings("ignore", message=r".*anomalib\.models\.components\.dinov2.*")


def _cli_class() -> type:
    from anomalib.data.datamodules.base.image import AnomalibDataModule
    from anomalib.models.components import AnomalibModule
    from lightning.pytorch.cli import LightningCLI

    from otx_anomaly.summary import print_fit_summary, print_predictions

    class OTXAnomalyCLI(LightningCLI):
        """LightningCLI with any anomalib model (ours first) and data module as subclasses."""

        def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
            super().__init__(
                model_class=AnomalibModule,
                datamodule_class=AnomalibDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                auto_configure_optimizers=False,  # STFPM's SGD is set by model.lr/momentum/weight_decay
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"parser_mode": "omegaconf"},
                args=args,
                run=run,
            )

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except ValueError as error:
                self._raise_user_error()
                raise error

        def _raise_user_error(self) -> None:
            """Surface the OtxAnomalyError that jsonargparse folded into a union-type message.

            For optional class arguments jsonargparse tries ``None`` first and chains only that
            attempt's exception; building the model and data again from the parsed config
            raises our own error with its message intact.
            """
            from jsonargparse import Namespace
            from jsonargparse._util import import_object

            config = self.config.get(self.subcommand) if self.subcommand else self.config
            for key in ("model", "data"):
                spec = config.get(key) if config is not None else None
                if not isinstance(spec, Namespace) or "class_path" not in spec:
                    continue
                init_args = spec.get("init_args") or Namespace()
                if any(isinstance(v, Namespace) for v in vars(init_args).values()):
                    continue  # nested classes: leave the original message
                try:
                    import_object(spec.class_path)(**vars(init_args))
                except OtxAnomalyError:
                    raise
                except Exception:  # noqa: BLE001,S112 - only our own errors are re-raised here
                    continue

        def after_fit(self) -> None:
            print_fit_summary(self.trainer)

        def predict(self, model, datamodule=None, ckpt_path=None, **kwargs) -> None:  # noqa: ANN001
            predictions = self.trainer.predict(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)
            print_predictions([p for batch in predictions or [] for p in batch])

    return OTXAnomalyCLI


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user mistakes end with a one-paragraph message and exit code 2, not a traceback."""
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_imports()
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("OTX_ANOMALY_LOG", "INFO"))
    try:
        if argv and argv[0] == "demo":
            from otx_anomaly.demo import run_demo

            run_demo(argv[1:])
        else:
            _cli_class()(args=argv if explicit else None)
    except OtxAnomalyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
