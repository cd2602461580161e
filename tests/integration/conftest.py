"""
conftest.py - pytest fixtures for the integration tests; the machinery is in harness.py.

  kafka           the session's Kafka, by MQK_KAFKA: real (default) a 1-node Apache Kafka
                  KRaft cluster (harness.RealKafka), mock a 3-broker mqk-devkafka
                  (harness.DevKafka). Both: .bootstrap, .create_topics(names, partitions),
                  .create_topic(name, partitions), .down(), .up(), .kind ("real"/"mock").
                  One per session (a JVM starts in ~3-4 s); a test that takes it down
                  brings it up again (kafka_up_after does that even when the test fails).
  devkafka        one mqk-devkafka (3 mock brokers) whatever MQK_KAFKA says
  start_broker    start_broker(options, **kw) -> harness.Mosquitto; stopped after the test,
                  and its exit code must be 0 (and valgrind's report clean) unless the test
                  says otherwise (broker.expect_exit = None)
  start_haproxy   start_haproxy([port, ...], ws_ports=[...]) -> harness.HAProxy (ws_ports:
                  the brokers' websockets listeners, behind haproxy.ws_port)

When a test fails, the log of every process that ran during it is appended to the report.
A skipped or xfailed test fails the session: nothing here may pass by not running.
"""

import re
import time

import pytest

import harness


@pytest.fixture(scope="session")
def kafka():
    k = harness.start_kafka()
    yield k
    k.cleanup()


@pytest.fixture
def kafka_up_after(kafka):
    """The session's Kafka, brought up again after the test (which may take it down)."""
    yield kafka
    kafka.up()


@pytest.fixture(scope="session")
def devkafka():
    dk = harness.DevKafka(brokers=3)
    yield dk
    dk.cleanup()


def _plugin_in(valgrind_report):
    """Does a valgrind error stack go through the plugin's code?"""
    errors = valgrind_report.split("LEAK SUMMARY")[0]
    return re.search(r"mosquitto_kafka\.so|\((?:plugin|options|template|route|record|envelope|"
                     r"producer|stats|log)\.c:\d+\)", errors) is not None


def _sanitizer_problems(b):
    """MQK_ASAN=1: any ASan, LeakSanitizer or UBSan report in broker b's log. As with
    valgrind, a broker the test expects to fail (expect_exit None: mosquitto 2.0.11 leaks
    its configuration when it exits on an error) counts only reports through the plugin."""
    report = b.sanitizer_report()
    b.sanitizer_checked = True
    if not report:
        return []
    if b.expect_exit is None and not re.search(r"mosquitto_kafka\.so|/plugin/\w+\.c:\d+",
                                               report):
        return []
    return [f"sanitizer report in {b.name}'s log:\n{report}"]


def _stop_broker(b):
    rc = b.stop()
    problems = []
    if b.expect_exit is not None and rc != b.expect_exit:
        problems.append(f"{b.name} exited with {rc}, expected {b.expect_exit}")
    if harness.VALGRIND and rc == 99:
        problems.append(f"valgrind found errors in {b.name}:\n{b.valgrind_report()}")
    return problems + _sanitizer_problems(b)


def _exit_problems(b):
    """What is wrong with how broker b ended (stopping it first if it still runs)."""
    if b.process is None:
        return []
    if b.process.returncode is None:
        return _stop_broker(b)
    problems = []
    rc = b.process.returncode
    if b.expect_exit is not None and rc != b.expect_exit:
        problems.append(f"{b.name} exited with {rc}, expected {b.expect_exit}")
    if harness.VALGRIND and b.expect_exit is not None and rc == 99:
        problems.append(f"valgrind found errors in {b.name}:\n{b.valgrind_report()}")
    elif harness.VALGRIND and b.expect_exit is None and _plugin_in(b.valgrind_report()):
        # mosquitto 2.0.11 leaks its own configuration when it exits on an error:
        # only errors with a frame of the plugin count then.
        problems.append(f"valgrind found plugin errors in {b.name}:\n{b.valgrind_report()}")
    return problems + _sanitizer_problems(b)


def _broker_starter():
    """start(options, **kw) -> harness.Mosquitto; after the yield, every broker it started
    is stopped and removed, and how each ended is checked."""
    brokers = []

    def start(options, **kw):
        b = harness.Mosquitto(options, **kw)
        b.expect_exit = 0
        brokers.append(b)
        return b
    yield start
    problems = []
    for b in brokers:
        problems += _exit_problems(b)
    for b in brokers:
        b.cleanup()
    assert not problems, "\n".join(problems)


@pytest.fixture
def start_broker():
    yield from _broker_starter()


@pytest.fixture(scope="module")
def start_module_broker():
    """The same as start_broker, for brokers a whole test module shares."""
    yield from _broker_starter()


@pytest.fixture
def start_haproxy():
    proxies = []

    def start(ports, **kw):
        h = harness.HAProxy(ports, **kw)
        proxies.append(h)
        return h
    yield start
    for h in proxies:
        h.cleanup()


# ---- log dumps and no silent skips ------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._mqk_started = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    since = getattr(item, "_mqk_started", 0)
    for p in harness.ALL:
        if p.stopped_at is not None and p.stopped_at < since:
            continue
        text = p.log()
        lines = text.splitlines()
        if len(lines) > 400:
            text = "\n".join([f"... {len(lines) - 400} earlier lines ..."] + lines[-400:])
        rep.sections.append((f"{p.name} (pid {p.pid}) log: {p.log_path}", text))
    for k in harness.KAFKAS:
        for title, text in k.logs():
            rep.sections.append((title, text))


def pytest_sessionfinish(session, exitstatus):
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    # MQK_ASAN=1: reports of brokers no fixture checked (a test started and removed them).
    for name, report in harness.SANITIZER_REPORTS:
        session.exitstatus = 1
        tr.ensure_newline()
        tr.write_line(f"mosquitto-kafka: sanitizer report in {name}'s log:\n{report}", red=True)
    not_run = sum(len(tr.stats.get(k, [])) for k in ("skipped", "xfailed", "xpassed"))
    if not_run and session.exitstatus == 0:
        session.exitstatus = 1
        tr.ensure_newline()
        tr.write_line(f"mosquitto-kafka: {not_run} test(s) skipped or xfailed: "
                      f"that is a failure here", red=True)


def pytest_report_header(config):
    return [f"mosquitto-kafka build dir: {harness.BUILD_DIR}",
            f"valgrind: {'on' if harness.VALGRIND else 'off'}",
            f"sanitizers (MQK_ASAN): {'on' if harness.ASAN else 'off'}",
            f"Kafka (MQK_KAFKA): {harness.KAFKA_MODE}"]


@pytest.fixture
def tools():
    """tools(name, argv) -> harness.Tool, started now and stopped (SIGTERM) after the test."""
    started = []

    def start(name, argv):
        t = harness.Tool(name, argv)
        started.append(t)
        return t
    yield start
    for t in started:
        t.stop()
