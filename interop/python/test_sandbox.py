"""The stdio sandbox end to end: a hostile MCP server (hostile_mcp.py, the official Python SDK)
behind `mandate serve` attacks its sandbox through the gateway, while real servers from npm run
sandboxed beside it and keep answering.

Upstreams (declared in server.toml before the server starts; every path a sandbox is given lies
outside MANDATE_HOME, in a temporary directory of its own):
- `hostile`: hostile_mcp.py, sandboxed: may write only W, 512 MiB per process, 64 tasks;
- `other`: fixture_mcp.py, sandboxed, given a secret variable from a file the hostile one must
  not read (key_check proves by hash that the secret still reached its own upstream);
- `files`: @modelcontextprotocol/server-filesystem rooted in A, sandboxed (read node_modules,
  write A);
- `everything`: @modelcontextprotocol/server-everything over stdio, sandboxed, no network;
- `netted`: hostile_mcp.py again, sandboxed with network = ["127.0.0.1:PORT"] (one listener);
- `unboxed`: hostile_mcp.py with sandbox = "off" (shown and audited): the control. Every attack
  that the sandbox refuses is also made there, with small bounds, and must escape, so a
  refusal is the sandbox's doing and not a broken attack.

The brief's eight attacks (reads of MANDATE_HOME and of another upstream's secret, writes outside,
TCP, fork and memory floods, ptrace and /proc/PID/environ of the gateway) come first; further
attacks (signals, another process's limits and priority, UDP, hard links) run last, so that
`pytest -x` still runs every other test when one of them finds a hole.
"""
import asyncio
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from test_gateway import EVERYTHING, FILESYSTEM, FIXTURE, Agent, run, text_of
from test_interop import Server, free_port, kill_groups, mandate_bin, run_server

HERE = Path(__file__).resolve().parent
HOSTILE = HERE / "hostile_mcp.py"
NODE_MODULES = HERE.parent / "node" / "node_modules"
SECRET = "sandbox-secret-" + uuid.uuid4().hex
SECRET_SHA = hashlib.sha256(SECRET.encode()).hexdigest()
FORK_BOUND = 5000
PROCESSES = 64
MEMORY_MIB = 512

q = json.dumps  # a TOML basic string (JSON's escapes are TOML's)


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(peer)
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class UdpListener:
    """A UDP socket on 127.0.0.1 that records every datagram it receives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.received.append(self.sock.recvfrom(4096))
            except OSError:
                continue

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def gateway_children(server, needle: str) -> list:
    """The pids of the gateway's children whose command line contains `needle` (read from /proc
    by the test, which runs unconfined)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server.proc.pid and needle in cmdline:
            found.append(int(entry.name))
    return found


class SandboxGateway(Server):
    """`mandate serve` with the sandboxed upstreams above."""

    def configure(self) -> None:
        # Outside MANDATE_HOME: the server refuses sandbox paths in it (it is protected).
        self.outside = Path(tempfile.mkdtemp(prefix="mandate-sandbox-paths-")).resolve()
        self.w = self.outside / "hostile-write"   # the hostile upstream's write directory
        self.a = self.outside / "files-root"      # server-filesystem's root
        self.s = self.outside / "secrets"         # `other`'s secret file
        self.o = self.outside / "bystander"       # declared by nobody
        for d in (self.w, self.a / "src", self.s, self.o):
            d.mkdir(parents=True)
        (self.a / "src" / "main.txt").write_text("hello from the sandboxed repo\n")
        (self.o / "notes.txt").write_text("nobody granted this\n")
        self.secret_file = self.s / "upstream-key"
        self.secret_file.write_text(SECRET + "\n")
        self.secret_file.chmod(0o600)
        self.issuer_key = next((self.home / "server" / "issuer-keys").glob("*.jwk"))
        self.listener = Listener()   # nobody may connect to it but `netted`
        self.closed = Listener()     # nobody may connect to it
        self.udp = UdpListener()     # nobody may send to it
        # A process of the gateway's user outside every sandbox, to ptrace and read.
        self.decoy = subprocess.Popen(["sleep", "300"], start_new_session=True,
                                      env={"DECOY_VAR": "1", "PATH": "/usr/bin:/bin"})
        py, node = sys.executable, "/usr/bin/node"
        toml = f"""
[upstream.hostile]
stdio = [{q(py)}, {q(str(HOSTILE))}]
pass_env = []
[upstream.hostile.sandbox]
read = [{q(str(HOSTILE))}]
write = [{q(str(self.w))}]
memory = "{MEMORY_MIB}MiB"
processes = {PROCESSES}

[upstream.other]
stdio = [{q(py)}, {q(str(FIXTURE))}, "stdio"]
pass_env = ["PATH"]
env = {{ FIXTURE_EXPECTED_SHA256 = "{SECRET_SHA}" }}
secret_env = {{ FIXTURE_KEY = {q("@" + str(self.secret_file))} }}
[upstream.other.sandbox]
read = [{q(str(FIXTURE))}]

[upstream.files]
stdio = [{q(node)}, {q(str(FILESYSTEM))}, {q(str(self.a))}]
pass_env = ["PATH"]
[upstream.files.sandbox]
read = [{q(str(NODE_MODULES))}]
write = [{q(str(self.a))}]

[upstream.everything]
stdio = [{q(node)}, {q(str(EVERYTHING))}, "stdio"]
pass_env = ["PATH"]
[upstream.everything.sandbox]
read = [{q(str(NODE_MODULES))}]

[upstream.netted]
stdio = [{q(py)}, {q(str(HOSTILE))}]
pass_env = []
[upstream.netted.sandbox]
read = [{q(str(HOSTILE))}]
network = ["127.0.0.1:{self.listener.port}"]

[upstream.unboxed]
stdio = [{q(py)}, {q(str(HOSTILE))}]
pass_env = ["PATH", "HOME"]
sandbox = "off"
"""
        cfg = self.home / "server" / "server.toml"
        # A held call waits at most 15 s for its approval (60 s by default).
        cfg.write_text(cfg.read_text().replace('approval_hold = "60s"', 'approval_hold = "15s"') + toml)
        self.env["MANDATE_LOG"] = "debug"  # the children's stderr lands in the server log

    def stop(self) -> None:
        super().stop()
        kill_groups(getattr(self, "decoy", None))
        for listener in (getattr(self, "listener", None), getattr(self, "closed", None),
                         getattr(self, "udp", None)):
            if listener is not None:
                listener.close()
        if getattr(self, "outside", None) is not None:
            shutil.rmtree(self.outside, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    # Named `server` so that conftest.py attaches the serve log to failures.
    yield from run_server(SandboxGateway, "mandate-sandbox-")


@pytest.fixture(scope="module")
def hostile(server):
    return Agent(server, "hostile", "hostile:*", "hostile")


@pytest.fixture(scope="module")
def everything(server):
    return Agent(server, "everything", "everything:*", "everything")


@pytest.fixture(scope="module")
def unboxed(server):
    return Agent(server, "unboxed", "unboxed:*", "unboxed")


def call(agent, tool: str, args: dict):
    """One tool call in its own session: (text, is_error), or (message, "error") when the
    gateway or the upstream answered with a JSON-RPC error (the SDK raises)."""
    async def go():
        async with agent.session() as s:
            try:
                r = await s.call_tool(tool, args)
                return text_of(r), r.is_error
            except Exception as e:
                return f"{type(e).__name__}: {e}", "error"
    return run(go())


def assert_still_serving(server, hostile, everything):
    """The gateway and the other upstreams keep serving after an attack."""
    text, err = call(hostile, "ping", {})
    assert (text, err) == ("pong", False), f"hostile ping after the attack: {text} ({err})"
    text, err = call(everything, "echo", {"message": "still here"})
    assert "still here" in text and not err, f"everything echo after the attack: {text} ({err})"


def refused(text: str, err) -> str:
    assert err is False, f"the attack did not run: {text} ({err})"
    assert text.startswith("refused:"), f"the sandbox let it through: {text}"
    return text


def escaped(text: str, err) -> str:
    """The control: the same attack, unsandboxed, works."""
    assert err is False, f"the control attack did not run: {text} ({err})"
    assert text.startswith("escaped:"), f"the attack fails even unsandboxed (so proves nothing): {text}"
    return text


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the kernel and the sandbox's own proof -----------------------------------------------------

def test_sandbox_check_says_ready_and_its_self_test_passes(server):
    out = server.run_cli("sandbox", "check", "--json")
    report = json.loads(out.stdout)
    assert report["ready"] is True, report
    assert report["self_test"]["passed"] is True, report["self_test"]
    failed = [c for c in report["self_test"]["checks"] if c["check"] != "write_home" and not c["refused"]]
    assert not failed, failed


# -- the hostile upstream --------------------------------------------------------------------------

def test_the_hostile_upstream_runs_as_the_gateways_child_in_a_private_home(server, hostile):
    text, err = call(hostile, "whoami", {})
    assert err is False, text
    me = json.loads(text)
    assert me["ppid"] == server.proc.pid, (me, server.proc.pid)
    assert me["home"] and me["home"] == me["cwd"] and me["home"] != str(Path.home()), me
    assert me["tmpdir"] and me["tmpdir"].startswith(me["home"]), me
    assert "MANDATE_HOME" not in me["env"] and "PATH" not in me["env"], me["env"]
    assert str(server.home) not in me["home"], me


def test_write_allowed_inside_its_write_directory(server, hostile):
    target = server.w / "proof.txt"
    text, err = call(hostile, "write_allowed", {"path": str(target), "text": "inside W"})
    assert err is False and text.startswith("ok:"), text
    assert target.read_text() == "inside W"


def attack_read_home(server, hostile, unboxed):
    """server.toml, the issuer key, the admin's key, the database (MANDATE_HOME), and a file
    nobody declared."""
    targets = [server.home / "server" / "server.toml", server.issuer_key,
               server.home / "keys" / "user_admin.jwk", server.home / "server" / "mandate.db",
               server.o / "notes.txt"]
    for path in targets:
        assert path.is_file(), path
        refused(*call(hostile, "read_home_file", {"path": str(path)}))
    for path in (server.issuer_key, server.o / "notes.txt"):
        text = escaped(*call(unboxed, "read_home_file", {"path": str(path)}))
        assert sha(path) in text, text


def attack_read_secret(server, hostile, unboxed):
    refused(*call(hostile, "read_secret_file", {"path": str(server.secret_file)}))
    # The secret still reached the upstream it belongs to (compared by hash there).
    other = Agent(server, "other", "other:key_check", "other")
    text, err = call(other, "key_check", {})
    assert "env:match" in text and not err, text
    text = escaped(*call(unboxed, "read_secret_file", {"path": str(server.secret_file)}))
    assert sha(server.secret_file) in text, text
    # Nor from the process that holds it in its environment.
    others = gateway_children(server, str(FIXTURE))
    assert others, "the `other` upstream's process was not found"
    for pid in others:
        refused(*call(hostile, "read_parent_environ", {"pid": pid}))


def attack_write_outside(server, hostile, unboxed):
    targets = [server.o / "pwned.txt",                       # declared by nobody
               server.a / "pwned.txt",                       # another upstream's write directory
               server.home / "server" / "pwned.txt",         # MANDATE_HOME
               server.w.parent / "pwned.txt"]                # W's parent
    for path in targets:
        refused(*call(hostile, "write_outside", {"path": str(path)}))
        assert not path.exists(), f"{path} was written"
    # Nor in another sandbox's private home.
    netted = Agent(server, "netted", "netted:whoami", "netted")
    text, err = call(netted, "whoami", {})
    neighbour = Path(json.loads(text)["home"]) / "pwned.txt"
    refused(*call(hostile, "write_outside", {"path": str(neighbour)}))
    assert not neighbour.exists()
    control = server.o / "control.txt"
    escaped(*call(unboxed, "write_outside", {"path": str(control)}))
    assert control.exists()


def attack_connect_tcp(server, hostile, unboxed):
    for port in (server.listener.port, server.closed.port, server.port):  # the last: the gateway
        refused(*call(hostile, "connect_tcp", {"host": "127.0.0.1", "port": port}))
    assert server.listener.accepted == [] and server.closed.accepted == []
    escaped(*call(unboxed, "connect_tcp", {"host": "127.0.0.1", "port": server.closed.port}))
    deadline = time.monotonic() + 2
    while not server.closed.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.closed.accepted) == 1, server.closed.accepted
    server.closed.accepted.clear()


def attack_fork_flood(server, hostile, unboxed):
    text = refused(*call(hostile, "fork_flood", {"bound": FORK_BOUND}))
    n = int(re.search(r"stopped after (\d+) processes", text).group(1))
    assert n < PROCESSES, f"{n} processes forked with processes = {PROCESSES}: {text}"
    text = escaped(*call(unboxed, "fork_flood", {"bound": 4 * PROCESSES}))
    assert f"forked {4 * PROCESSES} processes" in text, text


def attack_exhaust_memory(server, hostile, unboxed):
    text = refused(*call(hostile, "exhaust_memory", {"bound_mib": 16 << 10}))
    got = int(re.search(r"after (\d+) MiB", text).group(1))
    assert got < MEMORY_MIB, f"{got} MiB allocated with memory = {MEMORY_MIB}MiB: {text}"
    text = escaped(*call(unboxed, "exhaust_memory", {"bound_mib": 2 * MEMORY_MIB}))
    assert f"allocated {2 * MEMORY_MIB} MiB" in text, text


def attack_ptrace_parent(server, hostile, unboxed):
    refused(*call(hostile, "ptrace_parent", {"pid": server.proc.pid}))
    refused(*call(hostile, "ptrace_parent", {}))  # its parent, as it sees it: the gateway
    refused(*call(hostile, "ptrace_parent", {"pid": server.decoy.pid}))  # any process outside
    # The control attaches to the decoy (never to the gateway), and detaches.
    escaped(*call(unboxed, "ptrace_parent", {"pid": server.decoy.pid}))
    assert server.decoy.poll() is None


def attack_read_parent_environ(server, hostile, unboxed):
    refused(*call(hostile, "read_parent_environ", {"pid": server.proc.pid}))
    refused(*call(hostile, "read_parent_environ", {}))
    refused(*call(hostile, "read_parent_environ", {"pid": server.decoy.pid}))
    text = escaped(*call(unboxed, "read_parent_environ", {"pid": server.decoy.pid}))
    assert "DECOY_VAR" in text, text


ATTACKS = [attack_read_home, attack_read_secret, attack_write_outside, attack_connect_tcp,
           attack_fork_flood, attack_exhaust_memory, attack_ptrace_parent, attack_read_parent_environ]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda f: f.__name__.removeprefix("attack_"))
def test_an_attack_is_refused_and_everything_keeps_serving(server, hostile, everything, unboxed, attack):
    attack(server, hostile, unboxed)
    assert server.proc.poll() is None, "the gateway died"
    assert_still_serving(server, hostile, everything)


def test_a_declared_destination_is_the_only_one_reachable(server):
    netted = Agent(server, "netted", "netted:*", "netted")
    for port in (server.closed.port, server.port):
        refused(*call(netted, "connect_tcp", {"host": "127.0.0.1", "port": port}))
    assert server.closed.accepted == []
    text, err = call(netted, "connect_tcp", {"host": "127.0.0.1", "port": server.listener.port})
    assert err is False and text.startswith("escaped:"), f"the declared destination: {text}"
    deadline = time.monotonic() + 2
    while not server.listener.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.listener.accepted) == 1, server.listener.accepted
    server.listener.accepted.clear()
    # A network, but still not the gateway's files.
    refused(*call(netted, "read_home_file", {"path": str(server.issuer_key)}))


# -- real servers in their sandboxes ---------------------------------------------------------------

def test_server_filesystem_reads_and_writes_in_its_root_and_nothing_outside(server):
    agent = Agent(server, "files", "files:*", "files")
    server.run_cli("user", "create", "bob", "--role", "approver", check=False)
    main, made, written = server.a / "src" / "main.txt", server.a / "src" / "made", server.a / "src" / "new.txt"

    def approve_when_listed():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = json.loads(server.run_cli("approvals", "list", "--state", "pending",
                                               "--as", "user:bob", "--json").stdout)
            mine = [a for a in listed["approvals"] if a["tool"] == "write_file"
                    and a["call"]["arguments"].get("path") == str(written)]
            if mine:
                server.run_cli("approvals", "approve", mine[0]["id"], "--as", "user:bob")
                return mine[0]["id"]
            time.sleep(0.2)
        return None

    async def go():
        async with agent.session() as s:
            out = {}
            out["read"] = await s.call_tool("read_text_file", {"path": str(main)})
            out["mkdir"] = await s.call_tool("create_directory", {"path": str(made)})
            # write_file says destructiveHint: the default policy holds it until bob approves.
            call_task = asyncio.create_task(
                s.call_tool("write_file", {"path": str(written), "content": "written in the sandbox"}))
            out["approved"] = await asyncio.to_thread(approve_when_listed)
            out["write"] = await call_task
            out["outside"] = []
            for path in ("/etc/hostname", str(server.home / "server" / "server.toml"),
                         str(server.o / "notes.txt")):
                try:
                    r = await s.call_tool("read_text_file", {"path": path})
                    out["outside"].append((path, text_of(r), r.is_error))
                except Exception as e:
                    out["outside"].append((path, str(e), "error"))
            return out

    out = run(go())
    assert not out["read"].is_error and "hello from the sandboxed repo" in text_of(out["read"]), text_of(out["read"])
    assert not out["mkdir"].is_error and made.is_dir(), text_of(out["mkdir"])
    assert out["approved"], "the held write_file was listed for bob"
    assert not out["write"].is_error, text_of(out["write"])
    assert written.read_text() == "written in the sandbox"
    for path, text, err in out["outside"]:
        assert err, f"server-filesystem read {path}: {text}"
        assert "nobody granted this" not in text and "[upstream." not in text, (path, text)


def test_server_everything_lists_and_echoes_without_network(server, everything):
    async def go():
        async with everything.session() as s:
            names = sorted(t.name for t in (await s.list_tools()).tools)
            echoed = await s.call_tool("echo", {"message": "no network needed"})
            return names, echoed
    names, echoed = run(go())
    assert "echo" in names and len(names) > 3, names
    assert "no network needed" in text_of(echoed) and not echoed.is_error, text_of(echoed)


# -- shown and audited -----------------------------------------------------------------------------

def test_upstream_list_and_show_say_which_upstreams_are_sandboxed(server):
    listed = server.cli_json("upstream", "list", "--json")
    by_name = {u["name"]: u for u in listed["upstreams"]}
    assert by_name["unboxed"]["sandbox"] == "off", by_name["unboxed"]
    for name in ("hostile", "other", "files", "everything", "netted"):
        assert by_name[name]["sandbox"] == "on", by_name[name]
    text = server.run_cli("upstream", "list").stdout
    assert "SANDBOX" in text.splitlines()[0], text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:] if line.strip()}
    assert "off" in rows["unboxed"] and "on" in rows["hostile"], text
    shown = server.cli_json("upstream", "show", "hostile", "--json")
    assert shown["sandbox"] == "on", shown
    force = shown["sandbox_in_force"]
    assert force["memory"] == "512MiB" and force["processes"] == str(PROCESSES), force
    assert str(server.w) in force["write"] and force["network"].startswith("none"), force
    off = server.cli_json("upstream", "show", "unboxed", "--json")
    assert off["sandbox"] == "off" and off["sandbox_in_force"] is None, off


def test_the_unsandboxed_upstream_is_audited(server):
    # The server records, at start-up, an admin.change event of action upstream.sandbox_off for
    # each server.toml upstream with sandbox = "off" (principal config:server.toml).
    rows = server.cli_json("audit", "query", "--action", "upstream.sandbox_off", "--json")
    events = [r.get("event", r) for r in rows]
    assert [e.get("resource") for e in events] == ["unboxed"], events
    ev = events[0]
    assert ev["kind"] == "admin.change" and ev["principal"] == "config:server.toml", ev
    assert "unboxed" in " ".join(ev.get("reasons", [])), ev


def test_a_sandbox_path_inside_mandate_home_stops_the_start_with_its_reason():
    home = Path(tempfile.mkdtemp(prefix="mandate-sandbox-refused-"))
    try:
        env = {"MANDATE_HOME": str(home), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
        binary = str(mandate_bin())
        subprocess.run([binary, "init", "--listen", f"127.0.0.1:{free_port()}", "--json"],
                       env=env, check=True, capture_output=True, timeout=60)
        cfg = home / "server" / "server.toml"
        cfg.write_text(cfg.read_text() + f"""
[upstream.greedy]
stdio = [{q(sys.executable)}, {q(str(HOSTILE))}]
pass_env = []
[upstream.greedy.sandbox]
read = [{q(str(home / "server"))}]
""")
        proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            said, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            kill_groups(proc)
            pytest.fail("`mandate serve` started with a sandbox read path inside MANDATE_HOME")
        assert proc.returncode != 0, said
        assert "[upstream.greedy]" in said and f"read path {home / 'server'}" in said, said
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- beyond the brief's eight (at the end, so that `-x` runs everything above first) -------------

def further_signal(server, hostile, unboxed):
    """kill(pid, 0): whether a signal would be allowed, delivering none."""
    targets = [server.proc.pid, server.decoy.pid, *gateway_children(server, str(FIXTURE))]
    for pid in targets:
        refused(*call(hostile, "signal_process", {"pid": pid, "sig": 0}))
    escaped(*call(unboxed, "signal_process", {"pid": server.decoy.pid, "sig": 0}))


def further_meddle(server, hostile, unboxed):
    """Another process's rlimit, nice value, CPU affinity (each set to what it already is)."""
    for pid in (server.proc.pid, server.decoy.pid):
        refused(*call(hostile, "meddle", {"pid": pid}))
    escaped(*call(unboxed, "meddle", {"pid": server.decoy.pid}))


def further_udp(server, hostile, unboxed):
    """UDP, from the upstream without network and from the one allowed a single TCP
    destination (network = ["127.0.0.1:PORT"]: "TCP allowed only to these ports"). The datagram
    goes to a high port on loopback, not to a resolver: whether UDP to port 53 should stay open
    for name resolution is a separate question."""
    refused(*call(hostile, "send_udp", {"host": "127.0.0.1", "port": server.udp.port}))
    netted = Agent(server, "netted", "netted:send_udp", "netted")
    said = call(netted, "send_udp", {"host": "127.0.0.1", "port": server.udp.port})
    time.sleep(0.3)
    arrived = list(server.udp.received)
    server.udp.received.clear()
    assert arrived == [], f"a datagram from `netted` arrived: {arrived} (it said {said})"
    refused(*said)
    escaped(*call(unboxed, "send_udp", {"host": "127.0.0.1", "port": server.udp.port}))


def further_hard_link(server, hostile, unboxed):
    """A hard link, made in the write directory, to a file the sandbox may not read."""
    for source, name in ((server.issuer_key, "stolen-key"), (server.o / "notes.txt", "stolen-notes")):
        refused(*call(hostile, "link_into", {"source": str(source), "link": str(server.w / name)}))
        assert not (server.w / name).exists()
    text = escaped(*call(unboxed, "link_into", {"source": str(server.o / "notes.txt"),
                                                "link": str(server.o / "linked.txt")}))
    assert sha(server.o / "notes.txt") in text, text


def further_mptcp_and_listen(server, hostile, unboxed):
    """From the upstream allowed one TCP destination: a Multipath TCP connection elsewhere, and
    listen() on an unbound socket (found by an outside attack on the first sandbox)."""
    netted = Agent(server, "netted", "netted:*", "netted")
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(4)
        port = lsn.getsockname()[1]
        refused(*call(netted, "connect_mptcp", {"host": "127.0.0.1", "port": port}))
    refused(*call(netted, "listen_anywhere", {}))
    refused(*call(hostile, "listen_anywhere", {}))


def further_ipc_memfd_and_session(server, hostile, unboxed):
    """A SysV segment made outside, memory in a memfd, a child in a session of its own."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x4D414E44
    shmid = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096), ctypes.c_int(0o1600))
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    try:
        refused(*call(hostile, "sysv_shm", {"key": key}))
        escaped(*call(unboxed, "sysv_shm", {"key": key}))
    finally:
        libc.shmctl(ctypes.c_int(shmid), ctypes.c_int(0), None)  # IPC_RMID
    refused(*call(hostile, "memfd_memory", {"mib": 64}))
    refused(*call(hostile, "new_session", {}))
    escaped(*call(unboxed, "new_session", {}))


def further_chmod(server, hostile, unboxed):
    """The mode of the issuer key and of a file outside (found by the second outside attack:
    metadata calls are not Landlock's)."""
    before = os.stat(server.issuer_key).st_mode
    refused(*call(hostile, "chmod_file", {"path": str(server.issuer_key), "mode": 0o644}))
    assert os.stat(server.issuer_key).st_mode == before
    refused(*call(hostile, "chmod_file", {"path": str(server.o / "notes.txt"), "mode": 0o4777}))


FURTHER = [further_signal, further_meddle, further_udp, further_hard_link, further_chmod,
           further_mptcp_and_listen, further_ipc_memfd_and_session]


@pytest.mark.parametrize("attack", FURTHER, ids=lambda f: f.__name__.removeprefix("further_"))
def test_a_further_attack_is_refused(server, hostile, everything, unboxed, attack):
    attack(server, hostile, unboxed)
    assert server.proc.poll() is None, "the gateway died"
    assert_still_serving(server, hostile, everything)
