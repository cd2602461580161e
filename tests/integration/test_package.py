"""
test_package.py - the Debian package: `cpack -G DEB` builds it for the release it runs on
(its version ends in +deb<N>), it holds the right files with the right metadata, lintian
finds nothing wrong with it, and (as root, as in CI) it installs, makes the journals'
directory for user mosquitto, leaves the system mosquitto configuration working, forwards
one message with the installed plugin journaling there, runs the installed mqk-loadgen ->
plugin -> Kafka -> mqk-controller loop, keeps the journals' directory on remove and
deletes it on purge. Not root is a failure, not a skip: the install is half of this test.
./scripts/test.sh runs it on each platform: on the host, and in the Debian root of the
other release (scripts/root.sh).
"""

import grp
import io
import json
import os
import pwd
import re
import stat
import shutil
import subprocess
import tarfile

import pytest

import harness
from harness import HDR, V311

PKG = "mosquitto-kafka"
TOOLS = ("/usr/bin/mqk-devkafka", "/usr/bin/mqk-loadgen", "/usr/bin/mqk-controller",
         "/usr/bin/mqk-router", "/usr/bin/mqk-hybrid")
PLUGIN_PATH = "/usr/lib/x86_64-linux-gnu/mosquitto_kafka.so"
CONFFILE = "/etc/mosquitto/conf.d/mosquitto-kafka.conf"
# The parent of the plugin's default journal_dir (/var/lib/mosquitto/mosquitto-kafka/
# <broker_id>): made by the postinst for user mosquitto, removed by the postrm on purge.
JOURNALS = "/var/lib/mosquitto/mosquitto-kafka"
OVERRIDES = f"/usr/share/lintian/overrides/{PKG}"


def os_release():
    fields = {}
    with open("/etc/os-release") as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep:
                fields[key] = value.strip('"')
    return fields


def deb_version():
    """The version the package must have here: the project's, then +deb<N> on Debian N
    (0.1.0+deb12, 0.1.0+deb13), +<id><version> on other systems."""
    version = harness._MACROS["MQK_VERSION"]
    osr = os_release()
    if osr.get("ID") == "debian" and osr.get("VERSION_ID"):
        return f"{version}+deb{osr['VERSION_ID']}"
    if osr.get("ID") and osr.get("VERSION_ID"):
        return f"{version}+{osr['ID']}{osr['VERSION_ID']}"
    return version


def run(argv, timeout=300, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def deb():
    out = harness.make_tempdir("mqk-cpack-")
    try:
        run(["cpack", "-G", "DEB", "-B", out], cwd=harness.BUILD_DIR)
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        assert len(debs) == 1, f"cpack made {debs} in {out}, expected one .deb"
        yield os.path.join(out, debs[0])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_deb_name_and_control(deb):
    version = deb_version()
    print(f"package: {os.path.basename(deb)} on {os_release().get('PRETTY_NAME')}")
    assert os.path.basename(deb) == f"{PKG}_{version}_amd64.deb", os.path.basename(deb)
    fields = {}
    for name in ("Package", "Version", "Architecture", "Section", "Maintainer", "Depends",
                 "Description"):
        fields[name] = run(["dpkg-deb", "-f", deb, name]).stdout.strip()
    print(f"control: {fields}")
    assert fields["Package"] == PKG
    assert fields["Version"] == version
    assert fields["Architecture"] == "amd64"
    assert fields["Section"] == "net"
    assert fields["Maintainer"] and fields["Description"]
    depends = [d.strip() for d in fields["Depends"].split(",")]
    names = [re.split(r"[ (]", d)[0] for d in depends]
    for want in ("mosquitto", "librdkafka1", "libcjson1", "libmosquitto1", "libc6"):
        assert want in names, f"Depends should name {want}: {fields['Depends']}"
    # libmicrohttpd12 on Debian 12, libmicrohttpd12t64 on Debian 13 (the time_t transition).
    assert any(n.startswith("libmicrohttpd12") for n in names), \
        f"Depends should name libmicrohttpd12: {fields['Depends']}"
    assert "mosquitto (>= 2.0)" in depends, f"Depends: mosquitto (>= 2.0) expected: {depends}"
    conffiles = run(["dpkg-deb", "-I", deb, "conffiles"]).stdout.split()
    assert conffiles == [CONFFILE], f"conffiles: expected [{CONFFILE}], got {conffiles}"
    for name in ("postinst", "postrm"):
        text = run(["dpkg-deb", "-I", deb, name]).stdout
        assert JOURNALS in text, f"{name} does not mention {JOURNALS}:\n{text}"
        assert "ldconfig" not in text, f"{name} calls ldconfig (nothing links the plugin)"


def test_lintian(deb):
    """lintian reports no error and no warning, and every override in the package says why
    (a comment above it, which lintian shows as N: lines with the override)."""
    # lintian leaves scratch files (mldbm-elf-*) in TMPDIR: give it a directory of the test's.
    scratch = harness.make_tempdir("mqk-lintian-")
    os.chmod(scratch, 0o1777)
    argv = ["env", f"TMPDIR={scratch}", "lintian", "--display-info", "--pedantic",
            "--show-overrides", deb]
    if os.geteuid() == 0:
        # lintian advises against running as root; the .deb is in a world-readable directory
        # (and the working directory, a clone under mktemp -d, may not be: run it in /).
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                "env", "HOME=/nonexistent"] + argv
    try:
        p = run(argv, check=False, cwd="/")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    version = run(["lintian", "--version"]).stdout.strip()
    print(f"{version}:\n{p.stdout}{p.stderr}")
    # Exit 2 also means "overridden tags shown" with --show-overrides: judge the lines.
    assert p.returncode in (0, 2), f"lintian failed ({p.returncode}):\n{p.stdout}{p.stderr}"
    bad = [ln for ln in p.stdout.splitlines()
           if ln.startswith(("E:", "W:")) or re.search(r": (unused|mismatched)-override", ln)]
    assert not bad, "lintian:\n" + "\n".join(bad)

    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True,
                         timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        overrides = t.extractfile("." + OVERRIDES).read().decode()
    reason = False
    for line in overrides.splitlines():
        if line.startswith("#"):
            reason = True
        elif not line.strip():
            reason = False
        else:
            assert reason, f"{OVERRIDES}: no reason (a comment just above) for: {line}"


def test_deb_contents(deb):
    listing = run(["dpkg-deb", "-c", deb]).stdout
    entries = {}
    for line in listing.splitlines():
        # drwxr-xr-x root/root 0 2024-01-01 00:00 ./usr/bin/
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0].rstrip("/").lstrip(".") or "/"
        entries[path] = (parts[0], parts[1])
    print("\n".join(sorted(entries)))
    want = {
        PLUGIN_PATH: "-rw-r--r--",
        CONFFILE: "-rw-r--r--",
        **{tool: "-rwxr-xr-x" for tool in TOOLS},
        **{f"/usr/share/man/man1/{os.path.basename(tool)}.1.gz": "-rw-r--r--" for tool in TOOLS},
        OVERRIDES: "-rw-r--r--",
        "/usr/include/mosquitto_kafka.h": "-rw-r--r--",
        "/usr/include/mqk_payload.h": "-rw-r--r--",
        f"/usr/share/doc/{PKG}/copyright": "-rw-r--r--",
        f"/usr/share/doc/{PKG}/README.md": "-rw-r--r--",
    }
    stray = [p for p in entries if p.startswith("/usr/etc") or p.startswith("/usr/local")
             or p.startswith("/home") or p.startswith("/work")]
    assert not stray, (
        f"files outside the Debian layout: {stray}. (/usr/etc: an install() DESTINATION of "
        f"${{CMAKE_INSTALL_SYSCONFDIR}} is relative to the /usr prefix; "
        f"${{CMAKE_INSTALL_FULL_SYSCONFDIR}} is /etc)")
    got = {p: entries.get(p, ("absent",))[0] for p in want}
    assert got == want, f"files and modes: expected {want}, got {got}"
    owners = {o for _, o in entries.values()}
    assert owners == {"root/root"}, f"every file owned by root/root, got {owners}"
    dirs = {p: m for p, (m, _) in entries.items() if m.startswith("d")}
    bad_dirs = {p: m for p, m in dirs.items() if m != "drwxr-xr-x"}
    assert not bad_dirs, f"directories should be 0755: {bad_dirs}"


def _installed():
    p = run(["dpkg-query", "-W", "-f", "${Status}", PKG], check=False)
    return "install ok installed" in p.stdout


def _owner_mode(path):
    st = os.stat(path)
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            oct(stat.S_IMODE(st.st_mode)))


def test_install_run_purge(deb, kafka):
    assert os.geteuid() == 0, ("installing the package needs root (CI runs as root): "
                               "run ./scripts/test.sh as root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # The purge at the end removes JOURNALS: it must be the package's own.
    assert _installed() or not os.path.exists(JOURNALS), (
        f"{JOURNALS} exists and {PKG} is not installed: the purge at the end of this test "
        f"would delete it. Something other than the package made it (a test writing to "
        f"the plugin's default journal_dir?): move it away and run again")
    try:
        # apt-get resolves Depends (dpkg -i would not); everything is installed already
        # by scripts/install-deps.sh, so this does not need the network.
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
             os.path.abspath(deb)], env=env, timeout=600)
        assert _installed(), f"{PKG} not installed after apt-get install"
        for path in (PLUGIN_PATH, CONFFILE, *TOOLS):
            assert os.path.isfile(path), f"{path} missing after install"
        status = run(["dpkg", "--status", PKG]).stdout
        assert CONFFILE in status, f"dpkg does not list {CONFFILE} as a conffile:\n{status}"
        owner = _owner_mode(JOURNALS) if os.path.isdir(JOURNALS) else None
        print(f"postinst: {JOURNALS} {owner}")
        assert owner == ("mosquitto", "mosquitto", "0o750"), (
            f"{JOURNALS}: expected a directory owned by mosquitto:mosquitto, 0750, after the "
            f"install; got {owner}")

        # The system configuration with the package's conffile included still starts:
        # /etc/mosquitto/mosquitto.conf, with its pid file, persistence and log file
        # redirected away from the system's, and a listener of ours.
        with open("/etc/mosquitto/mosquitto.conf") as f:
            system = [ln.rstrip("\n") for ln in f
                      if not re.match(r"\s*(pid_file|persistence|persistence_location|"
                                      r"log_dest|listener|port)\b", ln)]
        assert any(ln.startswith("include_dir /etc/mosquitto/conf.d") for ln in system), \
            "/etc/mosquitto/mosquitto.conf does not include conf.d"
        sys_broker = harness.Mosquitto([], plugin=None, extra=system, name="mosquitto-system")
        try:
            assert "mosquitto_kafka" not in sys_broker.log(), (
                f"the installed conffile enabled the plugin:\n{sys_broker.log()}")
            rc = sys_broker.stop()
            assert rc == 0, f"mosquitto with the system config exited {rc}"
        finally:
            sys_broker.cleanup()

        # The installed plugin, run by /usr/sbin/mosquitto as user mosquitto, forwards,
        # journaling where its default journal_dir would be for this broker_id: the plugin
        # makes the directory in the postinst's, as user mosquitto.
        topic = harness.unique("pkg")
        kafka.create_topic(topic)
        broker_id = harness.unique("itest-pkg")
        journal = os.path.join(JOURNALS, broker_id)
        b = harness.Mosquitto([("bootstrap_servers", kafka.bootstrap),
                               ("broker_id", broker_id),
                               ("journal_dir", journal),
                               ("route_pkg", f"pkg/# -> {topic}")],
                              plugin=PLUGIN_PATH, name="mosquitto-installed")
        try:
            c = harness.Client(b.port, harness.unique("pkg"), V311)
            c.publish_wait("pkg/one", b"installed plugin", qos=1)
            c.close()
            recs = harness.read_topic(kafka.bootstrap, topic, 1, timeout=30)
            print(f"installed plugin: 1 sent, {len(recs)} received")
            assert [r.value for r in recs] == [b"installed plugin"], recs
            assert recs[0].header_str(HDR.BROKER) == broker_id
            assert _owner_mode(journal)[0] == "mosquitto", (journal, _owner_mode(journal))

            # The installed tools around the installed plugin: 20 devices x 10 messages.
            prefix = harness.unique("pkgue")
            gen = run(["/usr/bin/mqk-loadgen", "-q", "--host", f"127.0.0.1:{b.port}", "-n", "20",
                       "-i", prefix + "-%02d", "-c", "10", "-r", "20", "-t", "pkg/{id}/data"],
                      timeout=60)
            assert json.loads(gen.stdout)["acked"] == 200, gen.stdout
            ctl = run(["/usr/bin/mqk-controller", "-q", "-b", kafka.bootstrap, "-t", topic,
                       "-g", harness.unique("g"), "--expect", "200", "--duration", "60"],
                      timeout=120, check=False)
            report = json.loads(ctl.stdout)
            print("installed tools:", {k: report[k] for k in ("received", "unique", "lost")})
            assert ctl.returncode == 0, ctl.stderr
            # The first record of the topic is the paho one above: foreign to the controller.
            assert (report["unique"], report["lost"], report["duplicates"], report["devices"],
                    report["foreign"]) == (200, 0, 0, 20, 1), report
            rc = b.stop()
            assert rc == 0, f"mosquitto with the installed plugin exited {rc}"
            assert re.search(r"shutdown: 0 records not delivered", b.log()), b.log()
        finally:
            b.cleanup()
        # A remove keeps the journals (records may still be waiting in them).
        run(["dpkg", "--remove", PKG], env=env)
        assert os.path.isdir(journal), f"{journal} gone after dpkg --remove: kept until a purge"
    finally:
        purge = run(["dpkg", "--purge", PKG], check=False, env=env)
    assert purge.returncode == 0, f"dpkg --purge failed:\n{purge.stdout}{purge.stderr}"
    assert not _installed(), f"{PKG} still installed after purge"
    for path in (PLUGIN_PATH, CONFFILE, *TOOLS, JOURNALS):
        assert not os.path.exists(path), f"{path} left after dpkg --purge"
