"""A job's progress events as Server-Sent Events: in order, each with its ``seq`` as the event id.

Why SSE rather than a websocket: one long GET that curl, a browser's ``EventSource`` and any HTTP client can
read, with reconnection built into the protocol: a client sends back the last id it saw (``Last-Event-ID``)
and the stream goes on from the next event, since every event is kept in the queue (``JobQueue.events``).

Wire format (one blank line ends each message)::

    id: 7
    event: progress
    data: {"seq": 7, "time": "...", "stage": "render", "percent": 41.7, "fps": 88.1, "message": "20/48 frames", ...}

    event: end
    data: {"job": 3, "state": "done"}

``end`` (no id, so a reconnect still resumes after the last progress event) comes once the job is done,
failed or cancelled and every event before it was sent; then the server closes the stream. A comment line
(``: keep-alive``) goes out every :data:`KEEPALIVE_S` seconds of silence, so proxies and clients that time out
idle connections keep it open.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from core.studio.queue import Event, JobQueue

from .schemas import EventOut

#: states a job leaves only when a user retries it: the stream ends there
FINAL = ("done", "failed", "cancelled")
#: how often the stream looks for new events (the worker writes at most two a second)
POLL_S = 0.25
KEEPALIVE_S = 15.0
#: the reconnection delay a client's EventSource should use, in ms
RETRY_MS = 2000


def message(event: Event) -> str:
    """One event as an SSE message (``id``, ``event: progress``, one ``data`` line of JSON)."""
    data = EventOut.of(event).model_dump_json()
    return f"id: {event.seq}\nevent: progress\ndata: {data}\n\n"


async def job_events(queue: JobQueue, job_id: int, after: int = 0, timeout_s: float | None = None,
                     poll_s: float = POLL_S) -> AsyncIterator[str]:
    """The SSE messages of job ``job_id`` with ``seq > after``, then new ones as they come, until the job
    reaches a final state (an ``end`` message) or ``timeout_s`` seconds passed (the stream just stops: the
    client reconnects with ``Last-Event-ID`` to go on). Database reads run in a thread: a write lock held
    by a worker must not stall the server's event loop."""
    start = last_out = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"
    while True:
        # The state before the events: the transition to a final state writes its event in the same
        # transaction, so once the state read is final, the events read next hold every event there is.
        job = await run_in_threadpool(queue.get, job_id)
        events = await run_in_threadpool(queue.events, job_id, after)
        for event in events:
            yield message(event)
            after = event.seq
        now = time.monotonic()
        if events:
            last_out = now
        if job.state in FINAL:
            yield f"event: end\ndata: {json.dumps({'job': job_id, 'state': job.state})}\n\n"
            return
        if timeout_s is not None and now - start >= timeout_s:
            return
        if now - last_out >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_out = now
        await asyncio.sleep(poll_s if timeout_s is None else min(poll_s, max(0.0, start + timeout_s - now)))
