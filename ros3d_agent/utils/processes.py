"""Child processes that are always reaped.

Every process the package starts (demo peers, test nodes, replay players) goes through
``ManagedProcess``: on exit it is terminated, waited for with a timeout, and killed if it
ignored SIGTERM (an rclpy process blocked in its wait set sometimes does). Processes are
only ever signalled through their own Popen handle, never looked up by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence


@dataclass
class ManagedProcess:
    """A context manager around ``subprocess.Popen`` that guarantees the child is reaped."""

    argv: Sequence[str]
    env: dict[str, str] | None = None
    cwd: str | Path | None = None
    stdout: int | IO | None = subprocess.PIPE
    stderr: int | IO | None = subprocess.STDOUT
    terminate_timeout_s: float = 5.0
    kill_timeout_s: float = 5.0
    popen: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> "ManagedProcess":
        self.popen = subprocess.Popen(
            list(self.argv), env=self.env, cwd=self.cwd, stdout=self.stdout, stderr=self.stderr,
            stdin=subprocess.DEVNULL, text=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, "process not started"
        return self.popen.pid

    def poll(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self) -> int | None:
        """Terminate, wait, kill if needed; returns the exit code (None if it never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=self.terminate_timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=self.kill_timeout_s)
        return self.popen.returncode

    def output(self) -> str:
        """The child's captured output; only meaningful after ``stop``."""
        if self.popen is None or self.popen.stdout is None:
            return ""
        try:
            return self.popen.stdout.read() or ""
        except ValueError:  # already closed
            return ""

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def python_module_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter (same venv)."""
    return [sys.executable, "-m", module, *args]


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment plus overrides, for children that must share our DDS domain."""
    env = dict(os.environ)
    env.update(overrides)
    return env
