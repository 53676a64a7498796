"""The studio: ``streamlit run app/streamlit_app.py`` (``make run`` starts it with a background worker).

This file owns the navigation: the pages, their titles and their URLs (``/``, ``/queue``, ``/style_lab``,
``/trainer``, ``/settings``) are the ``st.Page`` list below, never a folder Streamlit discovers by itself (the
pages live in ``app/views/``: a ``pages/`` folder beside this file would make Streamlit draw its own list of
file names for a page opened by its URL). The favicon is set here too: an emoji, drawn by the browser, because
a page's ``:material/...:`` icon as favicon is fetched from fonts.gstatic.com, and the studio works offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ first on the path, not the repository
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="Video Producer studio", page_icon="🎬", layout="wide")
pages = [
    st.Page("views/dashboard.py", title="Dashboard", icon=":material/movie:", default=True),  # at / only
    st.Page("views/queue.py", title="Batch queue", icon=":material/queue:", url_path="queue"),
    st.Page("views/style_lab.py", title="Style Lab", icon=":material/compare:", url_path="style_lab"),
    st.Page("views/trainer.py", title="Trainer", icon=":material/model_training:", url_path="trainer"),
    st.Page("views/settings.py", title="Settings", icon=":material/settings:", url_path="settings"),
]
st.navigation(pages, position="sidebar").run()
