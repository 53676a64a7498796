"""Render checkpoints: which chunks of a job are finished, as atomically written JSON.

The checkpoint lives in the job's work folder, which is named by the job hash, so a changed parameter,
input or model gets a fresh folder. A chunk counts as done only when its file exists and still holds
the number of frames recorded for it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import atomic
from core.video.probe import count_frames

log = logging.getLogger(__name__)

VERSION = 1


@dataclass
class Checkpoint:
    """Progress of one job: its chunk plan, and ``done`` mapping a chunk id to its record."""

    path: Path
    job_hash: str
    output: str = ""
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: the chunk plan as [id, start, stop, preroll, carry] rows (older checkpoints: no carry column);
    #: a resumed job must keep the plan it started with
    plan: list[list[int]] = field(default_factory=list)

    @classmethod
    def open(cls, work_dir: Path, job_hash: str, output: str) -> Checkpoint:
        """Load the job's checkpoint, or start an empty one when absent, unreadable or for another job."""
        path = work_dir / "checkpoint.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path, job_hash, output)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable checkpoint (%s); starting fresh", path, exc)
            return cls(path, job_hash, output)
        if data.get("version") != VERSION or data.get("job_hash") != job_hash:
            return cls(path, job_hash, output)
        done = {int(k): v for k, v in data.get("done", {}).items()}
        return cls(path, job_hash, output, done, [list(map(int, row)) for row in data.get("plan", [])])

    def verified(self) -> set[int]:
        """Ids of done chunks whose files are still there with the recorded frame count (a chunk whose every
        frame was lost has no file)."""
        ok = set()
        for cid, rec in self.done.items():
            f = self.path.parent / rec["file"]
            if not rec["frames"] or (f.is_file() and count_frames(f) == rec["frames"]):
                ok.add(cid)
            else:
                log.warning("%s: chunk %d failed verification; it will be rendered again", self.path, cid)
        return ok

    def mark_done(self, chunk_id: int, record: dict[str, Any]) -> None:
        self.done[chunk_id] = record
        self.save()

    def save(self) -> None:
        atomic.write_json(self.path, {
            "version": VERSION,
            "job_hash": self.job_hash,
            "output": self.output,
            "plan": self.plan,
            "done": {str(k): v for k, v in sorted(self.done.items())},
        })
