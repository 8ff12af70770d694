"""Optimizers: SGD with momentum and weight decay, and LeCun's stochastic diagonal
Levenberg-Marquardt (LeCun et al. 1998, Appendix C; "Efficient BackProp" 9.1).

Each parameter's step is lr · lr_scale · g, or for SDLM lr · lr_scale · g / (mu + h)
with h the diagonal Gauss-Newton estimate from the derived curvature pass,
re-estimated on a few hundred patterns before each epoch.  Updates are in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Optimizer:
    kind: str                   # 'sgd' or 'sdlm'
    momentum: float = 0.0
    weight_decay: float = 0.0
    mu: float = 0.02            # SDLM's safety term
    samples: int = 500          # SDLM: patterns for each curvature estimate
    lr_scale: dict = field(default_factory=dict)
    velocity: dict = field(default_factory=dict)
    curvature: dict = field(default_factory=dict)  # SDLM's h, per parameter

    @classmethod
    def from_config(cls, optimizer: tuple, lr_scale: dict) -> "Optimizer":
        kind, args = optimizer
        return cls(kind, lr_scale=lr_scale, **args)

    def step(self, params: dict, grads: dict, lr: float) -> None:
        for name, g in grads.items():
            w = params[name]
            rate = lr * self.lr_scale.get(name, 1.0)
            if self.weight_decay:
                g = g + self.weight_decay * w
            if self.kind == "sdlm":
                g = g / (self.mu + self.curvature[name])
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = np.zeros_like(w)
                v *= self.momentum
                v -= rate * g
                w += v
            else:
                w -= rate * g

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint, by 'velocity/NAME' and 'curvature/NAME'."""
        out = {f"velocity/{k}": v for k, v in self.velocity.items()}
        out.update({f"curvature/{k}": v for k, v in self.curvature.items()})
        return out

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for key, value in arrays.items():
            slot, name = key.split("/", 1)
            {"velocity": self.velocity, "curvature": self.curvature}[slot][name] = value.copy()


def estimate_curvature(model, params, images, targets, batch: int = 100) -> dict:
    """Average the derived Gauss-Newton diagonal over the given patterns."""
    total = {name: np.zeros_like(p) for name, p in params.items()}
    for start in range(0, len(images), batch):
        x, t = images[start:start + batch], targets[start:start + batch]
        for name, h in model.curvatures(params, x, t).items():
            total[name] += h * len(x)  # curvatures() averages over its batch
    return {name: h / len(images) for name, h in total.items()}
