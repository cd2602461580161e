"""
procs.py - processes the tests own: bounded waits, free ports, temporary directories,
Process (a child with its log in a file) and Tool (a background tool printing JSON).

Only processes started here are signalled, by their pid; every wait is bounded and a
missed bound raises HarnessError with what was expected.
"""

import atexit
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from paths import KAFKA_PY

class HarnessError(AssertionError):
    """A prerequisite is missing or a process did not behave: the test fails, never skips."""


def require_file(path, what, executable=False):
    if not os.path.isfile(path):
        raise HarnessError(f"{what} not found at {path}: build first "
                           f"(cmake -S . -B build && cmake --build build)")
    if executable and not os.access(path, os.X_OK):
        raise HarnessError(f"{what} at {path} is not executable")


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate until it returns a true value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral
    range so that it is still free when a test starts a listener there again (kafka.py's
    free_ports says why)."""
    return kafka_module().free_ports(1)[0]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# Clock ticks per second: the unit of /proc/<pid>/stat's CPU times.
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, tid=None):
    """CPU seconds (utime + stime, from /proc) process pid used, all its threads, or only
    its thread tid; None once it is gone. The benchmarks' one reading of CPU time."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def unique(prefix):
    """A name unique to this run: Kafka topics, client ids, group ids."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_tempdir(prefix):
    """A new directory under the system's temp directory, removed with everything in it when
    this process ends (MQK_KEEP_TMP=1 keeps them, to look at after a failure). World-readable
    and traversable: mosquitto drops to user mosquitto when started as root."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    if os.environ.get("MQK_KEEP_TMP", "") in ("", "0"):
        atexit.register(shutil.rmtree, d, True)
    return d


_kafka_module = None


def kafka_module():
    """tests/kafka/kafka.py, imported by path (a `kafka` package elsewhere must not win)."""
    global _kafka_module
    if _kafka_module is None:
        require_file(KAFKA_PY, "tests/kafka/kafka.py")
        spec = importlib.util.spec_from_file_location("mqk_kafka_cluster", KAFKA_PY)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        _kafka_module = mod
    return _kafka_module


# ---- processes ---------------------------------------------------------------------

# Every Process started: the log dump of a failed test shows those that were running
# during it.
ALL = []


class Process:
    """A child process with its output in a file; stop() is SIGTERM, bounded wait, SIGKILL."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, close_fds=True)
        self.pid = self.proc.pid
        self.returncode = None
        self.stopped_at = None
        # Under valgrind, mosquitto (which blocks SIGTERM outside epoll_wait, as all
        # librdkafka threads do) now and then loses a SIGTERM: valgrind's signal
        # machinery, not mosquitto's (200 of 200 without valgrind exit at once). Resend.
        self.resend_term = False
        ALL.append(self)

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout, flags=re.M):
        """Waits until the output matches the regex; returns the match."""
        rx = re.compile(pattern, flags)

        def found():
            m = rx.search(self.log())
            if m is None and not self.alive():
                # One last look: the process may have written it just before exiting.
                m = rx.search(self.log())
                if m is None:
                    raise HarnessError(f"{self.name} exited ({self.proc.returncode}) without "
                                       f"logging /{pattern}/; its log:\n{self.log()}")
            return m
        return wait_for(found, timeout, what=f"{self.name} to log /{pattern}/")

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{self.name} (pid {self.pid}) still running after "
                               f"{timeout:.1f} s") from None
        return self.returncode

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code (or -9)."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.proc.wait(timeout=min(5.0, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        os.kill(self.pid, signal.SIGKILL)
                        self.proc.wait(timeout=10)
                        break
                    if self.resend_term:
                        os.kill(self.pid, signal.SIGTERM)
        self.returncode = self.proc.returncode
        self._log.close()
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        return self.returncode


class Tool:
    """One of the example tools run in the background: stdout (its JSON summary) and stderr
    in files of their own. Listed in ALL, so that a failed test shows its stderr."""

    def __init__(self, name, argv):
        require_file(argv[0], name, executable=True)
        self.name = name
        self.argv = [str(a) for a in argv]
        self.dir = make_tempdir(f"mqk-{name}-")
        self.out_path = os.path.join(self.dir, "stdout")
        self.log_path = os.path.join(self.dir, "stderr")
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, close_fds=True)
        self.pid = self.proc.pid
        self.stopped_at = None
        ALL.append(self)

    @property
    def returncode(self):
        return self.proc.returncode

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Waits (bounded) for the exit; returns (exit status, the JSON on stdout or None)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HarnessError(f"{self.name} (pid {self.pid}) still running after "
                               f"{timeout} s; stderr:\n{self.log()}") from None
        self.stopped_at = time.monotonic()
        assert rc >= 0, f"{self.name} died of signal {-rc}; stderr:\n{self.log()}"
        with open(self.out_path) as f:
            text = f.read()
        try:
            return rc, json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            raise AssertionError(f"{self.name} printed no JSON: {text!r}\n{self.log()}")

    def stop(self):
        """SIGTERM, a bounded wait, then SIGKILL."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        return self.proc.returncode
