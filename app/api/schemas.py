"""What the API takes and gives, as pydantic models: they check a request's shape and write the OpenAPI schema.

Only the shape is checked here (types, bounds, no unknown keys); what a render may be (a style, a preset, a
path that is a video) is checked by the queue itself (:func:`core.studio.kinds.render_spec`), exactly as
``cli queue add render`` checks it, so the two can never disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.studio.queue import Event, Job

#: SQLite's INTEGER: a larger id or count cannot even be looked up
MAX_INT = 2**63 - 1
SetValue = str | int | float | bool
#: a path the server can use whatever its working folder: absolute, and no NUL (which no file name holds)
ABSOLUTE = "^/[^\\x00]*$"


class Problem(BaseModel):
    """Every error: one line for a person (HTTP status says what kind)."""

    detail: str


class RenderRequest(BaseModel):
    """A render to queue: the options of ``cli queue add render``. Paths are on this machine and absolute (the
    server's working folder is not the caller's); ``sets`` are ``--set key=value`` pairs, typed."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(max_length=4096, description="absolute path of the video to render",
                       json_schema_extra={"pattern": ABSOLUTE})
    output: str = Field(max_length=4096, description="absolute path of the file to write (.mp4, .mkv, .mov)",
                        json_schema_extra={"pattern": ABSOLUTE})
    style: str = Field("none", max_length=200, description="a style of `cli styles`")
    preset: str = Field("balanced", max_length=200, description="a preset of `cli presets list`")
    sets: dict[str, SetValue] = Field(default_factory=dict, max_length=200,
                                      description="style parameters and preset fields: {\"n_colors\": 6, "
                                                  "\"encoder.crf\": 18}")
    chunk_seconds: float | None = Field(None, description="target chunk length (default: the preset's)")
    workers: int | None = Field(None, description="render processes (default: one per core)")
    audio: str = Field("all", max_length=20, description="all or none")
    subtitles: str = Field("all", max_length=20, description="all or none")
    gpu: bool = Field(False, description="needs the GPU (at most the worker's GPU slots run at once)")
    max_attempts: int = Field(3, ge=1, le=100, description="failed runs before the job is marked failed")

    @field_validator("input", "output")
    @classmethod
    def _absolute(cls, value: str) -> str:
        """The schema's ``pattern``, checked here to say why in the error."""
        if "\0" in value:
            raise ValueError("a path cannot hold a NUL character")
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path (the server's working folder is not yours), got {value!r}")
        return value

    def spec(self) -> dict[str, Any]:
        """The queue's render spec (what :meth:`core.studio.queue.JobQueue.add` checks)."""
        return self.model_dump(exclude={"gpu", "max_attempts"})


class JobSummary(BaseModel):
    """A job as listed: its state and progress (``progress`` in [0, 1]), times ISO 8601 UTC, its spec."""

    id: int
    kind: str
    state: str = Field(description="queued, running, paused, done, failed or cancelled")
    requested: str | None = Field(description="paused/cancelled while a running job has been asked to stop")
    stage: str
    message: str
    error: str
    progress: float
    fps: float | None
    eta_s: float | None
    attempts: int
    max_attempts: int
    lost: int
    max_lost: int
    gpu: bool
    created: str
    started: str | None
    finished: str | None
    output: str | None
    spec: dict[str, Any]

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls.model_construct(**{k: getattr(job, k) for k in cls.model_fields})


class JobDetail(JobSummary):
    """One job in full: its result once done, and the model version that made it, where one was recorded."""

    result: dict[str, Any] | None
    model: str | None = Field(description="name@version of the model a neural render or a train job used")

    @classmethod
    def of(cls, job: Job, model: str | None = None) -> JobDetail:  # type: ignore[override]
        return cls.model_construct(**{k: getattr(job, k) for k in JobSummary.model_fields}, result=job.result,
                                   model=model)


class EventOut(BaseModel):
    """One progress report or transition; ``seq`` numbers a job's events from 1; ``percent`` in [0, 100]."""

    seq: int
    time: str
    stage: str
    percent: float
    fps: float | None
    message: str
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_construct(seq=event.seq, time=event.time, stage=event.stage, percent=event.percent,
                                   fps=event.fps, message=event.message, data=event.data)


class Health(BaseModel):
    status: str = Field(description="ok")
    database: str
    jobs: dict[str, int] = Field(description="jobs per state")


class Record(BaseModel):
    """A finished render's record folder (``$VP_HOME/renders/<job hash>/``): ``job.json``, ``summary.json`` (quality
    measures: mean, p95, per shot) and ``perf.json`` (where the time went), each None when absent."""

    folder: str
    job: dict[str, Any]
    summary: dict[str, Any] | None
    perf: dict[str, Any] | None
