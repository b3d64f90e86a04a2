"""A dense projection after pooling (sentence-transformers' ``Dense`` module, same files on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gpte.errors import ModelLoadError

ACTIVATION_PREFIXES = ("torch.nn.modules.activation.", "torch.nn.modules.linear.", "torch.nn.")


class Dense(nn.Module):
    """y = activation(W x + b).

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        activation: a ``torch.nn`` module class path as sentence-transformers writes it, e.g.
            ``"torch.nn.modules.activation.Tanh"`` or ``"torch.nn.modules.linear.Identity"``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "torch.nn.modules.activation.Tanh",
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation_name = activation
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    def config(self) -> dict:
        return {
            "in_features": self.linear.in_features,
            "out_features": self.linear.out_features,
            "bias": self.linear.bias is not None,
            "activation_function": self.activation_name,
        }

    @classmethod
    def load(cls, folder: Path) -> Dense:
        """Read ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) from ``folder``."""
        try:
            config = json.loads((folder / "config.json").read_text())
            dense = cls(
                config["in_features"],
                config["out_features"],
                config.get("bias", True),
                config.get("activation_function", "torch.nn.modules.activation.Tanh"),
            )
            weights_path = folder / "model.safetensors"
            if weights_path.exists():
                state = load_file(weights_path)
            else:
                state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
            dense.load_state_dict(state)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelLoadError(f"could not load the Dense module in {folder}: {error}") from error
        return dense

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")


def _activation(path: str) -> nn.Module:
    name = next((path[len(p) :] for p in ACTIVATION_PREFIXES if path.startswith(p)), None)
    module_class = getattr(nn, name, None) if name else None
    if not (isinstance(module_class, type) and issubclass(module_class, nn.Module)):
        raise ValueError(
            f"unsupported activation {path!r}; use a torch.nn module such as torch.nn.modules.activation.Tanh"
        )
    return module_class()
