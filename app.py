"""FaceLab dashboard: `streamlit run app.py`. The frame only: page set-up, sidebar, navigation."""

import streamlit as st

from facelab.live import prepare_webrtc_import
from pages import ui

# aiortc's pylibsrtp (under streamlit-webrtc) segfaults when first loaded after TensorFlow (both carry
# OpenSSL symbols): load it now, before a page can import TensorFlow, so the live page is always safe.
prepare_webrtc_import()

st.set_page_config(page_title="FaceLab", page_icon=":material/face:", layout="wide")

pages = {
    "FaceLab": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/database:"),
    ],
    "Train": [
        st.Page("pages/train_gru.py", title="Train GRU", icon=":material/model_training:"),
        st.Page("pages/train_autoencoder.py", title="Train autoencoder", icon=":material/compress:"),
    ],
    "Use": [
        st.Page("pages/reconstructions.py", title="Reconstructions", icon=":material/auto_awesome_mosaic:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/identify.py", title="Identify", icon=":material/person_search:"),
        st.Page("pages/live.py", title="Live webcam", icon=":material/videocam:"),
        st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
    ],
}
page = st.navigation(pages)
ui.keep_widget_values()

ui.collect_finished()
with st.sidebar:
    st.caption(ui.device_label())
    # Filled again after the page runs, so that a dataset loaded or a model trained by this very run shows at once.
    status = st.empty()
    ui.training_lines()  # a fragment of its own: it ticks while a training runs, whatever page is open
    st.text_input("Model folder", ui.model_dir_default_text(), key=ui.MODEL_DIR,
                  help="every finished training is saved here as a bundle; $FACELAB_MODEL_DIR sets the default")


def draw_status() -> None:
    with status.container():
        ds = ui.dataset()
        st.markdown(f"**Data:** {st.session_state.get(ui.DATASET_LABEL, ds.source) if ds is not None else 'none yet'}")
        st.markdown(f"**Model:** {ui.active_model_name() or 'none yet'}")


draw_status()  # stays as it is when the page stops early (st.stop): nothing can be drawn after that
page.run()
draw_status()
