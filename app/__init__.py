"""The studio's Streamlit app: ``streamlit_app.py`` (navigation) and one thin page per file in ``views/``
(not ``pages/``: Streamlit would discover that folder itself and, for a page opened by its URL before the
entry script ran, draw its own navigation).

Modules here that do not import streamlit (``wipe``, ``hardware``, ``actions``, ``plots``, ``events``)
hold the little logic the pages need beyond one core call, so it can be tested without a browser.
"""
