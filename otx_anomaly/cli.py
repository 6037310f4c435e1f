"""``otx-anomaly`` / ``python -m otx_anomaly``: Lightning's CLI over our models and data, plus a demo.

Subcommands ``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's: ``--config`` takes a
recipe and every model, data and trainer argument can be overridden on the command line.
``export`` writes a checkpoint as OpenVINO IR or ONNX; ``optimize`` quantizes an exported model to
INT8 with NNCF; ``demo`` generates a small synthetic dataset and trains, tests and predicts on it.
``predict`` writes its results to ``--output_dir``
(:class:`~otx_anomaly.callbacks.AnomalyPredictionWriter`); ``infer`` does the same with an exported
model and without torch (:mod:`otx_anomaly.cli_infer`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# anomalib's package import warns about its own deprecated modules; users cannot act on that.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(timm|anomalib)(\..*)?")

from anomalib.data.datamodules.base.image import AnomalibDataModule  # noqa: E402
from anomalib.models.components import AnomalibModule  # noqa: E402
from jsonargparse import Namespace  # noqa: E402
from jsonargparse._util import import_object  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402

from otx_anomaly.errors import OtxAnomalyError  # noqa: E402
from otx_anomaly.summary import print_fit_summary  # noqa: E402

logger = logging.getLogger("otx_anomaly")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so redirections made later still apply."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class OTXAnomalyCLI(LightningCLI):
    """LightningCLI whose model and data are any anomalib model and data module (ours in the recipes)."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=AnomalibModule,
            datamodule_class=AnomalibDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,  # STFPM's SGD is set by model.lr, momentum, weight_decay
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError:
            self._raise_user_error()
            raise

    def _raise_user_error(self) -> None:
        """Surface the OtxAnomalyError that jsonargparse folded into a union-type message.

        For optional class arguments jsonargparse tries ``None`` first and chains only that
        attempt's exception; building the model, data and callbacks again from the parsed config
        raises our own error with its message intact. Runs only when instantiation already failed.
        """
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config is None:
            return
        trainer = config.get("trainer")
        callbacks = (trainer.get("callbacks") if trainer is not None else None) or []
        for spec in [config.get("model"), config.get("data"), *callbacks]:
            if not isinstance(spec, Namespace) or "class_path" not in spec:
                continue
            init_args = spec.get("init_args") or Namespace()
            if any(isinstance(v, Namespace) for v in vars(init_args).values()):
                continue  # nested classes: keep jsonargparse's message
            try:
                import_object(spec.class_path)(**vars(init_args))
            except OtxAnomalyError:
                raise
            except Exception:  # noqa: BLE001, S112 - only our own errors are re-raised here
                continue

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path``, the network's settings come from the checkpoint (as in Lightning) and
        the head's (``task``, ``min_box_area``) from the recipe and command line. The checkpoint is
        read safely first: a missing, damaged, unsafe or foreign one is a clear error."""
        from otx_anomaly.checkpoints import CheckpointError, read_checkpoint

        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or str(ckpt_path) in ("best", "last", "hpc", "registry"):
            return
        checkpoint = read_checkpoint(ckpt_path)
        model = self.config[subcommand].get("model")
        class_path = model.get("class_path") if model is not None else None
        saved = checkpoint.get("otx_anomaly_model")
        if saved and class_path and import_object(saved) is not import_object(class_path):
            raise CheckpointError(f"{str(ckpt_path)!r} holds a {saved.rsplit('.', 1)[-1]} model, not "
                                  f"{class_path.rsplit('.', 1)[-1]}: use the recipe of the model that wrote it.")
        head = ("task", "min_box_area", "_instantiator", "_class_path")
        hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if k not in head}
        if hparams and class_path:
            update = {subcommand: {"model": {"class_path": class_path, "init_args": hparams}}}
            self.config = self.parser.parse_object(update, self.config)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        """``predict`` takes the options of its output files (the same as ``infer``'s)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument("--output_dir", type=str | None, default=None,
                                help="Results folder: predictions.jsonl/.csv, masks, overlays, report.html "
                                     "(default: <trainer.default_root_dir>/predictions).")
            parser.add_argument("--overlays", type=bool, default=True, help="Write full-size overlay images.")
            parser.add_argument("--report_max_images", type=int | None, default=500,
                                help="At most this many images (highest scores) in report.html; null: all.")
        return parser

    def after_fit(self) -> None:
        print_fit_summary(self.trainer)

    def predict(self, model: Any, datamodule: Any = None, ckpt_path: str | None = None, **kwargs: Any) -> None:
        """Lightning's predict, with the results written by an AnomalyPredictionWriter (the recipe's or
        one made from ``--output_dir``, ``--overlays``, ``--report_max_images``)."""
        from otx_anomaly.callbacks import AnomalyPredictionWriter

        options = self.config_init["predict"]
        output_dir = None if options.get("output_dir") is None else Path(options["output_dir"])
        configured = [c for c in self.trainer.callbacks if isinstance(c, AnomalyPredictionWriter)]
        if configured:  # from the recipe or --trainer.callbacks; an explicit --output_dir still applies
            configured[0].output_dir = output_dir or configured[0].output_dir
        else:
            self.trainer.callbacks.append(AnomalyPredictionWriter(
                output_dir, overlays=options.get("overlays", True),
                report_max_images=options.get("report_max_images", 500)))
        if kwargs.get("return_predictions") is None:
            kwargs["return_predictions"] = False  # the writer streams them; full-size maps would fill memory
        self.trainer.predict(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user mistakes end with a one-paragraph message and exit code 2, not a traceback."""
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("OTX_ANOMALY_LOG", "INFO"))
    try:
        if argv and argv[0] == "demo":
            from otx_anomaly.demo import run_demo

            run_demo(argv[1:])
        elif argv and argv[0] == "infer":
            from otx_anomaly.cli_infer import run_infer

            run_infer(argv[1:])
        elif argv and argv[0] == "export":
            from otx_anomaly.cli_export import run_export

            run_export(argv[1:])
        elif argv and argv[0] == "optimize":
            from otx_anomaly.cli_optimize import run_optimize

            run_optimize(argv[1:])
        else:
            OTXAnomalyCLI(args=argv if explicit else None)
    except OtxAnomalyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
