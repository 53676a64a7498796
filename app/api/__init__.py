"""The studio's local JSON API: what a pipeline drives over HTTP instead of the CLI (FastAPI, served by uvicorn).

- :mod:`app.api.auth`: the bearer token in ``$VP_HOME/api_token`` and the check every endpoint makes
- :mod:`app.api.schemas`: what goes in and comes out (pydantic models; they make the OpenAPI schema)
- :mod:`app.api.stream`: a job's progress events as Server-Sent Events
- :mod:`app.api.server`: :func:`~app.api.server.create_app`, the routes and the one error policy

A thin shell like the pages and the CLI: it calls :mod:`core.studio.queue` and nothing under it renders
here (a worker does). It imports core only, never streamlit or the pages, and ``scripts.api`` (or
``scripts.studio``, beside the app) starts it.
"""
