"""Models: bundles in the model folder (load, delete, download, their training curves compared), upload a bundle,
save session models."""

from pathlib import Path

import streamlit as st

from facelab import registry, storage
from facelab.errors import FaceLabError
from facelab.evaluation import HEADLINE
from pages import ui

st.title("Models")
folder = ui.model_dir()
st.caption(f"Model folder: `{folder}` (change it in the sidebar). Every finished training is saved here.")


def _metric(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return round(float(value), 4) if storage.is_number(value) else None


def _saved_as(path: Path | None) -> str:
    """Where a session model's bundle is, or says it was deleted (the model itself stays in the session)."""
    if path is None:
        return ""
    return str(path) if storage.is_bundle(path) else f"{path} (deleted since; save it again)"


st.subheader("Saved bundles")
ui.show_message("models.delete")
damaged: list[tuple[str, str]] = []
bundles = storage.list_bundles(folder, damaged)
if damaged:
    st.warning(f"{len(damaged)} folder(s) here have a meta.json that is not a readable bundle: "
               + "; ".join(f"{name} ({why})" for name, why in damaged))
if folder.exists() and not folder.is_dir():
    st.error(f"{folder} is a file, not a folder: bundles cannot be kept there. Change the model folder in the sidebar.")
elif not bundles:
    st.info("No bundles in this folder yet. Train a model, or upload an exported bundle below.")
else:
    ui.metrics_table([{
        "name": b["name"], "kind": b["kind"], "created": b["created"][:19].replace("T", " "), "people": b["people"],
        **{HEADLINE[k]: _metric(b["metrics"], k) for k in ("accuracy", "top5", "recon_psnr")}, "data": b["data_source"],
    } for b in bundles])
    by_name = {b["name"]: b for b in bundles}
    chosen = st.selectbox("Bundle", list(by_name), key="models.bundle")
    path = by_name[chosen]["path"]
    actions = st.container(horizontal=True)  # wraps at narrow widths, where three columns cut the labels
    if actions.button("Load into the session", key="models.load", icon=":material/upload:"):
        try:
            with st.spinner(f"Loading {chosen} (safe mode)..."):
                ui.add_model(chosen, registry.load_model(path), path)
            st.session_state["models.session_model"] = chosen  # the session section below starts on it too
            st.success(f"Loaded {chosen}; it is now the active model.")
        except FaceLabError as err:
            ui.show_error(err)
    if actions.button("Delete", key="models.delete", icon=":material/delete:"):
        ui.ask_confirmation("models.delete", chosen)
    if ui.confirmed("models.delete", chosen, f"Delete {chosen} from the model folder for good? Its files are removed; "
                    "a copy loaded in this session stays until the session ends.", yes=f"Delete {chosen}"):
        try:
            storage.delete_bundle(path)
            ui.rerun_with_message("models.delete", f"Deleted {chosen} from the model folder.")
        except FaceLabError as err:
            ui.show_error(err)
    try:
        actions.download_button("Download as a file", storage.export_bundle(path), file_name=f"{chosen}.facelab.zip",
                                mime="application/zip", key="models.download", icon=":material/download:")
    except FaceLabError as err:
        ui.show_error(err)

    compared = st.multiselect("Compare training curves of", list(by_name), default=list(by_name)[:3],
                              key="models.compare")
    if compared:
        ui.compare_curves({n: by_name[n]["history"] for n in compared}, key="models.compare")

st.subheader("Upload a bundle")
upload = st.file_uploader("An exported bundle (.zip from Download)", type=["zip"], key="models.upload")
if upload is not None:
    # A downloaded file is named after its model, but a browser may have renamed it ("model (1).zip"): say the name.
    wanted = st.text_input("Name in the model folder", upload.name.removesuffix(".zip").removesuffix(".facelab"),
                           key=f"models.import_name.{upload.file_id}",
                           help="Another model of this name is never replaced: the new one becomes name-2.")
    if st.button("Import and load", key="models.import"):
        name = ui.unique_name(wanted)
        try:
            ui.add_model(name, registry.import_model(upload.getvalue(), folder / name, upload.name), folder / name)
            st.success(f"Imported {upload.name} as {name} and loaded it.")
        except FaceLabError as err:
            ui.show_error(err)

st.subheader("In this session")
session = ui.models()
if not session:
    st.caption("No models in this session yet.")
else:
    paths = ui.model_paths()
    ui.metrics_table([{"name": n, "kind": m.kind, HEADLINE["accuracy"]: _metric(m.metrics_, "accuracy"),
                       "saved as": _saved_as(paths.get(n))} for n, m in session.items()])
    name = st.selectbox("Session model", list(session), key="models.session_model")
    if st.button("Save to the model folder", key="models.save", icon=":material/save:"):
        target = ui.save_target(name, anywhere=False)
        other_kept = target.name != name and target != paths.get(name)
        try:
            path = session[name].save(target)
            ui.model_paths()[name] = path
            st.success(f"Saved {name} to {path}." + (f" The bundle {name} there is another model and was kept."
                                                      if other_kept else ""))
        except FaceLabError as err:
            ui.show_error(err)
