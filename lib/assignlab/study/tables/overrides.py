"""The override language of a table row: values that are not plain config values.

A row's overrides are dotted config fields (``"model.num_queries"``) mapped to a value, or to:

- :class:`OnlyAt`: a value that one profile sets; the other profiles keep the base's own;
- :class:`PerProfile`: a value that depends on the profile;
- a derived value (``DERIVED_VALUES``), computed from the row's base config: :class:`Multiple`
  (``factor`` times another field) or :class:`ScaledSchedule` (the base's schedule scaled).

:func:`resolve_overrides` applies them to a base config in a fixed order: first the
:class:`OnlyAt` values of the profile, then every other value (a :class:`PerProfile` chosen for the
profile, a derived value resolved against the base as the first step left it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from assignlab.config import Config


@dataclass(frozen=True)
class Multiple:
    """An override value that is ``factor`` times another field of the row's base config, so that
    a ratio (not a count) is the same at every profile."""

    field: str
    factor: int

    def resolve(self, config: Config) -> int:
        value: Any = config
        for key in self.field.split("."):
            if not hasattr(value, key):
                raise KeyError(f"Multiple: unknown config field {self.field!r}")
            value = getattr(value, key)
        return int(self.factor * value)


def scaled_epochs(epochs: int, factor: float) -> int:
    """``epochs`` scaled by ``factor``, rounded (half to even), at least 1."""
    return max(1, round(factor * epochs))


@dataclass(frozen=True)
class ScaledSchedule:
    """An override value for ``train.epochs`` (``part="epochs"``) or ``train.lr_drop_epochs``
    (``part="lr_drop_epochs"``): the row's base schedule ``factor`` times as long. Each lr drop
    moves the same way (:func:`scaled_epochs`) but stays before the last epoch, so that a short
    schedule still ends at the lowered rate as its base does (4 epochs with the drop at 3 become 2
    with the drop at 1). ``factor`` 1 gives the base schedule unchanged. Use :func:`scaled_schedule`."""

    factor: float
    part: str = "epochs"

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(f"ScaledSchedule: factor must be > 0, got {self.factor}")
        if self.part not in ("epochs", "lr_drop_epochs"):
            raise ValueError(f"ScaledSchedule: part must be 'epochs' or 'lr_drop_epochs', got {self.part!r}")

    def resolve(self, config: Config) -> int | tuple[int, ...]:
        if self.factor == 1:  # the base schedule exactly, so that 1x rows share the base's runs
            return config.train.epochs if self.part == "epochs" else tuple(config.train.lr_drop_epochs)
        epochs = scaled_epochs(config.train.epochs, self.factor)
        if self.part == "epochs":
            return epochs
        drops = {min(scaled_epochs(drop, self.factor), epochs - 1) for drop in config.train.lr_drop_epochs
                 if drop < config.train.epochs}
        return tuple(sorted(drop for drop in drops if drop >= 1))


def scaled_schedule(factor: float) -> dict[str, ScaledSchedule]:
    """Overrides training ``factor`` times the base's schedule (epochs and lr drops)."""
    return {"train.epochs": ScaledSchedule(factor, "epochs"),
            "train.lr_drop_epochs": ScaledSchedule(factor, "lr_drop_epochs")}


DERIVED_VALUES = (Multiple, ScaledSchedule)  # override values resolved against the row's base config


@dataclass(frozen=True)
class OnlyAt:
    """An override that only ``profile`` sets; at the other profiles the base keeps its own value.
    For settings of the papers' scale that the laptop profiles size differently (their configs,
    and so their cached runs, stay as they are). Applied before the other overrides are resolved,
    so a :class:`Multiple` sees it."""

    profile: str
    value: Any


def only_at(profile: str, overrides: Mapping[str, Any]) -> dict[str, OnlyAt]:
    """``overrides`` set at ``profile`` only (see :class:`OnlyAt`)."""
    return {key: OnlyAt(profile, value) for key, value in overrides.items()}


@dataclass(frozen=True)
class PerProfile:
    """An override whose value depends on the profile: the value ``at`` names for it, else
    ``default``; either may be a derived value (:class:`Multiple`), resolved after the choice."""

    default: Any
    at: tuple[tuple[str, Any], ...] = ()

    def choose(self, profile: str) -> Any:
        return dict(self.at).get(profile, self.default)


def resolve_override(value: Any, base: Config) -> Any:
    """The value an override sets: a derived value (``DERIVED_VALUES``) resolved against ``base``."""
    return value.resolve(base) if isinstance(value, DERIVED_VALUES) else value


def resolve_overrides(base: Config, overrides: Mapping[str, Any], profile: str) -> Config:
    """``base`` with a row's ``overrides`` applied at ``profile``, in the order of the module
    docstring: the profile's :class:`OnlyAt` values, then the others resolved against that config."""
    base = base.override({key: value.value for key, value in overrides.items()
                          if isinstance(value, OnlyAt) and value.profile == profile})
    resolved = {key: resolve_override(value.choose(profile) if isinstance(value, PerProfile) else value, base)
                for key, value in overrides.items() if not isinstance(value, OnlyAt)}
    return base.override(resolved)
