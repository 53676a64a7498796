"""The studio: ``streamlit run app/streamlit_app.py`` (``make run`` starts it with a background worker)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ first on the path, not the repository
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="Video Producer studio", layout="wide")
pages = [
    st.Page("views/dashboard.py", title="Dashboard", icon=":material/movie:", default=True),
    st.Page("views/queue.py", title="Batch queue", icon=":material/queue:"),
    st.Page("views/style_lab.py", title="Style Lab", icon=":material/compare:"),
    st.Page("views/trainer.py", title="Trainer", icon=":material/model_training:"),
    st.Page("views/settings.py", title="Settings", icon=":material/settings:"),
]
st.navigation(pages).run()
