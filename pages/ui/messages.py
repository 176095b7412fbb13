"""Messages on the page: errors without a traceback, a message that outlives the rerun an action asks for, and
a question before what cannot be undone."""

from __future__ import annotations

import logging

import streamlit as st

from facelab.errors import FaceLabError
from pages.ui.state import DONE_MESSAGE, forget_kept

log = logging.getLogger(__name__)


def show_error(err: BaseException) -> None:
    """A FaceLabError as a message; anything else as a short error (the log has the traceback)."""
    if isinstance(err, FaceLabError):
        st.error(str(err), icon=":material/error:")
    else:
        log.exception("unexpected error in the dashboard", exc_info=err)
        st.error(f"Something went wrong: {type(err).__name__}: {err}", icon=":material/error:")


def rerun_with_message(place: str, text: str, forget: str | None = None, error: bool = False) -> None:
    """Rerun the page at once, so nothing the action changed is left drawn stale (crops that were just added,
    a person just removed), and show `text` (a success, or an error) where the page calls `show_message(place)`.
    Widget values whose keys start with `forget` are dropped (e.g. the ticks of crops that are gone, so the next
    ones start ticked)."""
    if forget:
        forget_kept(forget)
    st.session_state[DONE_MESSAGE] = (place, text, error)
    st.rerun()


def show_message(place: str) -> None:
    """The message `rerun_with_message` left for this place, once."""
    message = st.session_state.get(DONE_MESSAGE)
    if message and message[0] == place:
        del st.session_state[DONE_MESSAGE]
        (st.error if message[2] else st.success)(message[1])


def ask_confirmation(key: str, item: str) -> None:
    """Start asking whether to go ahead with the action `key` on `item` (see `confirmed`)."""
    st.session_state[f"{key}.pending"] = item


def confirmed(key: str, item: str, question: str, yes: str) -> bool:
    """While `ask_confirmation(key, item)` is pending: the question with `yes` / Cancel buttons. True on the run
    the user presses `yes`; for actions that cannot be undone."""
    pending = f"{key}.pending"
    if st.session_state.get(pending) != item:
        # Another item was chosen meanwhile: the question lapses instead of coming back with its item.
        st.session_state.pop(pending, None)
        return False
    st.warning(question)
    go_on, cancel = st.columns([1, 3])
    if go_on.button(yes, key=f"{key}.yes", type="primary"):
        st.session_state.pop(pending)
        return True
    if cancel.button("Cancel", key=f"{key}.no"):
        st.session_state.pop(pending)
        st.rerun()
    return False
