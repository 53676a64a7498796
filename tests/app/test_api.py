"""app.api: the studio's JSON API. Every endpoint refuses a request without the token; a render submitted over
real HTTP (uvicorn on a free port) is run by a real worker, its SSE events arrive in order and resume after
``Last-Event-ID``, its output and record download; a user's mistake is a 4xx with one line; schemathesis,
fuzzing the app's own schema, finds no server error; the launchers start and stop it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.api import auth
from app.api.server import create_app
from core.errors import ConfigError
from core.studio.queue import JobQueue
from core.studio.worker import run_worker
from core.video.probe import probe
from core.video.synthetic import ClipSpec, make_clip

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2; schemathesis uses httpx
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
CLIP = ClipSpec(width=160, height=96, frames=10, gop=5)
RENDER = {"style": "cartoon", "workers": 1}
#: generated requests per operation and mode (valid, invalid): the fuzz test's time is about linear in it
EXAMPLES = 20
#: every route the API has, as (method, path); a new one must be added here and so to the token test
ENDPOINTS = {("GET", "/health"), ("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/{job_id}"),
             ("POST", "/jobs/{job_id}/pause"), ("POST", "/jobs/{job_id}/resume"), ("POST", "/jobs/{job_id}/cancel"),
             ("POST", "/jobs/{job_id}/retry"), ("GET", "/jobs/{job_id}/events"), ("GET", "/jobs/{job_id}/stream"),
             ("GET", "/jobs/{job_id}/output"), ("GET", "/jobs/{job_id}/record")}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("api") / "in.mp4", CLIP)


@pytest.fixture
def app(studio_home: Path):
    return create_app()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {app.state.token}"}) as c:
        yield c


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """The app under a real uvicorn on a free port of 127.0.0.1, in a thread; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def sse(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """SSE messages as {field: value} (comments and ``retry`` skipped), as a client parses them."""
    msg: dict[str, str] = {}
    for line in lines:
        if not line:
            if msg:
                yield msg
            msg = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            if field != "retry":
                msg[field] = value.removeprefix(" ")


def done_job(queue: JobQueue, clip: Path, out: Path, record: Path | None = None) -> int:
    """A job marked done by hand (no render): its output a copy of the clip, its record ``record``."""
    job_id = queue.add("render", {"input": str(clip), "output": str(out), **RENDER})
    shutil.copy(clip, out)
    queue.claim("w", cpu_slots=1, lease_s=600)
    queue.finish(job_id, "w", str(out), {"record": str(record) if record else None})
    return job_id


# ------------------------------------------------------------------------------------------------ token


def test_token_made_once_owner_only(studio_home: Path) -> None:
    token = auth.load_or_create_token()
    path = studio_home / "api_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= auth.MIN_TOKEN_CHARS
    assert auth.load_or_create_token() == token == create_app().state.token
    assert [p.name for p in studio_home.iterdir() if p.name.startswith(".api_token")] == []  # no temp left


def test_exception_token_readable_by_others_or_not_a_token(studio_home: Path) -> None:
    auth.load_or_create_token()
    path = studio_home / "api_token"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"api_token: mode 0644 lets other users read the API token; run `chmod"):
        auth.load_or_create_token()
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="not an API token"):
        auth.load_or_create_token()


def test_every_endpoint_needs_the_token(app, client: TestClient, clip: Path, tmp_path: Path) -> None:
    """401 without the token, with a wrong one or another scheme, for every route; with it, not 401. Only the
    schema is public."""
    routes = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert routes == ENDPOINTS
    job_id = done_job(JobQueue(), clip, tmp_path / "out.mp4")
    anonymous = TestClient(app)
    for method, path in sorted(routes):
        url = path.replace("{job_id}", str(job_id))
        body = {"json": {"input": str(clip), "output": str(tmp_path / "o.mp4")}} if method == "POST" else {}
        for headers in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Authorization": "Bearer"},
                        {"Authorization": f"Basic {app.state.token}"}, {"Authorization": f"Bearer {app.state.token}x"}):
            r = anonymous.request(method, url, headers=headers, **body)
            assert r.status_code == 401, (method, url, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer" and "api_token" in r.json()["detail"]
        assert client.request(method, url, **body).status_code != 401, (method, url)
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/docs").status_code == 404  # its scripts come from a CDN: off, the studio is offline


# ------------------------------------------------------------------------------------------- end to end


def test_smoke_a_render_over_http(app, clip: Path, tmp_path: Path) -> None:
    """Real uvicorn, real HTTP client, real worker: submit, follow the SSE stream live (in order, ids = seq,
    ending with ``end``), download the output and the record, resume the stream after ``Last-Event-ID``."""
    out = tmp_path / "out.mp4"
    headers = {"Authorization": f"Bearer {app.state.token}"}
    worker = threading.Thread(target=run_worker, kwargs={"once": True, "poll_s": 0.05})
    with serving(app) as url, httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        r = http.post("/jobs", json={"input": str(clip), "output": str(out), **RENDER})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        assert r.json()["state"] == "queued" and r.json()["output"] == str(out)
        messages = []
        with http.stream("GET", f"/jobs/{job_id}/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for msg in sse(stream.iter_lines()):
                messages.append(msg)
                if len(messages) == 1:
                    worker.start()  # the render happens while the stream is open
        worker.join(120)
        progress = [m for m in messages if m["event"] == "progress"]
        seqs = [int(m["id"]) for m in progress]
        assert seqs == list(range(1, len(seqs) + 1)) == [json.loads(m["data"])["seq"] for m in progress]
        stages = [json.loads(m["data"])["stage"] for m in progress]
        assert stages[:2] == ["queued", "start"] and "render" in stages and stages[-1] == "done", messages
        rendered = [json.loads(m["data"])["percent"] for m in progress if json.loads(m["data"])["stage"] == "render"]
        assert rendered == sorted(rendered) and rendered[-1] == 100
        assert messages[-1] == {"event": "end", "data": json.dumps({"job": job_id, "state": "done"})}

        job = http.get(f"/jobs/{job_id}").json()
        assert (job["state"], job["progress"], job["error"], job["model"]) == ("done", 1.0, "", None)
        assert job["result"]["frames"] == CLIP.frames
        video = http.get(f"/jobs/{job_id}/output")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content == out.read_bytes() and probe(out).frame_count == CLIP.frames
        record = http.get(f"/jobs/{job_id}/record").json()
        assert record["job"]["output"] == str(out) and record["job"]["frames"] == CLIP.frames
        assert record["summary"] is not None and Path(record["folder"]).name == job["result"]["job_hash"]

        with http.stream("GET", f"/jobs/{job_id}/stream", headers={"Last-Event-ID": str(seqs[-3])}) as stream:
            again = list(sse(stream.iter_lines()))
        assert [int(m["id"]) for m in again[:-1]] == seqs[-2:] and again[-1]["event"] == "end"
        assert http.get("/health").json()["jobs"]["done"] == 1


def test_cli_serves_alone(studio_home: Path, tmp_path: Path) -> None:
    """``python -m scripts.api`` serves on the port asked, makes the token, and stops on SIGINT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "scripts.api", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "VP_HOME": str(studio_home)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            token = studio_home / "api_token"
            with contextlib.suppress(httpx.TransportError, OSError):
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5,
                              headers={"Authorization": f"Bearer {token.read_text().strip()}"})
                break
            assert time.monotonic() < deadline, "scripts.api did not come up"
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    assert f"api: http://127.0.0.1:{port}" in proc.stderr.read()


# ------------------------------------------------------------------------------------------- endpoints


def test_exception_user_mistakes_are_4xx_one_line(client: TestClient, clip: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "o.mp4")
    refused = [
        ({"input": str(tmp_path / "missing.mp4"), "output": out}, 400, "missing.mp4"),
        ({"input": str(clip), "output": out, "style": "nope"}, 400, "nope"),
        ({"input": str(clip), "output": out, "style": "cartoon", "sets": {"n_colors": "many"}}, 400, "n_colors"),
        ({"input": str(clip), "output": out, "sets": {"bogus": 1}}, 400, "bogus"),
        ({"input": str(clip), "output": str(clip)}, 400, str(clip)),
        ({"input": str(clip), "output": out, "audio": "some"}, 400, "audio"),
        ({"input": "in.mp4", "output": out}, 422, "absolute path"),
        ({"input": str(clip), "output": out, "colour": "red"}, 422, "body.colour: Extra inputs are not permitted"),
        ({"output": out}, 422, "body.input: Field required"),
    ]
    for body, status, says in refused:
        r = client.post("/jobs", json=body)
        assert (r.status_code, "\n" in r.json()["detail"]) == (status, False), (body, r.text)
        assert says in r.json()["detail"], (body, r.text)
    assert client.post("/jobs", json={"input": str(clip), "output": out}).status_code == 201
    clash = client.post("/jobs", json={"input": str(clip), "output": out})  # another job writes there
    assert clash.status_code == 400 and "already renders to this output" in clash.json()["detail"]
    assert client.get("/jobs", params={"state": "lost"}).status_code == 422
    assert client.get("/jobs/99").json() == {"detail": "no job 99"}


def test_actions_follow_the_job_state(client: TestClient, clip: Path, tmp_path: Path) -> None:
    """pause/resume/cancel/retry as the queue allows them, 409 otherwise; output and record only once done."""
    job_id = client.post("/jobs", json={"input": str(clip), "output": str(tmp_path / "o.mp4")}).json()["id"]
    for action, status, state in (("pause", 200, "paused"), ("pause", 409, None), ("resume", 200, "queued"),
                                  ("retry", 409, None), ("cancel", 200, "cancelled"), ("retry", 200, "queued")):
        r = client.post(f"/jobs/{job_id}/{action}")
        assert r.status_code == status, (action, r.text)
        if state:
            assert r.json()["state"] == state
        else:
            assert r.json()["detail"].startswith(f"job {job_id} is ")
    for what in ("output", "record"):
        r = client.get(f"/jobs/{job_id}/{what}")
        assert r.status_code == 409 and "once it is done" in r.json()["detail"]
    events = client.get(f"/jobs/{job_id}/events").json()
    assert [e["stage"] for e in events] == ["queued", "paused", "resumed", "cancelled", "retry"]
    assert [e["seq"] for e in client.get(f"/jobs/{job_id}/events", params={"after": 3}).json()] == [4, 5]


def test_list_filters_limits_and_is_fast(client: TestClient, clip: Path, tmp_path: Path) -> None:
    queue = JobQueue()
    ids = [queue.add("render", {"input": str(clip), "output": str(tmp_path / f"o{i}.mp4"), **RENDER})
           for i in range(200)]
    for job_id in ids[:5]:
        queue.pause(job_id)
    assert [j["id"] for j in client.get("/jobs", params={"state": "paused"}).json()] == ids[:5]
    assert len(client.get("/jobs", params=[("state", "paused"), ("state", "queued")]).json()) == 200
    assert [j["id"] for j in client.get("/jobs", params={"limit": 3}).json()] == ids[:3]
    client.get("/jobs")  # warm
    t = time.perf_counter()
    jobs = client.get("/jobs", params={"limit": 200}).json()
    took = time.perf_counter() - t
    assert len(jobs) == 200 and jobs[0]["spec"]["style"] == "cartoon"
    assert took < 1.0, f"listing 200 jobs took {took * 1000:.0f} ms (about 10 ms on a dev machine)"


def test_output_gone_and_record_missing_are_404(client: TestClient, clip: Path, tmp_path: Path) -> None:
    queue = JobQueue()
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "job.json").write_text(json.dumps({"params": "FastStyleParams(model='sketch@2', range=0)"}))
    job_id = done_job(queue, clip, tmp_path / "o.mp4", rec)
    assert client.get(f"/jobs/{job_id}").json()["model"] == "sketch@2"  # as the record says it rendered
    assert client.get(f"/jobs/{job_id}/record").json() == {"folder": str(rec), "job": json.loads(
        (rec / "job.json").read_text()), "summary": None, "perf": None}
    (rec / "job.json").unlink()
    (tmp_path / "o.mp4").unlink()
    assert "no render record" in client.get(f"/jobs/{job_id}/record").json()["detail"]
    assert "no longer exists" in client.get(f"/jobs/{job_id}/output").json()["detail"]


def test_stream_of_a_done_job_ends_and_resumes(client: TestClient, clip: Path, tmp_path: Path) -> None:
    job_id = done_job(JobQueue(), clip, tmp_path / "o.mp4")
    with client.stream("GET", f"/jobs/{job_id}/stream") as r:
        whole = list(sse(r.iter_lines()))
    assert [m.get("id") for m in whole] == ["1", "2", "3", None] and whole[-1]["event"] == "end"
    with client.stream("GET", f"/jobs/{job_id}/stream", params={"after": 2}) as r:
        assert [m.get("id") for m in sse(r.iter_lines())] == ["3", None]
    assert client.get(f"/jobs/{job_id}/stream", headers={"Last-Event-ID": "x"}).status_code == 422


def test_stream_of_a_running_job_stops_at_its_timeout(client: TestClient, clip: Path, tmp_path: Path) -> None:
    job_id = client.post("/jobs", json={"input": str(clip), "output": str(tmp_path / "o.mp4")}).json()["id"]
    t = time.monotonic()
    with client.stream("GET", f"/jobs/{job_id}/stream", params={"timeout": 0.5}) as r:
        got = list(sse(r.iter_lines()))
    assert 0.4 < time.monotonic() - t < 5 and [m["id"] for m in got] == ["1"]  # no end: the job runs on


# ------------------------------------------------------------------------------------------- schema fuzz


def seed(queue: JobQueue, clip: Path, folder: Path) -> None:
    """Jobs in every state a user meets (done, failed, queued, paused, running), for the fuzzer to find."""
    record = folder / "record"
    record.mkdir()
    (record / "job.json").write_text(json.dumps({"frames": CLIP.frames}))
    done_job(queue, clip, folder / "done.mp4", record)
    for name in ("failed", "queued", "paused", "running"):
        job_id = queue.add("render", {"input": str(clip), "output": str(folder / f"{name}.mp4"), **RENDER})
        if name == "paused":
            queue.pause(job_id)
        elif name in ("failed", "running"):
            queue.claim("w", cpu_slots=1, lease_s=600)
            if name == "failed":
                queue.fail(job_id, "w", "broken", final=True)


def test_schemathesis_finds_no_server_error(app, clip: Path, tmp_path: Path) -> None:
    """Requests generated from the app's own schema, valid and invalid, for every operation: never a 500, every
    answer as the schema says (status, content type, body), and 401 when the token is left out. A valid request
    may still be refused (its input file does not exist: 400), so "valid data is accepted" is not checked.
    (Schemathesis's lazy pytest fixture does not run under pytest 9: its Python API drives hypothesis here.)"""
    seed(app.state.queue, clip, tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth_header = {"Authorization": f"Bearer {app.state.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == ENDPOINTS

    def fuzz(strategy, examples: int) -> None:
        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            if case.path.endswith("/stream"):  # the stream of a job that is not done would never end
                t = (case.query or {}).get("timeout")
                if t is None or (isinstance(t, int | float) and not isinstance(t, bool) and 0.2 < t <= 86_400):
                    case.query = {**(case.query or {}), "timeout": 0.2}
            case.call_and_validate(headers=auth_header, excluded_checks=[positive_data_acceptance])

        check()

    for op in operations:
        for mode in GenerationMode:
            fuzz(op.as_strategy(generation_mode=mode), EXAMPLES)
        if "{job_id}" in op.path:  # random ids seldom name a job: each seeded one too
            for job_id in range(1, 6):
                fuzz(op.as_strategy(path_parameters={"job_id": job_id}), EXAMPLES // 4)


# ------------------------------------------------------------------------------------------- launcher


def test_studio_starts_and_stops_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scripts.studio`` starts ``scripts.api`` beside the app and stops it when the app exits; ``--no-api``
    does not start it."""
    from scripts import studio

    started: list[list[str]] = []
    stopped: list[list[str]] = []

    class Child:
        def __init__(self, argv: list[str], **_: object) -> None:
            self.argv, self.code = argv, None
            started.append(argv)

        def wait(self, timeout: float | None = None) -> int:
            self.code = 0
            return 0

        def poll(self) -> int | None:
            return self.code

        def send_signal(self, sig: int) -> None:
            stopped.append(self.argv)

    monkeypatch.setattr(studio.subprocess, "Popen", Child)
    monkeypatch.setattr(studio, "watch_command", lambda: None)
    monkeypatch.setattr(studio.signal, "signal", lambda *a: None)
    monkeypatch.setenv("VP_API_PORT", "9123")
    assert studio.main(["--no-sample", "--no-worker"]) == 0
    assert [a[1:] for a in started] == [["-m", "scripts.api", "--port", "9123"],
                                        ["-m", "streamlit", *started[1][3:]]]
    assert stopped == [started[0]]  # the app exited: the API is asked to stop (SIGINT), then waited for
    started.clear()
    assert studio.main(["--no-sample", "--no-worker", "--no-api", "--api-port", "1"]) == 0
    assert [a[2] for a in started] == ["streamlit"]

