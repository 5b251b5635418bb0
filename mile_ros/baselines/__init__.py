"""MILE and the baselines it is compared with, all behind one interface.

    config = method_config(method, task=None, iterative=True, **overrides)
    config = resolve_config(method, options="", task=None, iterative=True, base=None, settings=None)
    checkpoint = train(method, dataset, init, config=None, demos=None, prior=None,
                       selection=None, should_stop=None)

One module per method, readable top to bottom: ``mile``, ``bc_intervention``, ``hg_dagger``, ``iwr``,
``sirius``, ``rlif``, and ``mile_temporal`` (MILE with the temporal intervention model). Each
registers one config dataclass (``CONFIG``) whose defaults are the project's chosen settings;
per-task values live in the task presets (``sim/<task>.yaml``, section ``training``), so
:func:`method_config` is the only way a setting gets chosen (:func:`resolve_config` is it for a
method named with an options text: the benchmark's cells, the trainer node, ``mile-ros train``).
Each module also declares how the benchmark treats it: ``GETS_DEMOS`` (demonstrations in the
demonstration ablation), ``TAKES_PRIOR`` and ``EPOCH_SELECTION`` (rollout selection applies).
:func:`train` is the one function that trains any method: the benchmark, ``mile-ros replay``,
``mile-ros train`` and the trainer node all call it.

``init`` is the common initial policy: every method fine-tunes a clone of it. ``demos`` adds expert
demonstrations as intervened steps (the offline-demonstration ablation); ``prior`` is what the
initial policy was cloned from (D0), aggregated with the record by every method that
``TAKES_PRIOR`` (all but RLIF, an RL learner: it ignores one). ``selection`` chooses the weights by
rollouts (simulation benchmarks only); ``should_stop`` is checked between minibatches. The returned
checkpoint's policy is what gets evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from types import ModuleType
from typing import Any

from mile_ros.learning import InterventionDataset, MileCheckpoint, RolloutSelection

from . import bc_intervention, hg_dagger, iwr, mile, mile_temporal, rlif, sirius
from .bc_intervention import BCInterventionConfig
from .common import BaselineConfig, merge_demos
from .hg_dagger import HGDaggerConfig
from .iwr import IWRConfig
from .rlif import RLIFConfig
from .sirius import SiriusConfig

__all__ = [
    "METHODS",
    "VARIANTS",
    "BCInterventionConfig",
    "BaselineConfig",
    "HGDaggerConfig",
    "IWRConfig",
    "RLIFConfig",
    "SiriusConfig",
    "check_selection",
    "config_type",
    "gets_demos",
    "merge_demos",
    "method_config",
    "parse_options",
    "resolve_config",
    "setting_names",
    "task_training",
    "train",
]

_MODULES: dict[str, ModuleType] = {
    m.NAME: m for m in (mile, bc_intervention, hg_dagger, iwr, sirius, rlif, mile_temporal)
}
METHODS: tuple[str, ...] = tuple(_MODULES)
# Named alternatives to a method's defaults: a classmethod of its config, plus the task presets'
# values under ``training.<variant>``. "paper": the authors' settings (MileConfig.paper).
VARIANTS: dict[str, tuple[str, ...]] = {"mile": ("paper",)}
# Sections of a preset's ``training`` mapping that are not method names.
_SECTIONS = ("single", "paper")


def _module(method: str) -> ModuleType:
    if method not in _MODULES:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return _MODULES[method]


def config_type(method: str) -> type:
    """The config dataclass ``method`` registers."""
    return _module(method).CONFIG


def gets_demos(method: str) -> bool:
    """Whether the demonstration ablation gives ``method`` expert demonstrations (its ``GETS_DEMOS``)."""
    return bool(_module(method).GETS_DEMOS)


def check_selection(method: str) -> None:
    """Refuse rollout selection for a method whose training has no epochs to pick among."""
    if not _module(method).EPOCH_SELECTION:
        raise ValueError(
            f"rollout selection picks among epochs; {method.upper()} trains by updates: train it without selection"
        )


def setting_names(method: str) -> set[str]:
    """The names of ``method``'s settings (its config's fields)."""
    return {f.name for f in fields(config_type(method))}


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(text: str) -> dict[str, Any]:
    """``"paper,lr=1e-4,learn_cost=false"`` -> ``{"variant": "paper", "lr": 0.0001, "learn_cost": False}``.

    Settings are ``key=value`` (numbers and true/false converted); one bare word names a variant
    (:data:`VARIANTS`; which method has it is checked by :func:`method_config`).
    """
    known = sorted({v for names in VARIANTS.values() for v in names})
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            if "variant" in options or key not in known:
                raise ValueError(f"option {item!r} in {text!r} is not key=value (or one variant: {', '.join(known)})")
            options["variant"] = key
            continue
        options[key.strip()] = _value(value.strip())
    return options


def task_training(task: str) -> dict[str, Any]:
    """The ``training`` section of ``task``'s preset (its own file over ``default.yaml``)."""
    try:
        from mile_ros.sim.presets import load_preset
    except ImportError as exc:  # the simulation extra is not installed (a robot's trainer machine)
        raise ValueError(f"per-task settings for {task!r} need the simulation presets: {exc}") from exc
    training = load_preset(task).get("training") or {}
    if not isinstance(training, dict):
        raise ValueError(f"the preset of {task!r}: training must be a mapping")
    unknown = sorted(set(training) - set(METHODS) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"the preset of {task!r} has training settings for unknown method(s) {unknown}")
    return training


def _checked(config: Any, values: dict[str, Any], where: str) -> Any:
    """``config`` with ``values``; unknown names raise (a typo must not pass silently); YAML lists
    become tuples where the field holds a tuple."""
    current = {f.name: getattr(config, f.name) for f in fields(config)}
    unknown = sorted(set(values) - set(current))
    if unknown:
        raise ValueError(f"unknown setting(s) for {type(config).__name__} ({where}): {unknown}")
    values = {k: tuple(v) if isinstance(current[k], tuple) and isinstance(v, list) else v for k, v in values.items()}
    return replace(config, **values)


def method_config(
    method: str, task: str | None = None, iterative: bool = True, variant: str | None = None, **overrides: Any
) -> Any:
    """The settings ``method`` trains with: its config's defaults, then ``task``'s preset values
    (``training.<method>``; ``training.single.<method>`` on top for a single round, ``iterative``
    false), then ``overrides``. ``variant`` names an alternative such as ``"paper"`` (:data:`VARIANTS`).
    Without a task, no preset: the defaults are the project's choice for any Metaworld task."""
    cls = config_type(method)
    if variant is not None and variant not in VARIANTS.get(method, ()):
        choices = ", ".join(VARIANTS.get(method, ())) or "none"
        raise ValueError(f"{method} has no variant {variant!r} (variants: {choices})")
    config = getattr(cls, variant)() if variant else cls()
    if task is not None:
        training = task_training(task)
        layers = [("", training.get(method))]
        if not iterative:
            layers.append(("single.", (training.get("single") or {}).get(method)))
        if variant:
            layers.append((f"{variant}.", (training.get(variant) or {}).get(method)))
        for prefix, values in layers:
            if values:
                config = _checked(config, dict(values), f"training.{prefix}{method} of {task}'s preset")
    return _checked(config, overrides, "overrides")


def resolve_config(
    method: str,
    options: str | Mapping[str, Any] = "",
    task: str | None = None,
    iterative: bool = True,
    base: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """:func:`method_config` for a method as its callers name it: ``options`` (``"paper,lr=1e-4"``,
    or :func:`parse_options`' result) may name a variant; the overrides are, from the lowest, ``base``
    (an experiment preset's values for the method), the options' settings, then ``settings`` (a
    caller's own typed settings and the run's seed), which are refused by name where the method has
    no such setting."""
    names = setting_names(method)
    options = dict(parse_options(options) if isinstance(options, str) else options)
    variant = options.pop("variant", None)
    settings = dict(settings or {})
    if not settings.keys() <= names:
        extra = sorted(settings.keys() - names)
        raise ValueError(f"{', '.join(extra)}: not a setting of {method}; leave it unset for this method")
    return method_config(method, task, iterative, variant, **{**(base or {}), **options, **settings})


def train(
    method: str,
    dataset: InterventionDataset,
    init: MileCheckpoint,
    config: Any = None,
    demos: InterventionDataset | None = None,
    prior: InterventionDataset | None = None,
    selection: RolloutSelection | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MileCheckpoint:
    """Train ``method`` on ``dataset`` (and ``prior``) from a clone of ``init``; its policy gets evaluated.

    ``config`` defaults to ``method_config(method)``.
    """
    module = _module(method)
    mismatch = init.spec.describe_mismatch(dataset.spec)
    if mismatch:
        raise ValueError(f"the initial policy does not fit the data: {mismatch}")
    config = config if config is not None else module.CONFIG()
    if not isinstance(config, module.CONFIG):
        raise TypeError(f"{method} takes a {module.CONFIG.__name__}, got {type(config).__name__}")
    if prior is not None:
        mismatch = dataset.spec.describe_mismatch(prior.spec)
        if mismatch:
            raise ValueError(f"the prior does not fit the data: {mismatch}")
    if not module.TAKES_PRIOR or not getattr(config, "lambda_prior", 0):
        prior = None
    if selection is not None:
        check_selection(method)
    checkpoint = module.train(dataset, init, config, demos, prior, selection=selection, should_stop=should_stop)
    checkpoint.meta["prior_rows"] = 0 if prior is None else len(prior)
    checkpoint.meta.setdefault("method", method)
    return checkpoint
