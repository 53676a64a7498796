"""Start the studio: sample media, a background worker, the Streamlit app at http://127.0.0.1:8501 and the
JSON API at http://127.0.0.1:8502.

``python -m scripts.studio [--port N] [--lan | --address ADDR] [--no-worker] [--no-sample] [--no-api]
[--api-port N]`` (``make run``). The worker (``python -m scripts.cli worker``) runs queued jobs; it is stopped
when the app exits, and any job it was running resumes from its checkpoint next time. The port may also come
from ``VP_PORT``. The API (``python -m scripts.api``, see :mod:`app.api.server`) listens on this machine only,
even with ``--lan`` (its bearer token would cross the network in clear), on ``VP_API_PORT`` or 8502; its token
is in ``$VP_HOME/api_token``. It is stopped with the app too; a port already taken stops only the API.
A damaged studio database is moved aside on start and a new one made with what can be read
(:func:`core.studio.repair.repair`), before anything opens it: the studio starts instead of failing on every page.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_NAME = "sample_640x360.mp4"


def ensure_sample() -> Path:
    """The demo's synthetic sample clip in ``$VP_HOME/samples`` (a default media folder), made once."""
    from core.paths import studio_home
    from core.video.synthetic import ClipSpec, make_clip

    path = studio_home() / "samples" / SAMPLE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"making a sample clip: {path}", file=sys.stderr)
        make_clip(path, ClipSpec(width=640, height=360, frames=150, fps=Fraction(25), audio=True, cut_at=90, gop=25,
                                 seed=7))
    return path


def check_database() -> None:
    """Repair a damaged ``studio.db`` before the worker and the pages open it; say so in one line. A database
    that cannot even be checked (a full disk) is left alone with a warning: the pages show what they can."""
    from core.errors import StudioError
    from core.studio.repair import repair

    try:
        report = repair()
    except StudioError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return
    if report.moved_to is not None:
        print(f"studio: {report.line()}", file=sys.stderr)


def streamlit_command(port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"),
            "--server.port", str(port), "--server.address", address, "--browser.serverAddress", address]


def worker_command() -> list[str]:
    return [sys.executable, "-m", "scripts.cli", "worker"]


def api_command(port: int) -> list[str]:
    return [sys.executable, "-m", "scripts.api", "--port", str(port)]


def watch_command() -> list[str] | None:
    """``cli watch`` over the folders of ``$VP_HOME/watch.yaml`` when the Settings page enabled them."""
    from core.studio.watch import load_watch_settings

    cfg = load_watch_settings()
    return [sys.executable, "-m", "scripts.cli", "watch"] if cfg.enabled and cfg.folders else None


def _stop(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """Ask a child to stop (SIGINT: the worker releases its job to resume later), then insist."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.studio", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("VP_PORT", "8501")))
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--lan", action="store_true", help="listen on every interface (others on the LAN can connect)")
    where.add_argument("--address", default="127.0.0.1", help="address to listen on (default: this machine only)")
    ap.add_argument("--no-worker", action="store_true", help="do not start a background worker")
    ap.add_argument("--no-sample", action="store_true", help="do not make the sample clip")
    ap.add_argument("--no-api", action="store_true", help="do not start the JSON API")
    ap.add_argument("--api-port", type=int, default=int(os.environ.get("VP_API_PORT") or 8502),
                    help="the JSON API's port on 127.0.0.1 (default 8502, or VP_API_PORT)")
    args = ap.parse_args(argv)
    address = "0.0.0.0" if args.lan else args.address
    if address not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving the studio on {address}: anyone who can reach this machine can use it",
              file=sys.stderr)
    check_database()
    if not args.no_sample:
        ensure_sample()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the children too (the finally below)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    worker = None if args.no_worker else subprocess.Popen(worker_command(), cwd=ROOT, env=env)
    watching = watch_command()
    watcher = subprocess.Popen(watching, cwd=ROOT, env=env) if watching and not args.no_worker else None
    api = None if args.no_api else subprocess.Popen(api_command(args.api_port), cwd=ROOT, env=env)
    app = subprocess.Popen(streamlit_command(args.port, address), cwd=ROOT, env=env)
    print(f"studio: http://{'127.0.0.1' if address == '0.0.0.0' else address}:{args.port}  (Ctrl-C to stop)",
          file=sys.stderr)
    try:
        return app.wait()
    except KeyboardInterrupt:
        _stop(app)
        return 0
    finally:
        _stop(app)
        _stop(api)
        _stop(watcher)
        _stop(worker)


if __name__ == "__main__":
    sys.exit(main())
