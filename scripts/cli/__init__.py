"""The studio's command line: ``python -m scripts.cli COMMAND ...`` (see ``--help``).

A thin shell: parse arguments, build a job, call one core function, print the result.

Exit codes, the same for every command (:func:`main`): 0 done; 2 for anything the user gave (a file, model,
LUT, parameter or path: fix it and run again); 1 for a failure of ours (a bug, a crashed worker: the traceback
goes to the log file, never the terminal); 130 interrupted (run it again to resume); 1 and nothing said when
the reader of a pipe left (``| head``). Every error is one line on stderr, and never quotes the content of a
file the user did not mean to show.

This package holds the parser and that one error policy; each command lives, with the code that adds its
sub-parser, in the module of its group:

- :mod:`scripts.cli.render`: ``render``, ``preview``, ``hardware``
- :mod:`scripts.cli.measure`: ``probe``, ``analyze``, ``metrics``
- :mod:`scripts.cli.looks`: ``styles``, ``presets``, ``lut``
- :mod:`scripts.cli.models`: ``models``, ``download-model``, ``train``
- :mod:`scripts.cli.learn`: ``feedback``, ``autotune``
- :mod:`scripts.cli.queue`: ``worker``, ``watch``, ``queue``
- :mod:`scripts.cli.args`: options several commands share (``--style``, ``--preset``, ``--set``, tracks)

A command's function raises; only :func:`main` turns an error into an exit code. The command modules import
nothing heavy at the top, so that ``import scripts.cli`` stays fast and loads no torch.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from core.errors import StudioError
from scripts.cli import learn, looks, measure, models, queue, render

EXIT_USER, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
#: An OSError with one of these on a path is about that path (the user's to fix): exit 2, not a failure of ours.
PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                         errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST, errno.ENXIO, errno.ENOSPC, errno.EDQUOT,
                         errno.EFBIG, errno.ETXTBSY})

#: What adds each command's sub-parser, in the order ``--help`` lists the commands (the order of the CLI's
#: one-file days, so it interleaves the modules).
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    render.add_render_parser, render.add_preview_parser, measure.add_probe_parser, render.add_hardware_parser,
    measure.add_analyze_parser, looks.add_styles_parser, looks.add_presets_parser, models.add_models_parser,
    models.add_download_model_parser, models.add_train_parser, measure.add_metrics_parser, looks.add_lut_parser,
    learn.add_feedback_parser, learn.add_autotune_parser, queue.add_worker_parser, queue.add_watch_parser,
    queue.add_queue_parser,
)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``error: PROG: MESSAGE (see PROG --help)``, exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m scripts.cli", description="Video Producer studio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to the console")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in COMMANDS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (see the module docstring); never raises, never prints a
    traceback unless ``-v`` asks for one.

    stdout is flushed here, not at interpreter exit: a block-buffered pipe whose reader left (``cli queue events
    7 | head``) otherwise raised its BrokenPipeError after ``main`` returned, as an "Exception ignored" traceback
    and exit 120. A reader that left is exit 1 with nothing on stderr, from the command or from ``--help``."""
    try:
        try:
            return _run(argv)
        finally:  # a SystemExit of argparse (--help, a bad option) passes here too
            sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_FAILED


def _run(argv: list[str] | None) -> int:
    if _renders_here(sys.argv[1:] if argv is None else argv):
        from core.render.pool import warm_up

        warm_up()  # the workers' forkserver imports the pipeline while the parsers' own imports run (~0.3 s)
    args = build_parser().parse_args(argv)  # a bad option or value: one line and exit 2 (_Parser.error)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USER
    try:
        from core.logging_config import setup_logging

        setup_logging(args.verbose)
        return args.func(args)
    except StudioError as exc:
        return _fail(EXIT_USER if exc.user_error else EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted; run the same command again to resume")
    except BrokenPipeError:  # `cli ... | head`: the reader left; nothing more to say, and nowhere to say it
        _drop_stdout()
        return EXIT_FAILED
    except OSError as exc:  # a path the user gave that we could not use, caught nowhere nearer
        if exc.errno in PATH_ERRNOS and exc.filename is not None:
            return _fail(EXIT_USER, f"{exc.filename}: {exc.strerror or type(exc).__name__}")
        return _internal(exc, args.verbose)
    except Exception as exc:
        return _internal(exc, args.verbose)


def _renders_here(argv: list[str]) -> bool:
    """Whether the command line asks for a render on this machine's worker pool (no ``--executor`` elsewhere):
    its start-up is the whole gap to FFmpeg on a short clip, so the workers start before anything else."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "render":
        return False
    for i, a in enumerate(argv):
        where = a.split("=", 1)[1] if a.startswith("--executor=") else argv[i + 1] if a == "--executor" and \
            i + 1 < len(argv) else None
        if where is not None and where != "local":
            return False
    return True


def _fail(code: int, message: str) -> int:
    """Print ``error: MESSAGE`` as one line (a message spanning lines is joined) and return ``code``."""
    line = " ".join(message.split())
    try:
        print(line if code == EXIT_INTERRUPTED else f"error: {line}", file=sys.stderr)
    except OSError:  # stderr itself is gone: the exit code still tells
        pass
    return code


def _internal(exc: BaseException, verbose: bool) -> int:
    """A failure of ours: the traceback to the log file (and to the console with ``-v``), one line here.
    The line names only the exception's type: its text may quote a file the user never meant to show."""
    import logging
    import traceback

    record = logging.getLogger("scripts.cli").makeRecord(
        "scripts.cli", logging.ERROR, __file__, 0, "unexpected %s", (type(exc).__name__,),
        (type(exc), exc, exc.__traceback__))
    logged = [h for h in logging.getLogger().handlers
              if isinstance(h, logging.FileHandler) and getattr(h, "_studio", False)]  # ours, not a test's
    for handler in logged:
        handler.handle(record)
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    where = f"; the traceback is in {logged[0].baseFilename}" if logged else ""
    return _fail(EXIT_FAILED, f"internal error ({type(exc).__name__}), not caused by your input{where}")


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit does not raise BrokenPipeError a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (captured, closed): nothing to flush at exit either
        pass
