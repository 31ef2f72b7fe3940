"""Children are always reaped, including ones that ignore SIGTERM."""

from __future__ import annotations

import sys
import time

from ros3d_agent.utils.processes import ManagedProcess

IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def test_terminated_child_is_reaped():
    with ManagedProcess([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None  # reaped: a return code exists


def test_child_ignoring_sigterm_is_killed():
    proc = ManagedProcess([sys.executable, "-c", IGNORE_TERM], terminate_timeout_s=0.5)
    with proc:
        assert proc.popen.stdout.readline().strip() == "up"
        t0 = time.monotonic()
    assert proc.poll() == -9
    assert time.monotonic() - t0 < 5


def test_exit_code_and_output_are_kept():
    with ManagedProcess([sys.executable, "-c", "print('hello'); raise SystemExit(3)"]) as proc:
        proc.popen.wait(timeout=10)
    assert proc.stop() == 3
    assert "hello" in proc.output()
