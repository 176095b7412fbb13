"""Evaluate: test accuracy, confusion, per-person accuracy, misclassified faces, the embedding space, every model
compared."""

import streamlit as st

from facelab import plots, registry
from facelab.errors import FaceLabError
from facelab.evaluation import HEADLINE, people_changed_since_test
from pages import ui

st.title("Evaluate")
name, model = ui.pick_model("Model", "evaluate.model")

ds = ui.dataset()
other_data = ds is not None and model.data_source_ and model.data_source_ != ds.source
if other_data:  # on the page, not in the expander: the embedding space below is drawn from this data too
    st.warning(f"{name} was trained on {model.data_source_}; the active data set is {ds.source}.")
if ds is not None:
    with st.expander("Evaluate on the active data set", expanded=not model.metrics_):
        make_split = ui.split_form(ds, key="evaluate.split", validation=False)
        st.caption("Use the split the model was trained with (same K and seed), or its training faces count as test.")
        if st.button("Evaluate", key="evaluate.run", type="primary"):
            try:
                with st.spinner(f"Evaluating {name}..."):
                    test = make_split().test
                    model.evaluate(test)
                ui.remember_test(name, test, model.test_predictions_)
            except FaceLabError as err:
                ui.show_error(err)

metrics = model.metrics_ or {}
if not metrics:
    st.info("No test results for this model yet: evaluate it on a data set above.")
else:
    ui.show_metrics(metrics)
    added, removed = people_changed_since_test(metrics, model.names_)
    if added or removed:  # enrolment changes a gallery without a new test
        st.caption("Measured before " + " and ".join(
            part for part in (f"adding {', '.join(added)}" if added else "",
                              f"removing {', '.join(removed)}" if removed else "") if part)
            + ": press Evaluate above to measure the model as it is now.")
    names = metrics.get("confusion_names") or model.names_
    # Tabs, not columns: a 40-person confusion matrix needs the page's width to be read.
    confusion, per_person = st.tabs(["Confusion matrix", "Accuracy per person"])
    if metrics.get("confusion"):
        confusion.plotly_chart(plots.confusion_heatmap(metrics["confusion"], names), key="evaluate.confusion")
    if metrics.get("per_person"):
        per_person.plotly_chart(plots.per_person_bar(metrics["per_person"]), key="evaluate.per_person")

wrong = st.session_state.get(ui.EVALUATIONS, {}).get(name)
if wrong is not None:
    st.subheader(f"Misclassified: {wrong.count} of {wrong.total} test faces")
    if wrong.count > len(wrong.faces):
        st.caption(f"The first {len(wrong.faces)} are shown.")
    if wrong.count:
        st.plotly_chart(plots.face_grid(wrong.faces, wrong.captions, cols=8), key="evaluate.wrong")

if ds is not None:
    st.subheader("Embedding space")
    st.caption("Each face of the active data set as a point, placed by the model's embedding"
               + (" (the layer before the softmax)" if registry.is_classifier(model) else " (its code)")
               + ": faces of one person should gather.")
    ui.embedding_space(name, model, ds, model.embed, "embeddings", key="evaluate.latent")

session = ui.models()
st.subheader("All models in this session")
ui.metrics_table([{"model": n, "kind": m.kind, "people": len(m.names_), "epochs": len(m.history_.get("loss", [])),
                   **{label: m.metrics_.get(k) for k, label in HEADLINE.items()}} for n, m in session.items()])
ui.compare_curves({n: m.history_ for n, m in session.items()}, key="evaluate.compare")
