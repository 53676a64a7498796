"""Process hygiene and leftovers (fast checks; the kill campaign is tests/system/test_kill.py).

Render processes die with their parent (the forkserver and the pool workers, ``PR_SET_PDEATHSIG``), a
normal exit leaves none behind, the forkserver survives the thread that started it, temp files of killed
writers are removed by the next write, and work-folder lock files do not pile up yet still exclude.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from core import atomic
from core.render.pool import die_with_parent
from core.render.workdir import work_lock, work_root

ROOT = Path(__file__).resolve().parents[2]
TAG_ENV = "VP_TEST_TAG"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")


# ------------------------------------------------------------------------------------------------ helpers


def tagged(tag: str) -> dict[int, tuple[int, str]]:
    """Live processes (zombies left out) whose environment holds ``VP_TEST_TAG=tag``: pid -> (ppid, cmdline)."""
    found = {}
    want = f"{TAG_ENV}={tag}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if want not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] not in (b"Z", b"X"):
            found[int(name)] = (int(fields[1]), cmd)
    return found


def wait_gone(tag: str, seconds: float) -> dict[int, tuple[int, str]]:
    """Poll until no process carries ``tag`` or ``seconds`` pass; returns what is still alive."""
    deadline = time.monotonic() + seconds
    while (alive := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def kill_tagged(tag: str) -> None:
    """Clean-up after a failed check: kill what carries ``tag`` (only processes this test started)."""
    for pid in tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def tagged_env(tag: str, **extra: str) -> dict[str, str]:
    return {**os.environ, TAG_ENV: tag, **extra}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def python(code: str, tag: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=tagged_env(tag), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


# ------------------------------------------------------------------------------------------------ atomic


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead, live = dead_pid(), os.getpid()
    final = tmp_path / "out.mp4"
    stale = [tmp_path / f".out.{dead}.partial.mp4", tmp_path / f".out.{dead}.partial.write-test",
             tmp_path / f".out.mp4.{dead}.0a1b2c3d.tmp"]
    kept = [tmp_path / f".out.{live}.partial.mp4",  # a writer that still runs
            tmp_path / f".other.{dead}.partial.mp4",  # another file's (left to its own next write)
            tmp_path / ".out.notapid.partial.mp4", tmp_path / "out.partial.mp4", tmp_path / f"out.{dead}.partial.mp4"]
    for p in stale + kept:
        p.write_bytes(b"x")
    assert sorted(atomic.remove_stale(tmp_path, final)) == sorted(stale)
    assert all(p.exists() for p in kept)
    assert atomic.remove_stale(tmp_path) == [tmp_path / f".other.{dead}.partial.mp4"]  # the whole folder


def test_atomic_writes_clear_their_own_stale_temp_files(tmp_path: Path) -> None:
    dead = dead_pid()
    (tmp_path / f".a.{dead}.partial.mp4").write_bytes(b"half")
    (tmp_path / f".b.json.{dead}.deadbeef.tmp").write_bytes(b"half")
    with atomic.atomic_path(tmp_path / "a.mp4") as tmp:
        tmp.write_bytes(b"whole")
    atomic.write_json(tmp_path / "b.json", {"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.json"]


def test_temp_writer_reads_our_names_only() -> None:
    assert atomic.temp_writer(atomic.temp_path(Path("/x/clip.v2.mkv"))) == ("clip.v2", os.getpid())
    assert atomic.temp_writer(Path(".clip.mkv.12.00ff00ff.tmp")) == ("clip.mkv", 12)
    for name in ("clip.mkv", ".clip.mkv", ".clip.12.partial.mp4.bak", ".clip.12.xyz.tmp"):
        assert atomic.temp_writer(Path(name)) is None, name


def test_pid_alive() -> None:
    assert atomic.pid_alive(os.getpid())
    assert not atomic.pid_alive(dead_pid())
    assert not atomic.pid_alive(0)


# ------------------------------------------------------------------------------------------------ locks


def test_work_lock_leaves_no_lock_file_and_clears_free_ones(studio_home: Path) -> None:
    root = work_root()
    root.mkdir(parents=True)
    free = root / ".0123456789abcdef0123.lock"
    free.write_bytes(b"")
    held = root / ".feedfacefeedfacefeed.lock"
    held.write_bytes(b"")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"fh = open({str(held)!r}, 'a'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        dead = dead_pid()
        (root / "abc").mkdir()
        (root / "abc" / f".chunk_0001.{dead}.partial.mp4").write_bytes(b"half")
        with work_lock("abc"):
            assert (root / ".abc.lock").exists()
            assert not free.exists()  # nobody held it
            assert held.exists()  # someone does
            assert not any((root / "abc").iterdir())  # the killed writer's partial chunk
        assert not (root / ".abc.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_work_lock_still_excludes(studio_home: Path) -> None:
    """Threads on one lock (flock is per open file, so they contend like processes): never two inside at
    once, though each holder removes the file it locked before letting go."""
    inside: list[int] = []
    overlaps: list[tuple[int, ...]] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            for _ in range(20):
                with work_lock("same"):
                    inside.append(i)
                    if len(inside) > 1:
                        overlaps.append(tuple(inside))
                    time.sleep(0.001)
                    inside.remove(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not overlaps
    assert not list(work_root().glob(".*.lock"))


def test_work_lock_waiter_relocks_a_replaced_file(studio_home: Path) -> None:
    """A waiter that locked the file its holder removed must not count as holding the lock."""
    root = work_root()
    root.mkdir(parents=True)
    path = root / ".j.lock"
    path.write_bytes(b"")
    old = open(path, "a")  # noqa: SIM115 (a second holder, released by hand)
    fcntl.flock(old, fcntl.LOCK_EX)
    entered = threading.Event()

    def waiter() -> None:
        with work_lock("j"):
            entered.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert not entered.is_set()
    path.unlink()  # what a holder does before letting go
    fresh = open(path, "a")  # noqa: SIM115 (a new holder of the new file at the path)
    fcntl.flock(fresh, fcntl.LOCK_EX)
    fcntl.flock(old, fcntl.LOCK_UN)
    old.close()
    time.sleep(0.3)
    assert not entered.is_set()  # it locked the removed file, saw that, and now waits on the new one
    fcntl.flock(fresh, fcntl.LOCK_UN)
    fresh.close()
    t.join(10)
    assert entered.is_set()


# ------------------------------------------------------------------------------------------------ processes


@linux_only
def test_die_with_parent_exits_when_the_parent_is_not_the_expected_one() -> None:
    proc = subprocess.run([sys.executable, "-c", "import os\nfrom core.render.pool import die_with_parent\n"
                           "die_with_parent(os.getppid() + 100000)\nprint('survived')"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "survived" not in proc.stdout
    assert die_with_parent(os.getppid()) is True or not sys.platform.startswith("linux")


#: a process that starts a 2-worker pool busy on endless tasks, prints the pids of its pool, and waits
_POOL = """
import sys, time
from multiprocessing import forkserver
from core.render.pool import LocalPool

def spin(n):
    while True:
        time.sleep(0.01)

if __name__ == "__main__":
    pool = LocalPool(2)
    futs = [pool.executor.submit(spin, i) for i in range(2)]
    time.sleep(0.5)
    print(forkserver._forkserver._forkserver_pid, *pool.executor._processes, flush=True)
    if sys.argv[1] == "exit":
        pool.close(kill=True)
        print("closed", flush=True)
        sys.exit(0)
    time.sleep(120)
"""


@linux_only
def test_pool_and_forkserver_die_with_a_killed_parent(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    script = tmp_path / "pool.py"
    script.write_text(_POOL)
    proc = subprocess.Popen([sys.executable, str(script), "wait"], cwd=ROOT, env=tagged_env(tag, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)
    try:
        server, *workers = map(int, proc.stdout.readline().split())
        alive = tagged(tag)
        assert {server, *workers} <= set(alive), alive
        assert all(alive[w][0] == server for w in workers) and alive[server][0] == proc.pid
        proc.kill()
        proc.wait()
        left = wait_gone(tag, 2.0)
        assert not left, f"outlived their parent by 2 s: {left}"  # forkserver, tracker and pool workers
    finally:
        proc.kill()
        kill_tagged(tag)


@linux_only
def test_a_normal_exit_leaves_no_process(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    script = tmp_path / "pool.py"
    script.write_text(_POOL)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as fo, open(err, "w") as fe:  # files, not pipes: reading a pipe to its end would wait
        proc = subprocess.run([sys.executable, str(script), "exit"], cwd=ROOT, stdout=fo, stderr=fe,  # for them
                              env=tagged_env(tag, PYTHONPATH=str(ROOT)), timeout=120)
    try:
        left = tagged(tag)  # at once, not "soon": the forkserver and the tracker were waited for
        assert proc.returncode == 0 and "closed" in out.read_text(), err.read_text()[-2000:]
        assert not left, left
        assert "leaked" not in err.read_text(), err.read_text()[-2000:]
    finally:
        kill_tagged(tag)


@linux_only
def test_the_forkserver_outlives_the_thread_that_started_it() -> None:
    """A render in a job thread (the queue worker, the studio) starts the forkserver; the death signal follows
    the forking *thread*, so the server is started from one that lives as long as the process."""
    tag = uuid.uuid4().hex
    code = """
import threading, time
from multiprocessing import forkserver
from core.render.pool import LocalPool

def job():
    pool = LocalPool(1)
    assert pool.executor.submit(abs, -3).result() == 3
    pool.close(kill=False)

for _ in range(2):
    t = threading.Thread(target=job)
    t.start()
    t.join()
    time.sleep(0.3)  # a server killed with the thread would be gone by now
    print(forkserver._forkserver._forkserver_pid, flush=True)
"""
    proc = python(code, tag)
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        first, second = out.split()
        assert first == second  # the same server served both jobs: it outlived the first job's thread
    finally:
        proc.kill()
        kill_tagged(tag)


@linux_only
def test_multiprocessing_temp_folders_of_killed_processes_are_removed(tmp_path: Path) -> None:
    """The forkserver's socket lives in a temp folder removed at exit; a killed process's is removed by the next."""
    from core.render.pool import TEMP_PREFIX

    tag = uuid.uuid4().hex
    script = tmp_path / "pool.py"
    script.write_text(_POOL)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = tagged_env(tag, PYTHONPATH=str(ROOT), TMPDIR=str(temp))
    try:
        proc = subprocess.Popen([sys.executable, str(script), "wait"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                text=True)
        proc.stdout.readline()
        killed = sorted(p.name for p in temp.iterdir())
        assert killed and all(n.startswith(f"{TEMP_PREFIX}{proc.pid}-") for n in killed), killed
        proc.kill()
        proc.wait()
        assert not wait_gone(tag, 2.0)
        assert sorted(p.name for p in temp.iterdir()) == killed  # nobody removed it: it was killed
        other = temp / f"{TEMP_PREFIX}{os.getpid()}-alive"  # a running process's is kept
        other.mkdir()
        done = subprocess.run([sys.executable, str(script), "exit"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert [p.name for p in temp.iterdir()] == [other.name]  # its own removed at exit, the killed one's too
    finally:
        kill_tagged(tag)
