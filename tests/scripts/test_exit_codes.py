"""One exit-code convention for every command: 2 for anything the user gave (file, model, LUT, parameter,
path), 1 for a failure of ours; one ``error:`` line on stderr, never a traceback, never a file's content.

Each command runs in-process through :func:`scripts.cli.main` with a bad input of each kind it takes; a test
holds that every command of the parser has a case here, so a new command comes with its own. A pipe closed
by the reader (``| head``) runs in a subprocess: that is where Python's exit flush would raise again.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.color import write_cube
from core.video.synthetic import ClipSpec, make_clip
from scripts.cli import EXIT_FAILED, EXIT_USER, build_parser, looks, main

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: Text of a "private" file the user never meant to show: no error line may contain it.
SECRET = "s3cr3t-Pa55word"


def invert_model(path: Path, h: int | str = "H", w: int | str = "W") -> Path:
    """An NCHW float32 model ``y = 255 - x`` with fixed (ints) or dynamic (names) spatial axes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, h, w])
    c = helper.make_tensor("c", TensorProto.FLOAT, [], [255.0])
    graph = helper.make_graph([helper.make_node("Sub", ["c", "x"], ["y"])], "invert", [x], [y], initializer=[c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and bad inputs of every kind, made once."""
    root = tmp_path_factory.mktemp("exit_codes")
    secret = root / "private.txt"
    secret.write_text(f"root:{SECRET}:19000:0:99999:7:::\n")
    leak = root / "leak.cube"
    leak.symlink_to(secret)
    binary = root / "binary.cube"
    binary.write_bytes(bytes(range(256)) * 4)
    not_video = root / "not_video.mp4"
    not_video.write_text(f"{SECRET}\n")
    not_model = root / "not_model.onnx"
    not_model.write_text(f"{SECRET}\n")
    a_file = root / "a_file"
    a_file.write_text("a plain file, used as a folder")
    import cv2

    image = root / "image.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 128, np.uint8))
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, 2, dtype=np.float32)] * 3, indexing="ij"), -1)
    return {
        "clip": make_clip(root / "clip.mp4", ClipSpec(width=64, height=48, frames=6)),
        "tiny": make_clip(root / "tiny.mp4", ClipSpec(width=4, height=4, frames=6)),
        "thin": make_clip(root / "thin.mp4", ClipSpec(width=2048, height=40, frames=4, gop=4)),
        "leak": leak, "binary": binary, "not_video": not_video, "not_model": not_model,
        "model_1x1": invert_model(root / "one_pixel.onnx", 1, 1),
        "model_bad_output": invert_model(root / "fixed.onnx", 32, 32),
        "cube": write_cube(root / "identity.cube", grid), "image": image, "a_file": a_file,
        "missing": root / "missing.mp4",
    }


#: (case id, argv with {placeholders} from ``files`` and {tmp}, expected exit code, text the error line holds)
CASES: list[tuple[str, list[str], int, str]] = [
    ("render-missing", ["render", "{missing}", "-o", "{tmp}/o.mp4"], 2, "no such file"),
    ("render-not-video", ["render", "{not_video}", "-o", "{tmp}/o.mp4"], 2, "not a video"),
    ("render-bad-model", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--style", "neural", "--set", "model={not_model}"],
     2, "not an ONNX file"),
    ("render-1x1-model", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--style", "neural", "--set", "model={model_1x1}"],
     2, "one_pixel.onnx: its fixed input is 1x1 px"),
    ("render-tiny-tile", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--style", "neural", "--set", "tile=2"],
     2, "tile 2 is too small"),
    ("render-leaking-lut", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--style", "cinematic", "--set", "lut={leak}"],
     2, "unsupported LUT format"),  # the link resolves to private.txt: its name may show, its text never
    ("render-binary-lut", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--style", "cinematic", "--set",
                           "lut={binary}"], 2, "binary data"),
    ("render-tiny-frames", ["render", "{tiny}", "-o", "{tmp}/o.mp4", "--style", "pencil"], 2,
     "4x4 frames are too small for style 'pencil' (at least 16x16)"),
    ("render-thin-frames", ["render", "{thin}", "-o", "{tmp}/o.mp4", "--style", "cartoon"], 2,
     "2048x40 frames are too thin"),
    ("render-unknown-key", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--set", "bogus=1"], 2, "unknown key"),
    ("render-bad-option", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--workers", "x"], 2, "invalid int value"),
    ("render-zero-workers", ["render", "{clip}", "-o", "{tmp}/o.mp4", "--workers", "0"], 2, "at least 1"),
    ("render-output-under-a-file", ["render", "{clip}", "-o", "{a_file}/o.mp4"], 2, "a_file"),
    ("preview-tiny-frames", ["preview", "{tiny}", "-o", "{tmp}/p.png"], 2, "too small"),
    ("preview-bad-image-type", ["preview", "{clip}", "-o", "{tmp}/p.txt"], 2, "unsupported image type"),
    ("probe-not-video", ["probe", "{not_video}"], 2, "not a video"),
    ("hardware-bad-option", ["hardware", "--bogus"], 2, "unrecognized arguments"),
    ("analyze-not-video", ["analyze", "{not_video}", "-q"], 2, "not a video"),
    ("analyze-bad-option", ["analyze", "{clip}", "--every", "x"], 2, "invalid int value"),
    ("styles-bad-option", ["styles", "--bogus"], 2, "unrecognized arguments"),
    ("presets-unknown", ["presets", "show", "nothere"], 2, "unknown preset"),
    ("presets-bad-action", ["presets", "bogus"], 2, "invalid choice"),
    ("models-unknown", ["models", "info", "nothere"], 2, "not registered"),
    ("models-bad-spec", ["models", "activate", "x"], 2, "NAME@VERSION"),
    ("download-model-missing", ["download-model", "{missing}", "--sha256", "0" * 64, "--name", "m", "-q"], 2,
     "does not exist"),
    ("download-model-checksum", ["download-model", "{not_model}", "--sha256", "0" * 64, "--name", "m", "-q"], 2,
     "checksum mismatch"),
    ("download-model-bad-sha", ["download-model", "{not_model}", "--sha256", "00", "--name", "m"], 2, "64 hex"),
    ("train-missing-pairs", ["train", "--pairs", "{missing}", "--base", "compact"], 2, "does not exist"),
    ("metrics-not-video", ["metrics", "{clip}", "{not_video}", "-q"], 2, "not a video"),
    ("metrics-tiny-frames", ["metrics", "{tiny}", "{tiny}", "-q"], 2, "4x4 frames are too small to measure"),
    ("autotune-tiny-frames", ["autotune", "{tiny}", "--style", "pencil", "-q"], 2, "4x4 frames are too small"),
    ("metrics-jsonl-under-a-file", ["metrics", "{clip}", "{clip}", "-q", "--jsonl", "{a_file}/m.jsonl"], 2, "a_file"),
    ("lut-check-leak", ["lut", "check", "{leak}"], 2, "leak.cube:1:"),
    ("lut-check-binary", ["lut", "check", "{binary}"], 2, "binary data"),
    ("lut-check-format", ["lut", "check", "{not_video}"], 2, "unsupported LUT format"),
    ("lut-apply-output-under-a-file", ["lut", "apply", "{cube}", "{image}", "-o", "{a_file}/o.png"], 2, "a_file"),
    ("lut-apply-not-image", ["lut", "apply", "{cube}", "{not_video}", "-o", "{tmp}/o.png"], 2, "not_video"),
    ("feedback-list-bad-option", ["feedback", "list", "--bogus"], 2, "unrecognized arguments"),
    ("feedback-export-under-a-file", ["feedback", "export", "{a_file}/f.jsonl"], 2, "a_file"),
    ("feedback-approve-bad-id", ["feedback", "approve", "abc", "A"], 2, "expected a record id"),
    ("feedback-fit-bad-option", ["feedback", "fit", "--bogus"], 2, "unrecognized arguments"),
    ("autotune-not-video", ["autotune", "{not_video}", "-q"], 2, "not a video"),
    ("autotune-bad-param", ["autotune", "{clip}", "--param", "bad", "-q"], 2, "--param 'bad'"),
    ("worker-bad-slots", ["worker", "--slots", "-1", "--once"], 2, "cpu_slots"),
    ("watch-missing-folder", ["watch", "{missing}"], 2, "not a folder"),
    ("queue-add-render-missing", ["queue", "add", "render", "{missing}", "-o", "{tmp}/o.mp4"], 2, "no such file"),
    ("queue-add-train-bad-option", ["queue", "add", "train", "--pairs", "p", "--base", "b", "--epochs", "x"], 2,
     "invalid int value"),
    ("queue-add-autotune-missing", ["queue", "add", "autotune", "{missing}"], 2, "no such file"),
    ("queue-add-train-missing-pairs", ["queue", "add", "train", "--pairs", "{missing}", "--base", "b"], 2,
     "pairs folder not found"),
    ("queue-list-bad-option", ["queue", "list", "--bogus"], 2, "unrecognized arguments"),
    ("queue-events-bad-id", ["queue", "events", "x"], 2, "invalid int value"),
    ("queue-cancel-unknown", ["queue", "cancel", "999"], 2, "no job 999"),
    ("queue-pause-unknown", ["queue", "pause", "999"], 2, "no job 999"),
    ("queue-resume-unknown", ["queue", "resume", "999"], 2, "no job 999"),
    ("queue-retry-unknown", ["queue", "retry", "999"], 2, "no job 999"),
    ("queue-repair-bad-option", ["queue", "repair", "--bogus"], 2, "unrecognized arguments"),
    ("no-command", [], 2, "required"),
]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every leaf command of the parser, as its words (``("queue", "add", "render")``)."""
    out = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                leaves = _commands(sub, (*prefix, name))
                out |= leaves or {(*prefix, name)}
    return out


def _fill(argv: list[str], files: dict[str, Path], tmp: Path) -> list[str]:
    return [a.format(tmp=tmp, **files) for a in argv]


def _error_line(err: str) -> str:
    """The one ``error:`` line of stderr (commands may say what they start before it; nothing after it)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def run(argv: list[str]) -> int:
    """``main``'s exit code; argparse reports a bad option itself, by SystemExit (``python -m`` exits with it)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_every_command_has_a_case() -> None:
    missing = [c for c in _commands(build_parser()) if not any(tuple(argv[:len(c)]) == c for _, argv, _, _ in CASES)]
    assert not missing, f"commands without a bad-input case: {sorted(missing)}"


@pytest.mark.parametrize(("argv", "code", "text"), [pytest.param(a, c, t, id=i) for i, a, c, t in CASES])
def test_bad_input_exit_code_and_one_line(argv: list[str], code: int, text: str, files: dict[str, Path],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got = run(_fill(argv, files, tmp_path))
    err = capsys.readouterr().err
    line = _error_line(err)
    assert got == code, err
    assert text in line, line
    assert "Traceback" not in err and SECRET not in err
    assert not (tmp_path / "o.mp4").exists()


def test_unexpected_error_is_one_line_exit_1_with_the_traceback_in_the_log(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], studio_home: Path) -> None:
    """A bug of ours: exit 1, one line naming the type and the log, never the exception's text (it may quote a
    file); the traceback is in the log file."""

    def boom(args: argparse.Namespace) -> int:
        raise KeyError(f"{SECRET} from a file")

    monkeypatch.setattr(looks, "cmd_styles", boom)
    try:
        assert main(["styles"]) == EXIT_FAILED
    finally:
        for h in logging.getLogger().handlers:
            h.flush()
    line = _error_line(capsys.readouterr().err)
    assert "internal error (KeyError)" in line and SECRET not in line
    log = studio_home / "logs" / "studio.log"
    assert str(log) in line
    text = log.read_text()
    assert "Traceback" in text and "boom" in text


@pytest.mark.parametrize(("exc", "code", "text"), [
    (PermissionError(13, "Permission denied", "/srv/clips/private.mp4"), EXIT_USER,
     "error: /srv/clips/private.mp4: Permission denied"),
    (IsADirectoryError(21, "Is a directory", "/srv/out"), EXIT_USER, "error: /srv/out: Is a directory"),
    (OSError(5, "Input/output error"), EXIT_FAILED, "error: internal error (OSError)"),
])
def test_os_errors_on_a_path_are_the_users(exc: OSError, code: int, text: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(looks, "cmd_styles", fail)
    assert main(["styles"]) == code
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(text), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode: no permission error to see")
def test_unreadable_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "locked.mp4", ClipSpec(width=64, height=48, frames=4))
    clip.chmod(0)
    assert main(["probe", str(clip)]) == EXIT_USER
    assert "locked.mp4" in _error_line(capsys.readouterr().err)


def test_multiline_studio_error_prints_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from core.errors import BadModelError

    def fail(args: argparse.Namespace) -> int:
        raise BadModelError("model m.onnx: ONNX Runtime cannot load it:\n  node 3\n  shape mismatch")

    monkeypatch.setattr(looks, "cmd_styles", fail)
    assert main(["styles"]) == EXIT_USER
    line = _error_line(capsys.readouterr().err)
    assert line == "error: model m.onnx: ONNX Runtime cannot load it: node 3 shape mismatch"


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``cli styles --json | head -c 1``: the reader leaves; no traceback, no "Exception ignored" at exit."""
    env = {**os.environ, "VP_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "styles", "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has written a byte: its first write meets a pipe with no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_FAILED, err
    assert err == "", err


@pytest.mark.parametrize("argv", [["queue", "list"], ["--help"]])
def test_closed_pipe_is_quiet_when_stdout_is_block_buffered(argv: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env |= {"VP_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_FAILED, err
    assert err == "", err
