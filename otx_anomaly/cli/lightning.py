"""``fit``, ``validate``, ``test`` and ``predict``: Lightning's CLI over any anomalib model and data module.

``--config`` takes a recipe and every model, data and trainer argument can be overridden on the
command line. ``predict`` writes its results to ``--output_dir``
(:class:`~otx_anomaly.callbacks.AnomalyPredictionWriter`) with the options of
:class:`~otx_anomaly.results.records.OutputOptions`, as ``infer`` does for an exported model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.models.components import AnomalibModule
from jsonargparse import Namespace
from jsonargparse._util import import_object
from lightning.pytorch.cli import LightningCLI

from otx_anomaly.cli.summary import print_fit_summary
from otx_anomaly.errors import OtxAnomalyError
from otx_anomaly.results.records import OutputOptions
from otx_anomaly.thresholds import ThresholdChange


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
        from otx_anomaly.models.checkpoints import checkpoint_model_class, read_checkpoint

        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or str(ckpt_path) in ("best", "last", "hpc", "registry"):
            return
        checkpoint = read_checkpoint(ckpt_path)
        model = self.config[subcommand].get("model")
        class_path = model.get("class_path") if model is not None else None
        checkpoint_model_class(checkpoint, class_path, source=repr(str(ckpt_path)))
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
            parser.add_class_arguments(OutputOptions, nested_key=None)
            parser.add_class_arguments(ThresholdChange, nested_key=None)
        return parser

    def after_fit(self) -> None:
        print_fit_summary(self.trainer)

    def predict(self, model: Any, datamodule: Any = None, ckpt_path: str | None = None, **kwargs: Any) -> None:
        """Lightning's predict, with the results written by an AnomalyPredictionWriter (the recipe's or
        one made from ``--output_dir``, ``--overlays``, ``--report_max_images``)."""
        from otx_anomaly.callbacks import AnomalyPredictionWriter, ChangeThresholds

        options = self.config_init["predict"]
        output_dir = None if options.get("output_dir") is None else Path(options["output_dir"])
        configured = [c for c in self.trainer.callbacks if isinstance(c, AnomalyPredictionWriter)]
        if configured:  # from the recipe or --trainer.callbacks; an explicit --output_dir still applies
            configured[0].output_dir = output_dir or configured[0].output_dir
        else:
            self.trainer.callbacks.append(AnomalyPredictionWriter(output_dir, OutputOptions(
                overlays=options.get("overlays", True), report_max_images=options.get("report_max_images", 500))))
        change = ThresholdChange(options.get("image_threshold"), options.get("pixel_threshold"),
                                 options.get("target_false_positive_rate"))
        if change.requested:  # before the writer, which reports the thresholds
            self.trainer.callbacks.insert(0, ChangeThresholds(**vars(change)))
        if kwargs.get("return_predictions") is None:
            kwargs["return_predictions"] = False  # the writer streams them; full-size maps would fill memory
        self.trainer.predict(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)

