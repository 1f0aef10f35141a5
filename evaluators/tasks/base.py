"""What a task is: a seeded builder of a model, its data and its recipe, at a size preset.

A `Task` turns `(seed, preset, device)` into a `Problem`: an initialised model, a pure function
from step to training batch, fixed validation batches, a loss, the recipe and a target loss. The
trainer (`evaluators.train`) only talks to `Problem`, so a new task family is one file that
subclasses `Task` and lists its presets.

Conventions every model follows so the lr-grid ensemble (`evaluators.ensemble`) can stack it:

- it is built only from the member-aware layers of `evaluators.tasks.layers`, which accept
  parameters with or without a leading ensemble axis;
- `model(inputs)` returns outputs; with stacked parameters the trainer passes `inputs` expanded
  to a leading member axis and gets outputs with that axis;
- `Problem.loss(outputs, targets)` takes outputs *with* a leading member axis ([E, ...]; the
  sequential trainer passes E = 1) and returns the per-member mean loss, shape [E].

A preset's config is a frozen dataclass; `Task.build(..., overrides={"batch_size": 8})` builds
the task with some of its fields changed (`Task.settings` lists them), which is how a regime map
varies batch size, conditioning or gradient noise without a new task.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from evaluators.recipe import Recipe

PRESETS = ("tiny", "cpu", "gpu")
Batch = tuple[torch.Tensor, torch.Tensor | None]


@dataclass
class Problem:
    """One task instance, ready to train: everything is on `device` and fixed by the seed."""

    model: torch.nn.Module
    train_batch: Callable[[int], Batch]  # step -> (inputs, targets); pure in (seed, step)
    val_batches: list[Batch]
    loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]  # ([E, ...], y) -> [E]
    recipe: Recipe
    target_loss: float  # validation loss that counts as "reached" for steps-to-target
    kind: str  # "classification" (outputs are logits, last axis) or "regression"


class Task(ABC):
    """A task family member with its size presets; `build` is the only entry point."""

    name: str
    description: str
    presets: Mapping[str, Any]  # preset name -> the family's frozen config dataclass
    stackable: bool = True  # built only from member-aware layers (the lr-grid ensemble works)

    def config(self, preset: str):
        """The config of a preset, or a ValueError naming the choices."""
        if preset not in self.presets:
            raise ValueError(f"task {self.name!r} has no preset {preset!r}; "
                             f"choose from {sorted(self.presets)}")
        return self.presets[preset]

    def settings(self, preset: str) -> dict[str, Any]:
        """The fields of a preset's config that `build`'s ``overrides`` may change, with their
        values at ``preset`` (the training recipe is changed through the trainer's ``steps``)."""
        cfg = self.config(preset)
        return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "recipe"}

    def config_with(self, preset: str, overrides: Mapping[str, Any] | None = None):
        """The preset's config with ``overrides`` (field -> value) in place; an unknown field or
        a value of the wrong type is a ValueError that names it."""
        cfg = self.config(preset)
        if not overrides:
            return cfg
        known = self.settings(preset)
        changes = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"task {self.name!r} has no setting {key!r}; settings: "
                                 f"{', '.join(sorted(known))}")
            kind = type(known[key])
            if kind is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
                raise ValueError(f"task {self.name!r} setting {key!r}: expected "
                                 f"{kind.__name__}, got {value!r}")
            changes[key] = value
        return dataclasses.replace(cfg, **changes)

    def build(self, seed: int, preset: str = "cpu", device: str | torch.device = "cpu",
              overrides: Mapping[str, Any] | None = None) -> Problem:
        """Build the model (initialised on CPU from `seed`, then moved) and the data, from the
        preset's config with ``overrides`` in place (`config_with`)."""
        cfg = self.config_with(preset, overrides)
        init = torch.Generator().manual_seed(seed)
        problem = self._build(cfg, seed, init, torch.device(device))
        problem.model.to(device)
        return problem

    @abstractmethod
    def _build(self, cfg, seed: int, init: torch.Generator, device: torch.device) -> Problem:
        """Family-specific construction; `init` seeds the model's parameters."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-member mean cross-entropy: logits [E, ..., C], targets [...] (shared) -> [E]."""
    members, classes = logits.shape[0], logits.shape[-1]
    flat = targets.reshape(1, -1).expand(members, -1).reshape(-1)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, classes), flat, reduction="none")
    return ce.reshape(members, -1).mean(1)


def mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-member MSE summed over the last axis, averaged over samples: [E, ..., D] -> [E]."""
    return (outputs - targets).pow(2).sum(-1).reshape(outputs.shape[0], -1).mean(1)
