"""
brokers.py - the servers the tests put in front of Kafka: /usr/sbin/mosquitto with the
built plugin (Mosquitto; under valgrind with MQK_VALGRIND=1, with the sanitizer runtime
with MQK_ASAN=1) and HAProxy; the plugin's journal directory, password files, and the
probe for WebSockets support.
"""

import atexit
import os
import re
import shutil
import subprocess

from paths import (ASAN, BUILD_DIR, HAPROXY, MOSQUITTO, PLUGIN, SANITIZE_DIR, SLOW,
                   VALGRIND)
from procs import (HarnessError, Process, free_port, make_tempdir, port_accepts,
                   require_file, wait_for)

def mosquitto_version():
    """The version of /usr/sbin/mosquitto as a tuple, e.g. (2, 0, 11); (0,) when unknown.
    2.0.11 (Debian 12) and 2.0.21 (Debian 13) differ in what plugins get: see
    docs/mosquitto-2.0.21.md."""
    try:
        out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    m = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0,)


MOSQUITTO_VERSION = mosquitto_version()


def make_journal_dir(parent):
    """A directory for the plugin's journal under parent, writable by user mosquitto (the
    broker drops to it when started as root, before the plugin starts)."""
    d = os.path.join(parent, "journal")
    os.makedirs(d, exist_ok=True)
    if os.geteuid() == 0:
        import pwd
        try:
            pw = pwd.getpwnam("mosquitto")
            os.chown(d, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
    return d


def with_journal_dir(options, parent):
    """options, plus a journal_dir of the test's own under parent when the plugin runs with
    its default durability (journal) and the test named none: never the system's default
    directory, never another test's journal."""
    keys = {k for k, _ in options}
    if "journal_dir" in keys or ("durability", "memory") in options:
        return list(options)
    return list(options) + [("journal_dir", make_journal_dir(parent))]


_plugin_copy = None


def passwd_file(users):
    """A mosquitto password file with {user: password}, readable by user mosquitto."""
    d = make_tempdir("mqk-passwd-")
    path = os.path.join(d, "passwd")
    for i, (user, password) in enumerate(users.items()):
        argv = ["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [path, user, password]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    os.chmod(path, 0o644)
    return path


def built_plugin():
    """
    The built plugin, as mosquitto can load it. Started as root, mosquitto drops to user
    mosquitto before it loads plugins, and the build directory may sit below a directory
    only root can enter (a fresh clone under mktemp -d, say): so the tests load a copy in
    a world-readable directory of their own, made once per process and removed at exit.
    """
    global _plugin_copy
    if _plugin_copy is None:
        require_file(PLUGIN, "the plugin")
        d = make_tempdir("mqk-plugin-")
        atexit.register(shutil.rmtree, d, True)
        _plugin_copy = os.path.join(d, os.path.basename(PLUGIN))
        shutil.copy2(PLUGIN, _plugin_copy)
        os.chmod(_plugin_copy, 0o755)
    return _plugin_copy


class Mosquitto:
    """
    /usr/sbin/mosquitto on 127.0.0.1:<free port> with the plugin and the given options.

    options: list of (key, value) for plugin_opt_<key> <value>, in order (duplicates kept).
    extra: more mosquitto.conf lines. plugin: "built" (a loadable copy of the built plugin),
    a path, or None for no plugin line at all. log_debug=False: no debug lines (the
    benchmarks: "log_type all" writes a line per PUBLISH, a good part of the broker's work).
    preload: a library to LD_PRELOAD into mosquitto (bench/overhead.py's idle thread).
    websockets=True: a second listener, `protocol websockets` (MQTT over WebSockets, any
    path), on 127.0.0.1:<ws_port>, next to the plain one on <port>; ready means both accept.
    Only a mosquitto built with libwebsockets has it (Debian 13's; Debian 12's refuses to
    start: websockets_supported() below, docs/platforms.md).
    port, ws_port: fixed ports instead of free ones (a broker started again where HAProxy
    expects it, after a kill -9; no retry on another port then).
    """

    def __init__(self, options, extra=(), plugin="built", wait=True, name="mosquitto",
                 start_timeout=10.0, listen=True, log_debug=True, preload=None,
                 websockets=False, port=None, ws_port=None):
        if plugin == "built":
            plugin = built_plugin()
        if plugin is not None:
            require_file(plugin, "the plugin")
        if not os.path.isfile(MOSQUITTO):
            raise HarnessError(f"{MOSQUITTO} not found: scripts/install-deps.sh installs it")
        self.name = name
        self.dir = make_tempdir("mqk-mosquitto-")
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.valgrind_log = os.path.join(self.dir, "valgrind.log")
        self.process = None
        self.websockets = websockets
        self.listen = listen
        self.ws_port = None
        last_error = None
        for _attempt in range(3):
            self.port = port or free_port()
            lines = []
            if listen:
                lines += [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
            if websockets:
                self.ws_port = ws_port or free_port()
                lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
            lines += [
                "log_dest stderr",
                *(["log_type all"] if log_debug else
                  [f"log_type {t}" for t in ("error", "warning", "notice", "information")]),
                "log_timestamp true",
                "persistence false",
                "max_queued_messages 0",
            ]
            lines += list(extra)
            if plugin is not None:
                lines.append(f"plugin {plugin}")
                for key, value in with_journal_dir(options, self.dir):
                    lines.append(f"plugin_opt_{key} {value}")
            with open(self.conf_path, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.chmod(self.conf_path, 0o644)
            argv = [MOSQUITTO, "-c", self.conf_path]
            if VALGRIND:
                # --vgdb=no: no gdbserver FIFOs left in /tmp (vgdb-pipe-*).
                argv = ["valgrind", "--vgdb=no", "--error-exitcode=99", "--leak-check=full",
                        "--errors-for-leak-kinds=definite", "--track-fds=no",
                        "--keep-debuginfo=yes", "--num-callers=30",
                        "--suppressions=" + os.path.join(os.path.dirname(__file__),
                                                         "valgrind.supp"),
                        f"--log-file={self.valgrind_log}"] + argv
            env = sanitizer_env() if ASAN else None
            if preload:
                require_file(preload, "the library to preload")
                env = dict(env or os.environ)
                env["LD_PRELOAD"] = ":".join(x for x in (env.get("LD_PRELOAD"), preload) if x)
            self.process = Process(name, argv, self.log_path, env=env)
            self.process.resend_term = VALGRIND
            if not wait:
                return
            try:
                self.wait_ready(start_timeout * SLOW)
                return
            except HarnessError as e:
                last_error = e
                self.process.stop()
                if "Address already in use" not in self.log() or port or ws_port:
                    raise
        raise last_error

    @property
    def pid(self):
        return self.process.pid

    def log(self):
        return self.process.log() if self.process else ""

    def wait_ready(self, timeout):
        def ready():
            if not self.process.alive():
                raise HarnessError(f"{self.name} exited ({self.process.proc.returncode}) while "
                                   f"starting; its log:\n{self.log()}")
            return ((not self.listen or port_accepts(self.port)) and
                    (self.ws_port is None or port_accepts(self.ws_port)))
        ports = " and ".join(([str(self.port)] if self.listen else []) +
                             ([f"{self.ws_port} (websockets)"] if self.ws_port else []))
        wait_for(ready, timeout, what=f"{self.name} to accept on 127.0.0.1:{ports}")

    def wait_log(self, pattern, timeout=10.0):
        return self.process.wait_log(pattern, timeout * SLOW)

    def stop(self, timeout=30.0):
        """SIGTERM and a bounded wait; returns the exit code."""
        return self.process.stop(timeout * SLOW)

    def valgrind_report(self):
        try:
            with open(self.valgrind_log) as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_report(self):
        """With MQK_ASAN=1: every ASan, LeakSanitizer and UBSan report in mosquitto's log
        (from its first line to the end of the log), or "" when there is none."""
        if not ASAN:
            return ""
        return sanitizer_report(self.log())

    def cleanup(self):
        if self.process:
            self.process.stop(10.0 * SLOW)
            # The log goes with the directory: keep any report for the session's end
            # (conftest.py fails the session on one nobody checked before).
            report = self.sanitizer_report()
            if report and not getattr(self, "sanitizer_checked", False):
                SANITIZER_REPORTS.append((f"{self.name} (pid {self.pid})", report))
        shutil.rmtree(self.dir, ignore_errors=True)


_WS_PROBE = []


def websockets_probe(timeout=10.0):
    """
    Can this machine's /usr/sbin/mosquitto take MQTT over WebSockets? Starts it once (no
    plugin) with only a `protocol websockets` listener and sees what happens: it accepts on
    that port (built with libwebsockets: Debian 13), or it exits (Debian 12's 2.0.11 logs
    "Opening websockets listen socket on port N." then "Error: Unable to start any listening
    sockets, exiting."). Returns (supported, mosquitto's log); the first answer is kept for
    the rest of the run.
    """
    if _WS_PROBE:
        return _WS_PROBE[0]
    b = Mosquitto([], plugin=None, listen=False, websockets=True, wait=False,
                  name="mosquitto-ws-probe")
    try:
        state = wait_for(lambda: ("exited" if not b.process.alive() else
                                  "accepts" if port_accepts(b.ws_port) else None),
                         timeout * SLOW, what="mosquitto to accept on a websockets listener "
                                              "or to exit")
        if state == "accepts":
            b.stop()
        answer = (state == "accepts", b.log())
    finally:
        b.cleanup()
    _WS_PROBE.append(answer)
    return answer


def websockets_supported():
    """websockets_probe()'s answer alone: True where Mosquitto(websockets=True) works."""
    return websockets_probe()[0]


# ---- MQK_ASAN=1: mosquitto with the sanitizer runtime preloaded --------------------------

# Reports found only when a broker was removed (conftest.py fails the session on them).
SANITIZER_REPORTS = []
# The first line of each kind of report: ASan ("==12==ERROR: AddressSanitizer: ..."),
# LeakSanitizer ("==12==ERROR: LeakSanitizer: detected memory leaks"), UBSan
# ("file.c:84:5: runtime error: ...").
_SANITIZER_LINE = re.compile(r"^.*(?:==\d+==ERROR: \w+Sanitizer|: runtime error: |"
                             r"^SUMMARY: \w+Sanitizer).*$", re.M)


def sanitizer_report(text):
    m = _SANITIZER_LINE.search(text)
    if m is None:
        return ""
    report = text[m.start():]
    return "" if _only_mosquittos_own_leaks(report) else report


# A stack frame of mosquitto's own binary, of libc's start-up, or of the sanitizer runtime.
_NOT_PLUGIN_FRAME = re.compile(r"\(/usr/sbin/mosquitto\+0x|libc_start|/libc\.so|libsanitizer/")


def _only_mosquittos_own_leaks(report):
    """
    Is this a LeakSanitizer report whose every leak was allocated by mosquitto itself
    (every frame in /usr/sbin/mosquitto, libc's start-up or the sanitizer)? mosquitto does
    not free the per-listener configuration it reads (per_listener_settings true). On
    2.0.11 lsan.supp's config__read names it; 2.0.21's binary has no symbols for its own
    functions, so its frames are only "/usr/sbin/mosquitto+0x...". A leak of the plugin's
    always has a frame in the plugin or in a library it called (librdkafka, libcjson, ...).
    """
    if "ERROR: LeakSanitizer" not in report or re.search(r"ERROR: AddressSanitizer|"
                                                          r": runtime error: ", report):
        return False
    blocks = re.split(r"^(?=(?:Direct|Indirect) leak of )", report, flags=re.M)[1:]
    for block in blocks:
        frames = re.findall(r"^\s+#\d+ 0x[0-9a-f]+ .*$", block, re.M)
        if not frames or any(not _NOT_PLUGIN_FRAME.search(f) for f in frames):
            return False
    return bool(blocks)


def _plugin_runtime(name):
    """The path of the sanitizer runtime (libasan.so.N) the built plugin was linked with."""
    out = subprocess.run(["ldd", PLUGIN], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"^\s*" + re.escape(name) + r"\.so\.\d+ => (\S+)", out, re.M)
    if m is None:
        raise HarnessError(f"MQK_ASAN=1, but {PLUGIN} is not linked with {name}: build it "
                           f"with cmake -DMQK_SANITIZE=ON (and MQK_BUILD_DIR pointing there)")
    return m.group(1)


def sanitizer_env():
    """
    The environment mosquitto runs in with MQK_ASAN=1. /usr/sbin/mosquitto is not built
    with ASan, and the ASan runtime must be loaded before anything allocates: LD_PRELOAD
    puts it there, so mosquitto's own allocations are tracked too and the plugin's checks
    work. libubsan comes with the plugin (DT_NEEDED). Before it, nodlclose.so (built by
    MQK_SANITIZE=ON; tests/sanitize/nodlclose.c) keeps the plugin and its libraries
    loaded until LeakSanitizer has looked at exit; it defines dlclose only, so ASan not
    being the very first library costs nothing but its own dlclose interceptor
    (verify_asan_link_order=0). A first error aborts the broker: the test fails on its
    exit code and on the report in its log (conftest.py).
    """
    require_file(PLUGIN, "the plugin")
    nodlclose = os.path.join(BUILD_DIR, "sanitize", "nodlclose.so")
    require_file(nodlclose, "tests/sanitize/nodlclose.c's library (MQK_SANITIZE=ON)")
    env = dict(os.environ)
    env["LD_PRELOAD"] = nodlclose + ":" + _plugin_runtime("libasan")
    env["ASAN_OPTIONS"] = ":".join([
        "detect_leaks=1",
        "verify_asan_link_order=0",
        # mosquitto, librdkafka and libc are built without frame pointers: the slow
        # (DWARF) unwinder gives whole stacks, which the suppressions match on.
        "fast_unwind_on_malloc=0",
        "malloc_context_size=30",
        "print_suppressions=0",
    ])
    # LeakSanitizer reads its suppressions at exit, as user mosquitto: from a copy beside
    # the plugin's, since the source tree may sit below a directory only root can enter.
    supp = os.path.join(os.path.dirname(built_plugin()), "lsan.supp")
    if not os.path.exists(supp):
        shutil.copy2(os.path.join(SANITIZE_DIR, "lsan.supp"), supp)
        os.chmod(supp, 0o644)
    # exitcode=0: a leak report alone does not change mosquitto's exit code; the report in
    # its log fails the test (conftest.py), unless every leak is mosquitto's own
    # (sanitizer_report).
    env["LSAN_OPTIONS"] = "suppressions=" + supp + ":exitcode=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


# The opening handshake of MQTT over WebSockets (RFC 6455 with subprotocol "mqtt", as MQTT
# 5.0 section 6 asks), which HAProxy sends as its health check of a websockets listener:
# a mosquitto that answers "101 Switching Protocols" can take a WebSockets client.
WS_HANDSHAKE = ("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")


class HAProxy:
    """
    haproxy -db -f cfg: TCP mode, MQTT health checks, roundrobin over the given ports, on
    127.0.0.1:<port>. ws_ports (each broker's ws_port, Mosquitto(websockets=True)): a second
    frontend on 127.0.0.1:<ws_port>, TCP passthrough (the WebSockets handshake is mosquitto's
    business) roundrobin over those, each checked with a WebSockets opening handshake.
    """

    def __init__(self, backend_ports, timeout=10.0, maxconn=1000, ws_ports=()):
        if not os.path.isfile(HAPROXY):
            raise HarnessError(f"{HAPROXY} not found: scripts/install-deps.sh installs it")
        self.dir = make_tempdir("mqk-haproxy-")
        self.port = free_port()
        self.ws_port = free_port() if ws_ports else None
        self.cfg_path = os.path.join(self.dir, "haproxy.cfg")
        # Health check: an MQTT 3.1.1 CONNECT (client id "hc", clean session), expecting
        # CONNACK "accepted" (20 02 00 00).
        connect = "100e00044d5154540402003c00026863"
        servers = "\n".join(
            f"    server mqtt{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
            for i, p in enumerate(backend_ports))
        cfg = f"""global
    maxconn {maxconn}

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s

frontend mqtt_in
    bind 127.0.0.1:{self.port}
    default_backend mosquittos

backend mosquittos
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary {connect}
    tcp-check expect binary 20020000
{servers}
"""
        if ws_ports:
            ws_servers = "\n".join(
                f"    server ws{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
                for i, p in enumerate(ws_ports))
            cfg += f"""
frontend mqtt_ws_in
    bind 127.0.0.1:{self.ws_port}
    default_backend mosquittos_ws

backend mosquittos_ws
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary {WS_HANDSHAKE.encode().hex()}
    tcp-check expect string "HTTP/1.1 101"
{ws_servers}
"""
        with open(self.cfg_path, "w") as f:
            f.write(cfg)
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg_path], capture_output=True,
                               timeout=30)
        if check.returncode != 0:
            raise HarnessError(f"haproxy -c refused {self.cfg_path}:\n"
                               f"{check.stdout.decode()}{check.stderr.decode()}\n{cfg}")
        self.process = Process("haproxy", [HAPROXY, "-db", "-f", self.cfg_path],
                               os.path.join(self.dir, "haproxy.log"))
        try:
            def ready():
                if not self.process.alive():
                    raise HarnessError(f"haproxy exited; its log:\n{self.process.log()}")
                return port_accepts(self.port) and (self.ws_port is None or
                                                    port_accepts(self.ws_port))
            wait_for(ready, timeout, what=f"haproxy to accept on 127.0.0.1:{self.port}")
        except BaseException:
            self.process.stop()
            raise

    def log(self):
        return self.process.log()

    def cleanup(self):
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
