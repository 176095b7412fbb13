"""Every model kind by name: configs, new estimators, saved bundles, and config fields for flags/sliders.

Kinds map to the module that implements them, imported only when needed (so this module is quick to
import and the autoencoder kinds may live in a module written later):
    gru, cnn-gru                  -> facelab.classifier  (GRUConfig, FaceClassifier)
    ae-dense, ae-conv, ae-metric  -> facelab.autoencoder (AEConfig, FaceAutoencoder)
Config dataclasses describe their fields with `dataclasses.field(metadata={"help", "min", "max",
"choices", "log"})`; `config_fields` flattens nested config dataclasses (e.g. a `train: TrainConfig`).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelab.errors import BadInputError, FaceLabError
from facelab.storage import is_number

MODEL_KINDS = ("gru", "cnn-gru", "ae-dense", "ae-conv", "ae-metric")
CLASSIFIER_KINDS = ("gru", "cnn-gru")
AUTOENCODER_KINDS = ("ae-dense", "ae-conv", "ae-metric")
# kind -> (module, config class, estimator class)
_IMPLEMENTATIONS = {
    **{k: ("facelab.classifier", "GRUConfig", "FaceClassifier") for k in CLASSIFIER_KINDS},
    **{k: ("facelab.autoencoder", "AEConfig", "FaceAutoencoder") for k in AUTOENCODER_KINDS},
}
KIND_LABELS = {
    "gru": "Seed GRU (rows as a sequence)",
    "cnn-gru": "CNN -> GRU hybrid",
    "ae-dense": "Dense autoencoder",
    "ae-conv": "Convolutional autoencoder",
    "ae-metric": "Conv autoencoder + CosFace identity head",
}


@dataclass(frozen=True)
class ConfigField:
    """One tunable field: `path` is its place in nested configs; min/max/choices bound the values."""

    name: str
    path: tuple[str, ...]
    type: type
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    log: bool = False  # a slider on a log scale (learning rates)

    def log_options(self, current: float) -> list[float]:
        """Values 1-2-5 per decade within [min, max], and `current`: a log-scale slider's stops."""
        steps = sorted({float(f"{m * 10.0**e:.1g}") for e in range(-8, 3) for m in (1, 2, 5)} | {float(current)})
        return [v for v in steps if self.min <= v <= self.max or v == current]

    def slider_step(self) -> float:
        """About a hundred steps over [min, max], rounded to a power of ten."""
        return 10.0 ** math.floor(math.log10(max(self.max - self.min, 1e-9) / 100))


def _check_kind(kind: str) -> tuple[str, str, str]:
    if kind not in _IMPLEMENTATIONS:
        raise BadInputError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    return _IMPLEMENTATIONS[kind]


def _module(kind: str):
    module_name, _, _ = _check_kind(kind)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise FaceLabError(f"model kind {kind!r} is not available in this FaceLab ({module_name} is missing)") from None
        raise


def is_autoencoder(model: Any) -> bool:
    """True for the autoencoder kinds (they identify through a gallery of codes)."""
    return str(getattr(model, "kind", "")).startswith("ae-")


def is_classifier(model: Any) -> bool:
    """True for models that name faces with a softmax (the GRU classifiers)."""
    return hasattr(model, "predict_proba")


def config_class(kind: str) -> type:
    """The config dataclass for a kind (imports its module)."""
    return getattr(_module(kind), _check_kind(kind)[1])


def estimator_class(kind: str) -> type:
    """The estimator class for a kind (imports its module)."""
    return getattr(_module(kind), _check_kind(kind)[2])


def config_fields(config_cls: type) -> list[ConfigField]:
    """The fields of a config dataclass, nested config dataclasses flattened, with their metadata.

    `kind` is left out (it is chosen, not tuned). Types come from the annotations (bool/int/float/str).
    """
    return _fields(config_cls, ())


def _fields(config_cls: type, prefix: tuple[str, ...]) -> list[ConfigField]:
    hints = typing.get_type_hints(config_cls)
    out: list[ConfigField] = []
    for f in dataclasses.fields(config_cls):
        if f.name == "kind" or not f.init:
            continue
        ftype = hints[f.name]
        if dataclasses.is_dataclass(ftype):
            out += _fields(ftype, prefix + (f.name,))
            continue
        if typing.get_origin(ftype) is not None:  # X | None and the like: use the first concrete type
            args = [a for a in typing.get_args(ftype) if a is not type(None)]
            ftype = args[0] if args else str
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        meta = f.metadata or {}
        choices = meta.get("choices")
        out.append(ConfigField(f.name, prefix + (f.name,), ftype, default, meta.get("help", ""), meta.get("min"),
                               meta.get("max"), tuple(choices) if choices else None, bool(meta.get("log"))))
    return out


def replace_config(config: Any, **overrides: Any) -> Any:
    """A copy of a (frozen, possibly nested) config with fields replaced by name; unknown names are refused."""
    fields = {f.name: f for f in config_fields(type(config))}
    unknown = sorted(set(overrides) - set(fields) - {"kind"})
    if unknown:
        raise BadInputError(f"unknown setting(s) for {type(config).__name__}: {', '.join(unknown)}")
    for name, value in overrides.items():
        if name == "kind":
            config = dataclasses.replace(config, kind=value)
            continue
        f = fields[name]
        _check_limits(f, value)
        config = _set_path(config, f.path, value)
    return config


def _check_limits(f: ConfigField, value: Any) -> None:
    if f.choices and value not in f.choices:
        raise BadInputError(f"{f.name} must be one of {', '.join(map(str, f.choices))}, not {value!r}")
    if is_number(value):
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            raise BadInputError(f"{f.name}={value} is outside {f.min}..{f.max}")


def _checked(f: ConfigField, value: Any) -> Any:
    """A stored value for field `f`, refused unless it has the field's type and lies within its limits."""
    # A JSON integer has no size limit: one too large for a float is refused here, not an OverflowError later.
    number = is_number(value) and (isinstance(value, float) or abs(value) < 2 ** 63)
    ok = {bool: isinstance(value, bool), int: number and float(value).is_integer(), float: number,
          str: isinstance(value, str)}.get(f.type, True)
    if not ok:
        what = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[f.type]
        raise BadInputError(f"{f.name} must be {what}, not {value!r}")
    value = f.type(value) if f.type in (int, float) else value
    _check_limits(f, value)
    return value


def changed_fields(base: Any, config: Any) -> list[str]:
    """The names of the tunable fields whose value in `config` differs from `base` (same config class)."""
    def value(c: Any, path: tuple[str, ...]) -> Any:
        for part in path:
            c = getattr(c, part)
        return c

    return [f.name for f in config_fields(type(base)) if value(base, f.path) != value(config, f.path)]


def _set_path(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    inner = getattr(config, path[0])
    return dataclasses.replace(config, **{path[0]: _set_path(inner, path[1:], value)})


def config_for(kind: str, **overrides: Any) -> Any:
    """The recommended config of a kind (`Config.preset(kind)`), with field overrides by name."""
    cls = config_class(kind)
    return replace_config(cls.preset(kind), **overrides)


def config_to_dict(config: Any) -> dict:
    """A config as plain JSON-ready nested dicts."""
    return dataclasses.asdict(config)


def config_from_dict(kind: str, data: dict) -> Any:
    """Rebuild a kind's config from `config_to_dict` output (unknown keys from other versions are ignored)."""
    return _from_dict(config_class(kind), data)


def _from_dict(cls: type, data: dict) -> Any:
    # Stored configs may come from elsewhere: every value is checked like a setting typed by hand.
    if not isinstance(data, dict):
        raise BadInputError(f"{cls.__name__} settings must be a mapping, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    specs = {f.name: f for f in config_fields(cls) if len(f.path) == 1}
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data or not f.init:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            value = _from_dict(hints[f.name], value)
        elif f.name in specs:
            value = _checked(specs[f.name], value)
        kwargs[f.name] = value
    return cls(**kwargs)


def create_model(config: Any):
    """A new, untrained estimator for a config (its `kind` picks the class)."""
    return estimator_class(config.kind)(config)


def bundle_kind(path: str | Path) -> str:
    """The kind recorded in a bundle's metadata (the bundle is checked, the model not loaded)."""
    from facelab.storage import read_meta

    kind = read_meta(path)["kind"]
    _check_kind(kind)
    return kind


def load_model(path: str | Path):
    """Load a saved bundle as the estimator of its kind (`FaceClassifier` or `FaceAutoencoder`)."""
    return estimator_class(bundle_kind(path)).load(path)


def import_model(data: bytes, dest: str | Path, upload_name: str):
    """Unpack an exported bundle (the bytes of an upload) into the folder `dest` and load it.

    A bundle that unpacks but does not load is refused and `dest` left as it was; messages name the upload.
    """
    from facelab.storage import import_bundle

    loaded = []
    # Loaded while still in its temporary folder: a bundle that does not load never replaces what `dest` holds.
    import_bundle(data, dest, name=upload_name, check=lambda folder: loaded.append(load_model(folder)))
    return loaded[0]
