"""One-file model storage: weights, class, constructor hyper-parameters, format version.

The file is ``torch.save`` of a plain dict (tensors and JSON-like values only, so loading uses
``weights_only=True`` and runs no pickled code), written atomically: to a temporary file in the
same directory, then ``os.replace``, so an interrupted save never leaves a corrupt model.
"""

from __future__ import annotations

import io
import os
from typing import Dict, Type

import torch

from delan.errors import RunError
from delan.fileio import atomic_write_bytes
from delan.models.black_box import BlackBoxLagrangianNetwork
from delan.models.feedforward import FeedForwardModel
from delan.models.hamiltonian import BlackBoxHamiltonianNetwork, DeepHamiltonianNetwork
from delan.models.structured import DeepLagrangianNetwork

FORMAT = "delan-model"
VERSION = 1
MODEL_CLASSES: Dict[str, Type[torch.nn.Module]] = {
    cls.__name__: cls
    for cls in (
        DeepLagrangianNetwork,
        BlackBoxLagrangianNetwork,
        FeedForwardModel,
        DeepHamiltonianNetwork,
        BlackBoxHamiltonianNetwork,
    )
}


def save_model(model: torch.nn.Module, path: str) -> None:
    """Write ``model`` (one of :data:`MODEL_CLASSES`) to ``path`` atomically."""
    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise ValueError(f"cannot save a {name}; savable models: {', '.join(MODEL_CLASSES)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "class": name, "config": model.config, "state_dict": state}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_model(path: str, device=None) -> torch.nn.Module:
    """Rebuild the model saved at ``path`` (on ``device``, default CPU), in eval mode.

    Raises:
        RunError: missing or unreadable file, not a DeLaN model file, unknown format version or
            model class, or weights that do not fit the stored configuration.
    """
    if not os.path.isfile(path):
        raise RunError(f"{path}: model file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise RunError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunError(f"{path}: not a DeLaN model file (no format {FORMAT!r})")
    version = payload.get("version")
    if version != VERSION:
        raise RunError(
            f"{path}: model format version {version!r} is not supported (this library reads "
            f"version {VERSION}); update or downgrade delan"
        )
    name = payload.get("class")
    if name not in MODEL_CLASSES:
        raise RunError(f"{path}: unknown model class {name!r}; known: {', '.join(MODEL_CLASSES)}")
    try:
        model = MODEL_CLASSES[name](**payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise RunError(f"{path}: stored {name} does not match its configuration ({exc})") from None
    if device is not None:
        model = model.to(device)
    return model.eval()
