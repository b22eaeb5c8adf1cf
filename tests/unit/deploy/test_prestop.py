"""The worker preStop hook against real processes titled like Ray Train workers.

The processes signalled here carry a title unique to this test run: other people's Ray Train
workers may be running on the same machine, and the hook must never be pointed at them from a test.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from streamguard.deploy import prestop

TITLE = f"sgtest-{uuid.uuid4().hex[:8]}::RayTrainWorker"

# A stand-in for a Ray Train worker: its command line starts with the process title, and on
# SIGTERM it "checkpoints" (writes a marker) and exits, as the training loop does.
WORKER = """
import signal, sys, time
def on_term(*_):
    time.sleep(0.3)  # the step in flight
    open(sys.argv[1], "w").write("checkpointed")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(120)
"""
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"


def spawn(title: str, code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(["bash", "-c", f'exec -a "{title}" "{sys.executable}" -c "$0" "$@"', code, *args],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture()
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:  # only the processes this test started, by pid
        if p.poll() is None:
            p.kill()
        p.wait(10)


def test_the_default_title_matches_ray_train_workers_only(tmp_path):
    # A fake /proc: matching reads only cmdline files, so no real process is involved.
    for pid, cmdline in {"11": b"ray::RayTrainWorker.train_fn\0\0", "12": b"ray::RayTrainWorker\0",
                         "13": b"ray::IDLE\0", "14": b"python\0ray::RayTrainWorker\0", "self": b"x"}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    (tmp_path / "15").mkdir()  # exited between listing and reading
    assert prestop.find_processes(prestop.TRAIN_WORKER_TITLE, proc=tmp_path) == [11, 12]


def test_sigterm_reaches_training_workers_and_waits_for_the_checkpoint(procs, tmp_path):
    markers = [tmp_path / f"w{i}" for i in range(2)]
    procs += [spawn(f"{TITLE}.train_fn", WORKER, str(m)) for m in markers]
    bystander = spawn(f"{TITLE[:-len('RayTrainWorker')]}IDLE", WORKER, str(tmp_path / "idle"))
    procs.append(bystander)
    assert prestop.find_processes(TITLE) == sorted(p.pid for p in procs[:2])
    start = time.monotonic()
    assert prestop.stop_and_wait(TITLE, wait_s=20) == []
    assert time.monotonic() - start < 10
    assert all(m.read_text() == "checkpointed" for m in markers)
    assert all(p.wait(5) == 143 for p in procs[:2])
    assert bystander.poll() is None and not (tmp_path / "idle").exists()


def test_gives_up_after_the_wait(procs):
    procs.append(spawn(TITLE, STUBBORN))
    start = time.monotonic()
    left = prestop.stop_and_wait(TITLE, wait_s=1.0, poll_s=0.1)
    assert left == [procs[0].pid] and 0.9 < time.monotonic() - start < 5


def test_main_never_fails_the_hook(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")  # no `ray` CLI: the drain is skipped with a message
    assert prestop.main(["--wait-seconds", "1", "--title", f"{TITLE}-none"]) == 0
    err = capsys.readouterr().err
    assert "ray drain-node did not run" in err and "training workers stopped" in err
