"""Forms: a widget for every field of a config dataclass, and the sliders of the per-person split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from facelab.errors import FaceLabError
from pages.ui.messages import show_error
from pages.ui.state import data_key, kept


def config_form(config: Any, key: str, skip: tuple[str, ...] = (), columns: int = 3) -> Any:
    """A widget for every field of a frozen config dataclass (nested configs in an expander); the new config.

    Fields, limits and help come from `facelab.registry.config_fields`, values go back through
    `replace_config` (which checks them). Widget keys are `key.field`; `key` should change with the
    preset so that picking a preset resets the widgets to its values.
    """
    from facelab.registry import config_fields, replace_config

    fields = [f for f in config_fields(type(config)) if f.name not in skip]
    groups: dict[tuple[str, ...], list] = {}
    for spec in fields:
        groups.setdefault(spec.path[:-1], []).append(spec)
    values: dict[str, Any] = {}
    for prefix, specs in groups.items():
        box = st.expander(" / ".join(p.replace("_", " ") for p in prefix).capitalize() + " settings",
                          expanded=True) if prefix else st.container()
        cols = box.columns(columns)
        for i, spec in enumerate(specs):
            current = config
            for part in spec.path:
                current = getattr(current, part)
            with cols[i % columns]:
                values[spec.name] = _field_widget(spec, current, kept(f"{key}.{spec.name}"))
    try:
        return replace_config(config, **values)
    except FaceLabError as err:
        show_error(err)
        st.stop()


def _field_widget(spec: Any, current: Any, key: str) -> Any:
    """The widget for one `ConfigField`: select for choices, checkbox, slider (log scale if marked), text."""
    label = spec.name.replace("_", " ")
    help_ = spec.help or None
    lo, hi = spec.min, spec.max
    if spec.choices:
        options = list(spec.choices)
        index = options.index(current) if current in options else 0
        return st.selectbox(label, options, index=index, key=key, help=help_)
    if spec.type is bool or isinstance(current, bool):
        return st.checkbox(label, value=bool(current), key=key, help=help_)
    if spec.type is int:
        if lo is not None and hi is not None and hi - lo <= 512:
            return int(st.slider(label, int(lo), int(hi), int(current), key=key, help=help_))
        return int(st.number_input(label, min_value=None if lo is None else int(lo),
                                   max_value=None if hi is None else int(hi), value=int(current), step=1,
                                   key=key, help=help_))
    if spec.type is float:
        if spec.log and lo and hi:
            # Learning rates and the like: steps of 1-2-5 per decade read better than a linear slider.
            return float(st.select_slider(label, options=spec.log_options(float(current)),
                                          value=float(current), key=key, help=help_, format_func=lambda v: f"{v:g}"))
        if lo is not None and hi is not None:
            return float(st.slider(label, float(lo), float(hi), float(current), step=spec.slider_step(),
                                   key=key, help=help_))
        return float(st.number_input(label, value=float(current), key=key, help=help_, format="%g"))
    if spec.type is tuple or isinstance(current, tuple):
        text = st.text_input(label, ", ".join(str(v) for v in current), key=key, help=help_)
        kind = type(current[0]) if current else int
        try:
            return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            st.warning(f"{label}: expected comma-separated {kind.__name__} values; kept {current}")
            return current
    return st.text_input(label, "" if current is None else str(current), key=key, help=help_)


def split_form(ds: Any, key: str, validation: bool = True) -> Callable[[], Any]:
    """Sliders for the per-person split (K training faces, of which some validate when `validation`; the rest test).

    Returns a function that makes the `DataSplit` when called (when Train is pressed).
    """
    from facelab.data import split_dataset

    if ds.usage is not None:
        st.caption("This source fixes its own train / validation / test split; it is kept.")
        return lambda: split_dataset(ds)
    fewest = min(ds.counts().values())
    key = f"{key}.{data_key(ds)}"  # another data set has other limits: its sliders start afresh
    cols = iter(st.columns(3 if validation else 2))
    with next(cols):
        k = _count_slider("training faces per person (K)", 1, fewest - 1, 5, kept(f"{key}.k"),
                          "the rest of each person's faces are the test set")
    val = 0  # which faces are test depends only on K and the seed
    if validation:
        with next(cols):
            val = _count_slider("of which for validation", 0, k - 1, 1, kept(f"{key}.val"),
                                "validation faces choose the best epoch and give the validation curves; test faces "
                                "are only for reporting. 0 trains on every training face for the preset's fixed "
                                "epochs, as the benchmarks do (for ae-metric on Olivetti that named more validation "
                                "faces rightly)")
    seed = next(cols).number_input("split seed", 0, 10_000, 0, key=kept(f"{key}.seed"))
    return lambda: split_dataset(ds, train_per_person=k, val_per_person=val, seed=int(seed))


def _count_slider(label: str, lo: int, hi: int, preferred: int, key: str, help_: str) -> int:
    """An int slider from `lo` to `hi`; when the data leave one choice, that choice as a caption (a slider whose
    ends meet is an error in Streamlit)."""
    hi = max(lo, hi)
    if hi == lo:
        st.caption(f"{label}: {lo} (the person with the fewest faces leaves no other choice)")
        return lo
    return int(st.slider(label, lo, hi, min(max(preferred, lo), hi), key=key, help=help_))
