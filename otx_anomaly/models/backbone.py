"""Backbone weights: from a local file for offline machines, or downloaded through timm.

anomalib always downloads (timm ``pretrained=True``). Our adapters build the feature extractor
untrained and fill it here, so a missing network is an error that names the way out, never a
silent fall-back to random weights.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from anomalib.models.components import TimmFeatureExtractor

from otx_anomaly.errors import ConfigError, WeightsError

logger = logging.getLogger(__name__)


def check_backbone(backbone: str, layers: Sequence[str]) -> None:
    """Fail early, with the choices, on a backbone timm does not know or a layer it does not have."""
    if not timm.is_model(backbone):
        similar = difflib.get_close_matches(backbone, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Similar names: {', '.join(similar)}." if similar else ""
        raise ConfigError(f"Unknown backbone {backbone!r}: it is not a timm model name.{hint}")
    if not layers:
        raise ConfigError("`layers` is empty: give at least one backbone layer, e.g. [layer1, layer2, layer3].")
    with torch.random.fork_rng(devices=[]):  # leave the seeded RNG as anomalib would find it
        probe = timm.create_model(backbone, pretrained=False, features_only=True)
    available = [info["module"] for info in probe.feature_info.info]
    unknown = [layer for layer in layers if layer not in available]
    if unknown:
        raise ConfigError(
            f"Backbone {backbone!r} has no layer {', '.join(map(repr, unknown))}; "
            f"its feature layers are {', '.join(available)}."
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, or a torch file with ``weights_only=True`` (no code runs from it)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"Backbone weights file {str(path)!r} does not exist. Fix `backbone_weights`.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any reader failure means the same to the user
        raise WeightsError(
            f"Cannot read backbone weights from {str(path)!r} ({type(error).__name__}: {error}). "
            "Give a safetensors file or a torch state dict saved with torch.save(model.state_dict())."
        ) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{str(path)!r} holds no state dict of tensors; cannot use it as backbone weights.")
    return state


def load_backbone_weights(extractor: TimmFeatureExtractor, path: str | Path) -> None:
    """Load a timm/torchvision-named state dict into ``extractor``; every weight it uses must be there."""
    state = read_state_dict(path)
    result = extractor.feature_extractor.load_state_dict(state, strict=False)
    if result.missing_keys:
        shown = ", ".join(result.missing_keys[:4])
        raise WeightsError(
            f"{str(path)!r} lacks {len(result.missing_keys)} weights that backbone {extractor.backbone!r} "
            f"with layers {list(extractor.layers)} needs (e.g. {shown}). Is it the right backbone?"
        )
    logger.info("Loaded backbone weights for %s from %s", extractor.backbone, path)


def _hub_unreachable() -> str | None:
    """Why the weights hub surely cannot be reached (offline mode, unknown host), else ``None``.

    Saves the hub client's half minute of retries on a machine without network.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy may resolve what this machine cannot
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError as error:
        return f"cannot resolve {host}: {error}"
    return None


def download_backbone_weights(extractor: TimmFeatureExtractor) -> None:
    """Fetch timm's ImageNet weights for ``extractor``'s backbone, or explain how to work offline."""
    try:
        reason = _hub_unreachable()
        if reason:
            raise ConnectionError(reason)
        source = timm.create_model(extractor.backbone, pretrained=True)
    except Exception as error:  # noqa: BLE001 - network, hub and cache errors all mean "not available"
        raise WeightsError(
            f"Could not download ImageNet weights for backbone {extractor.backbone!r} "
            f"({type(error).__name__}: {str(error)[:200]}). Offline, give a local file with "
            "`backbone_weights: /path/to/weights.safetensors` (safetensors or a torch state dict), "
            "or set `pre_trained: false` to start from random weights (much less accurate)."
        ) from error
    extractor.feature_extractor.load_state_dict(source.state_dict(), strict=False)


def init_backbone(
    extractor: TimmFeatureExtractor,
    pre_trained: bool,
    backbone_weights: str | Path | None,
) -> bool:
    """Give ``extractor`` its starting weights: a local file wins over a download.

    Args:
        extractor: the feature extractor to fill.
        pre_trained: download timm's ImageNet weights when no file is given.
        backbone_weights: a local state-dict file.

    Returns:
        Whether the backbone keeps its random weights (the model warns when a fit starts from them:
        a model loaded from a checkpoint gets its weights from there, not from here).
    """
    if backbone_weights:
        load_backbone_weights(extractor, backbone_weights)
    elif pre_trained:
        download_backbone_weights(extractor)
    return not backbone_weights and not pre_trained


def warn_random_backbone(backbone: str) -> None:
    """Say that a fit starts from random backbone weights (``pre_trained: false``, no file)."""
    logger.warning(
        "Backbone %s starts from random weights (pre_trained: false); results will be far below "
        "those of ImageNet weights.",
        backbone,
    )


def feature_shapes(extractor: TimmFeatureExtractor, image_size: Sequence[int]) -> dict[str, torch.Size]:
    """The shape of each layer's features for one image of ``image_size`` (height, width); the
    extractor's mode and batch-norm statistics are left as they were.

    Args:
        extractor: a feature extractor returning features by layer name.
        image_size: the input (height, width).
    """
    training = extractor.training
    try:
        with torch.no_grad():
            device = next(extractor.parameters()).device
            features = extractor.eval()(torch.zeros(1, 3, *image_size, device=device))
        return {layer: value.shape for layer, value in features.items()}
    finally:
        extractor.train(training)
