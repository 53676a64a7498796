"""The API's routes over the studio's job queue, and its one error policy.

Every route but ``/openapi.json`` needs the bearer token (:mod:`app.api.auth`). The schema is public: it
describes this code, the same on every install, and holds no job, path or secret; serving it without the
token lets client generators and schema testers read it before they are given one. The interactive docs
(/docs, /redoc) are off: they load their scripts from a CDN, and the studio runs offline.

Errors are ``{"detail": "<one line>"}`` like the CLI's one line: 400 for a request the studio refuses
(a missing input, an unknown style, a bad ``sets`` value: the queue's own checks, as ``cli queue add``),
401 without the token, 404 for a job or file that is not there, 409 for an action the job's state forbids,
422 for a request of the wrong shape, 503 for a damaged database, 507 for a full disk; 500 only for a
failure of ours, with its traceback in ``$VP_HOME/logs/studio.log``, never in the answer.
"""

from __future__ import annotations

import errno
import json
import logging
import mimetypes
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from core.errors import ConfigError, DatabaseCorruptError, DiskFullError, StudioError
from core.studio.queue import STATES, Job, JobQueue

from . import auth, stream
from .schemas import MAX_INT, EventOut, Health, JobDetail, JobSummary, Problem, Record, RenderRequest

log = logging.getLogger(__name__)

DEFAULT_PORT = 8502
DEFAULT_LIMIT, MAX_LIMIT = 200, 10_000
#: an OSError with one of these on a path the caller gave is the caller's to fix (as in the CLI)
PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                         errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO})
#: the answers a route may give besides its own, for the schema
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Problem, "description": what} for code, what in (
    (401, "missing or wrong token"), (422, "a request of the wrong shape"), (503, "the database is damaged"))}
_NO_JOB = {404: {"model": Problem, "description": "no such job"}}
_STATE = {409: {"model": Problem, "description": "the job's state forbids it"}}
#: one message of the stream (:mod:`app.api.stream`), as schema testers and client generators read SSE
_SSE_EVENT = {"type": "object", "required": ["event", "data"], "properties": {
    "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's seq (absent on `end`)"},
    "event": {"type": "string", "enum": ["progress", "end"]},
    "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"oneOf": [
        {"$ref": "#/components/schemas/EventOut"},
        {"type": "object", "required": ["job", "state"], "properties": {
            "job": {"type": "integer"}, "state": {"type": "string", "enum": list(stream.FINAL)}}}]}}}}
#: a job's id in a path; bounded, as SQLite cannot even look up a larger one
JobIdPath = Annotated[int, PathParam(ge=1, le=MAX_INT, description="the job's id")]


def create_app(db_path: str | Path | None = None, token: str | None = None) -> FastAPI:
    """The API over the queue in ``db_path`` (default ``$VP_HOME/studio.db``), guarded by ``token`` (default
    the one in ``$VP_HOME/api_token``, made when absent)."""
    app = FastAPI(title="Video Producer studio API", version="1", docs_url=None, redoc_url=None,
                  dependencies=[Depends(auth.check_token), Depends(known_query)], responses=_ERRORS,
                  description="Queue renders, follow them and fetch what they made. Every endpoint takes "
                              "`Authorization: Bearer <token>`, the token in `$VP_HOME/api_token`.")
    app.state.token = token if token is not None else auth.load_or_create_token()
    app.state.queue = JobQueue(db_path)
    for kind, handler in _HANDLERS.items():
        app.add_exception_handler(kind, handler)
    _add_routes(app)
    app.state.query_names = _query_names(app)
    return app


def known_query(request: Request) -> None:
    """A dependency: 422 for a query parameter the route does not take, rather than ignoring it (a typo such
    as ``?stat=done`` must not list every job)."""
    route = (request.method, getattr(request.scope.get("route"), "path", None))
    known = request.app.state.query_names.get(route, set())
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise HTTPException(422, f"unknown query parameter {unknown[0]!r} "
                                 f"(known: {', '.join(sorted(known)) or 'none'})")


def _query_names(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """(method, path) -> the query parameters the route takes, from the app's own schema."""
    return {(method.upper(), path): {p["name"] for p in op.get("parameters", ()) if p["in"] == "query"}
            for path, ops in app.openapi()["paths"].items() for method, op in ops.items()}


# ------------------------------------------------------------------------------------------------ routes


def _add_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["studio"])
    def health(request: Request) -> Health:
        """The server answers and reads the queue: jobs per state."""
        queue: JobQueue = request.app.state.queue
        return Health(status="ok", database=str(queue.path), jobs=queue.counts())

    @app.post("/jobs", response_model=JobDetail, status_code=201, tags=["jobs"],
              responses={400: {"model": Problem, "description": "the studio refuses the render"}})
    def submit(body: RenderRequest, request: Request) -> JobDetail:
        """Queue a render, checked now as `cli queue add render` checks it (input, style, preset, sets, output);
        a worker runs it. Answers the new job."""
        queue: JobQueue = request.app.state.queue
        job_id = queue.add("render", body.spec(), gpu=body.gpu, max_attempts=body.max_attempts)
        return JobDetail.of(queue.get(job_id))

    @app.get("/jobs", response_model=list[JobSummary], tags=["jobs"])
    def list_jobs(request: Request,
                  state: Annotated[list[Literal[STATES]] | None, Query(  # type: ignore[valid-type]
                      description="only jobs in these states; repeatable")] = None,
                  limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = DEFAULT_LIMIT) -> list[JobSummary]:
        """Jobs in queue order, optionally only those in some states; at most ``limit``."""
        return [JobSummary.of(j) for j in request.app.state.queue.list(state, limit)]

    @app.get("/jobs/{job_id}", response_model=JobDetail, responses=_NO_JOB, tags=["jobs"])
    def get_job(job_id: JobIdPath, request: Request) -> JobDetail:
        """One job: state, progress, error, output, result, and the model version that made it."""
        job = _job(request, job_id)
        return JobDetail.of(job, model_version(job))

    def action(name: str) -> Callable[..., JobDetail]:
        def act(job_id: JobIdPath, request: Request) -> JobDetail:
            _job(request, job_id)
            try:
                return JobDetail.of(getattr(request.app.state.queue, name)(job_id))
            except ConfigError as exc:  # the queue refuses the transition: the job's state forbids it
                raise HTTPException(409, str(exc)) from None
        act.__name__ = f"{name}_job"
        act.__doc__ = {"pause": "Pause a queued job; a running one stops at its next progress report.",
                       "resume": "Queue a paused job again (it keeps its place and resumes from its checkpoint).",
                       "cancel": "Cancel a queued or paused job; a running one stops at its next progress report.",
                       "retry": "Queue a failed or cancelled job again, with fresh attempts."}[name]
        return act

    for name in ("pause", "resume", "cancel", "retry"):
        app.post(f"/jobs/{{job_id}}/{name}", response_model=JobDetail, responses={**_NO_JOB, **_STATE},
                 tags=["jobs"])(action(name))

    @app.get("/jobs/{job_id}/events", response_model=list[EventOut], responses=_NO_JOB, tags=["progress"])
    def events(job_id: JobIdPath, request: Request,
               after: Annotated[int, Query(ge=0, le=MAX_INT, description="only events with seq > after")] = 0
               ) -> list[EventOut]:
        """A job's progress history, oldest first (poll with ``after`` = the last seq seen)."""
        _job(request, job_id)
        return [EventOut.of(e) for e in request.app.state.queue.events(job_id, after)]

    @app.get("/jobs/{job_id}/stream", response_class=StreamingResponse, tags=["progress"],
             responses={**_NO_JOB, 200: {"description": "Server-Sent Events: `progress` (id = seq), then `end`",
                                         "content": {"text/event-stream": {"schema": _SSE_EVENT}}}})
    def stream_events(job_id: JobIdPath, request: Request,
                      last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern="^[0-9]{1,18}$",
                                                                   description="the last id seen")] = None,
                      after: Annotated[int, Query(ge=0, le=MAX_INT, description="start after this seq")] = 0,
                      timeout: Annotated[float | None, Query(gt=0, le=86_400, description=(
                          "end the stream after this many seconds even if the job runs on"))] = None,
                      ) -> StreamingResponse:
        """A job's progress events as they happen (Server-Sent Events), from the first, or after
        ``Last-Event-ID`` (or ``after``); ends with an ``end`` event once the job is done, failed or cancelled."""
        _job(request, job_id)
        start = max(after, int(last_event_id or 0))
        return StreamingResponse(stream.job_events(request.app.state.queue, job_id, start, timeout),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/jobs/{job_id}/output", response_class=FileResponse, tags=["results"],
             responses={**_NO_JOB, **_STATE, 200: {"description": "the file the job made", "content": {
                 "video/*": {"schema": {"type": "string", "format": "binary"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    def output(job_id: JobIdPath, request: Request) -> FileResponse:
        """The file a done job made (a render's video, a train job's model)."""
        job = _done(request, job_id)
        if not job.output:
            raise HTTPException(404, f"job {job_id} ({job.kind}) makes no output file; see its result")
        path = Path(job.output)
        if not path.is_file():
            raise HTTPException(404, f"job {job_id}: its output {path} no longer exists (moved or cleaned up)")
        media = mimetypes.guess_type(path.name)[0]  # a model (.onnx) has none: bytes, not Starlette's text/plain
        return FileResponse(path, filename=path.name, media_type=media if media and media.startswith("video/")
                            else "application/octet-stream")

    @app.get("/jobs/{job_id}/record", response_model=Record, responses={**_NO_JOB, **_STATE}, tags=["results"])
    def record(job_id: JobIdPath, request: Request) -> Record:
        """A done render's record (``$VP_HOME/renders/<job hash>/``): the job as rendered, its quality summary
        and where the time went."""
        job = _done(request, job_id)
        folder = record_folder(job)
        if folder is None:
            raise HTTPException(404, f"job {job_id} is a {job.kind} job: only a render keeps a record")
        parts = {name: _read_json(folder / f"{name}.json") for name in ("job", "summary", "perf")}
        if parts["job"] is None:
            raise HTTPException(404, f"job {job_id}: no render record in {folder} (not kept, or cleaned up)")
        return Record(folder=str(folder), **parts)


def _job(request: Request, job_id: int) -> Job:
    try:
        return request.app.state.queue.get(job_id)
    except ConfigError:
        raise HTTPException(404, f"no job {job_id}") from None


def _done(request: Request, job_id: int) -> Job:
    job = _job(request, job_id)
    if job.state != "done":
        raise HTTPException(409, f"job {job_id} is {job.state}: what it makes is there once it is done")
    return job


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def record_folder(job: Job) -> Path | None:
    """Where a render keeps its record (:func:`core.render.publish.keep_record`): the folder its result names,
    else the one its job hash names; None for other kinds."""
    if job.kind != "render":
        return None
    if job.result and job.result.get("record"):
        return Path(job.result["record"])
    if not job.work_key:
        return None
    from core.render.publish import record_root

    return record_root() / job.work_key


#: ``model='name@3'`` in the params a render record keeps (``repr`` of the style's params)
_PINNED = re.compile(r"\bmodel='([^'@]+@\d+)'")


def model_version(job: Job) -> str | None:
    """``name@version`` of the model a job used, where recorded: a train job's new model; a render's model as
    pinned in its spec, else as its record says it ran (a neural render pins the active version when it
    starts). None for a render without a model, or one not rendered yet."""
    if job.kind == "train":
        return (job.result or {}).get("model")
    if job.kind != "render":
        return None
    asked = str((job.spec.get("sets") or {}).get("model") or "")
    if "@" in asked:
        return asked
    used = (job.result or {}).get("model")  # the worker records the version it pinned
    if used:
        return str(used)
    folder = record_folder(job) if job.state == "done" else None
    rec = _read_json(folder / "job.json") if folder is not None else None
    found = _PINNED.search(str((rec or {}).get("params", "")))
    return found[1] if found else None


# ------------------------------------------------------------------------------------------------ errors


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": _one_line(detail)}, status_code=status, headers=headers)


def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """Pydantic's list of errors as one line: ``body.sets.crf: Input should be ...; query.limit: ...``."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return _problem(422, "; ".join(parts) + more if parts else "invalid request")


def _studio(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DiskFullError):
        return _problem(507, str(exc))
    if isinstance(exc, DatabaseCorruptError):
        return _problem(503, str(exc))
    if isinstance(exc, StudioError) and exc.user_error:
        return _problem(400, str(exc))
    return _internal(request, exc)


def _os_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OSError) and exc.errno in PATH_ERRNOS and exc.filename is not None:
        return _problem(400, f"{exc.filename}: {exc.strerror or type(exc).__name__}")
    return _internal(request, exc)


def _internal(request: Request, exc: Exception) -> JSONResponse:
    """A failure of ours: the traceback to the log, one line naming only the exception's type in the answer."""
    log.error("API %s %s: unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return _problem(500, f"internal error ({type(exc).__name__}), not caused by your request; the traceback is "
                         "in $VP_HOME/logs/studio.log")


_HANDLERS: dict[type[Exception], Callable[[Request, Exception], JSONResponse]] = {
    RequestValidationError: _invalid, StudioError: _studio, OSError: _os_error, Exception: _internal}


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve ``app`` with uvicorn until interrupted (Ctrl-C, SIGTERM); open streams get 3 s to finish. A port
    already taken: uvicorn says so in one line and exits 3."""
    import uvicorn

    log.info("API on http://%s:%d (token in %s)", host, port, auth.token_path())
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
