"""Calls held for human approval, end to end: @modelcontextprotocol/server-filesystem's write_file
(annotated destructiveHint: true, so the default policy holds it) called through `mandate serve`'s
gateway with the official Python MCP client, and voted on from the CLI in other processes.

One server for the module: only the `files` upstream (stdio, rooted in a temporary directory),
a 3 s approval hold, and the default policy pack with `quorum` set to 2 (approvers: role:approver,
here bob, carol and alice). Pinned: an expired request takes no votes and its call is asked anew;
quorum 2 needs two distinct humans and buys exactly one call; a request and its vote survive a
restart; the audit log tells the whole story and verifies; nobody in the call's chain (the agent,
the user who delegated to it) can vote.
"""
import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp.shared.exceptions import MCPError
from standardwebhooks import Webhook, WebhookVerificationError

from test_gateway import FILESYSTEM, Agent, GatewayServer, text_of
from test_interop import Client, b64url_decode, free_port, run_server, unique_name

HOLD_SECONDS = 3
QUORUM = 2
APPROVAL_REQUIRED = -32004  # the JSON-RPC code of a call held for approval


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint: keeps every delivery (headers, raw body) and answers 204."""

    deliveries: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.deliveries.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class ApprovalServer(GatewayServer):
    """`mandate serve` with the `files` upstream alone, a short hold, quorum 2, and a restart that
    keeps the home, the database and the port."""

    restarting = False

    def configure(self) -> None:
        if self.restarting:
            return
        self.files_root = self.home / "files-root"
        self.files_root.mkdir()
        # Every approval change is POSTed here, signed with this secret (Standard Webhooks).
        self.webhook_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        secret_file = self.home / "whsec"
        secret_file.write_text(self.webhook_secret + "\n")
        os.chmod(secret_file, 0o600)
        self.receiver = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        hook_url = f"http://127.0.0.1:{self.receiver.server_address[1]}/hook"
        cfg_path = self.home / "server" / "server.toml"
        cfg = cfg_path.read_text()
        assert 'approval_hold = "60s"' in cfg, cfg
        cfg = cfg.replace('approval_hold = "60s"', f'approval_hold = "{HOLD_SECONDS}s"')
        cfg_path.write_text(cfg + f"""
[approvals]
webhooks = [{{ url = {json.dumps(hook_url)}, secret = {json.dumps("@" + str(secret_file))} }}]

[upstream.files]
stdio = ["node", {json.dumps(str(FILESYSTEM))}, {json.dumps(str(self.files_root))}]
pass_env = ["PATH", "HOME"]
sandbox = "off"
""")
        data_path = self.home / "server" / "policies" / "data.json"
        data = json.loads(data_path.read_text())
        assert data["mandate_config"]["approvers"] == ["role:approver"], data
        data["mandate_config"]["quorum"] = QUORUM
        data_path.write_text(json.dumps(data))

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.restarting and args[:1] == ("init",):
            # Server.start runs `mandate init`, which refuses a home that is initialised already.
            return subprocess.CompletedProcess(args, 0, "", "")
        return super().run_cli(*args, check=check)

    def restart(self) -> None:
        """Stops `mandate serve` (SIGTERM) and serves the same home on the same port again."""
        self.stop()
        assert self.proc.poll() is not None
        self.http = requests.Session()
        self.restarting = True
        try:
            self.start()
        finally:
            self.restarting = False

    def sql(self, statement: str, *params) -> int:
        """Runs one statement on the server's database (the server keeps running); rows changed."""
        db = sqlite3.connect(self.home / "server" / "mandate.db", timeout=10)
        try:
            with db:
                return db.execute(statement, params).rowcount
        finally:
            db.close()


@pytest.fixture(scope="module")
def server():
    """Named `server` so conftest.py attaches the `mandate serve` log to failures."""
    for srv in run_server(ApprovalServer, "mandate-approvals-"):
        for user in ("bob", "carol", "alice"):
            srv.run_cli("user", "create", user, "--role", "approver", "--json")
        yield srv


# -- helpers ---------------------------------------------------------------------------------------

def write(agent: Agent, path, content: str):
    """write_file through the gateway in a fresh MCP session: the CallToolResult, or the MCPError
    the SDK raises for a JSON-RPC error."""
    async def go():
        async with agent.session() as s:
            try:
                return await s.call_tool("write_file", {"path": str(path), "content": content})
            except MCPError as e:
                return e
    return asyncio.run(go())


def held(result, state: str = "pending") -> MCPError:
    """Asserts the call was held for approval (not made), its request in `state`."""
    assert isinstance(result, MCPError), f"the call was made: {text_of(result)}"
    assert result.code == APPROVAL_REQUIRED, (result.code, result.message)
    assert result.data["state"] == state, (result.message, result.data)
    assert result.data["approval_id"] in result.message, result.message
    return result


def made(result) -> None:
    assert not isinstance(result, MCPError), f"the call was refused: {result.message}"
    assert not result.is_error, text_of(result)


def pending(e: MCPError, approvals: int) -> str:
    """The start of what a caller is told while its request waits with `approvals` votes."""
    return (f"approval pending: write_file on files is held for approval as request "
            f"{e.data['approval_id']} (approvers: role:approver; {approvals} of {QUORUM} approvals;")


class HomeKeyAgent(Agent):
    """An agent for `files` whose key `mandate agent create` made in MANDATE_HOME/keys, so that
    `--as agent:NAME` really asks the server (for an agent registered from Python, the CLI fails
    before asking anything: no private key on this machine). Its mandate is set by the test."""

    def __init__(self, server, prefix: str):
        name = unique_name(prefix)
        server.run_cli("agent", "create", name, "--scopes", "files:write_file",
                       "--audiences", "mcp:files", "--json")
        jwk = json.loads((server.home / "keys" / f"agent_{name}.jwk").read_text())
        key = Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))
        self.server, self.upstream, self.name = server, "files", f"agent:{name}"
        self.client = Client(server, self.name, key)
        self.token = None


def show(server, apr: str) -> dict:
    return server.cli_json("approvals", "show", apr, "--as", "user:bob", "--json")


def vote(server, apr: str, who: str) -> subprocess.CompletedProcess:
    return server.run_cli("approvals", "approve", apr, "--as", who, check=False)


def votes(shown: dict) -> list:
    return [(v["voter"], v["vote"]) for v in shown["votes"]]


def approve_to_quorum(server, apr: str) -> None:
    for who in ("user:bob", "user:carol"):
        out = vote(server, apr, who)
        assert out.returncode == 0, out.stderr
    assert show(server, apr)["state"] == "approved"


# -- tests -----------------------------------------------------------------------------------------

def test_an_expired_request_is_swept_takes_no_vote_and_its_call_is_asked_anew(server):
    agent = Agent(server, "files", "files:write_file", "expiry")
    target = server.files_root / "expiry.txt"
    first = held(write(agent, target, "too late"))
    apr = first.data["approval_id"]
    assert show(server, apr)["state"] == "pending"
    # Expiry is at least a minute by policy: the clock of this one request is moved instead.
    assert server.sql("UPDATE approvals SET expires_at = ? WHERE id = ?", int(time.time()) - 1, apr) == 1
    moved = time.monotonic()
    while (shown := show(server, apr))["state"] == "pending":
        assert time.monotonic() - moved < 2.5, f"not swept 2.5 s after its expiry: {shown}"
        time.sleep(0.1)
    assert shown["state"] == "expired" and shown["votes"] == [], shown
    # An approver's vote on it is refused, and not counted.
    late = vote(server, apr, "user:bob")
    assert late.returncode != 0, late.stdout
    assert "request expired before its quorum was reached" in late.stderr, late.stderr
    assert show(server, apr)["votes"] == []
    # The same call again opens a new request (a full hold, then pending), naming the expired one.
    retry = held(write(agent, target, "too late"))
    again = retry.data["approval_id"]
    assert again != apr
    assert retry.message.startswith(pending(retry, 0)), retry.message
    assert retry.message.endswith(f"; request {apr} for the same call expired unanswered"), retry.message
    assert show(server, again)["state"] == "pending"
    expired = [r["event"] for r in server.cli_json("audit", "query", "--action", "approval.expired",
                                                   "--json", "--limit", "500")
               if r["event"].get("approval_id") == apr]
    assert len(expired) == 1, expired
    assert not target.exists()


def test_quorum_two_needs_two_distinct_approvers_and_buys_exactly_one_call(server):
    agent = Agent(server, "files", "files:write_file", "quorum")
    target = server.files_root / "quorum.txt"
    first = held(write(agent, target, "two said yes"))
    apr = first.data["approval_id"]
    assert first.data["quorum"] == QUORUM and first.data["approvals"] == 0, first.data
    assert first.message.startswith(pending(first, 0)), first.message
    # bob's approval counts once and is not enough.
    out = vote(server, apr, "user:bob")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{apr} approval counted: 1 of 2 (pending)", out.stdout
    after_bob = held(write(agent, target, "two said yes"))
    assert after_bob.data["approval_id"] == apr and after_bob.data["approvals"] == 1, after_bob.data
    assert after_bob.message.startswith(pending(after_bob, 1)), after_bob.message
    assert not target.exists()
    # bob again is refused and does not count.
    twice = vote(server, apr, "user:bob")
    assert twice.returncode != 0, twice.stdout
    assert "user:bob has already voted on this request: each approver counts once" in twice.stderr, twice.stderr
    shown = show(server, apr)
    assert shown["state"] == "pending" and votes(shown) == [("user:bob", "approve")], shown
    # carol's approval makes the quorum: the same call goes through, once.
    out = vote(server, apr, "user:carol")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(f"{apr} approved: the held call goes through"), out.stdout
    made(write(agent, target, "two said yes"))
    assert target.read_text() == "two said yes"
    written = target.stat().st_mtime_ns
    shown = show(server, apr)
    assert shown["state"] == "approved" and shown["released_at"] is not None, shown
    assert votes(shown) == [("user:bob", "approve"), ("user:carol", "approve")], shown
    # The same call again is a new request, and is not made.
    again = held(write(agent, target, "two said yes"))
    assert again.data["approval_id"] != apr and again.data["approvals"] == 0, again.data
    assert target.read_text() == "two said yes" and target.stat().st_mtime_ns == written


def test_a_pending_request_and_its_vote_survive_a_restart_and_then_release_the_call(server):
    agent = Agent(server, "files", "files:write_file", "restart")
    target = server.files_root / "restart.txt"
    apr = held(write(agent, target, "across a restart")).data["approval_id"]
    assert vote(server, apr, "user:bob").returncode == 0
    old_pid = server.proc.pid
    server.restart()
    assert server.proc.pid != old_pid
    listed = server.cli_json("approvals", "list", "--state", "pending", "--as", "user:carol", "--json")
    assert apr in [a["id"] for a in listed["approvals"]], listed
    shown = show(server, apr)
    assert shown["state"] == "pending" and votes(shown) == [("user:bob", "approve")], shown
    assert not target.exists()
    out = vote(server, apr, "user:carol")
    assert out.returncode == 0, out.stderr
    assert show(server, apr)["state"] == "approved"
    made(write(agent, target, "across a restart"))  # a fresh MCP session on the new process
    assert target.read_text() == "across a restart"


def test_the_audit_log_tells_request_votes_decision_and_one_released_call_and_verifies(server):
    agent = Agent(server, "files", "files:write_file", "audited")
    target = server.files_root / "audited.txt"
    apr = held(write(agent, target, "on the record")).data["approval_id"]
    approve_to_quorum(server, apr)
    made(write(agent, target, "on the record"))
    assert target.read_text() == "on the record"
    verify = server.run_cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # `audit query --approval` tells the request's story, oldest first.
    rows = server.cli_json("audit", "query", "--approval", apr, "--json")
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    story = [r["event"] for r in rows]
    assert all(e.get("approval_id") == apr for e in story), story
    told = [(e["kind"], e["action"], e["principal"], e["result"], e.get("decision"),
             e["details"].get("vote")) for e in story]
    assert told == [
        ("approval", "approval.requested", agent.name, "ok", None, None),
        ("tool.call", "mcp.tools/call", agent.name, "refused", "approval", None),  # the held call
        ("approval", "approval.vote", "user:bob", "ok", None, "approve"),
        ("approval", "approval.vote", "user:carol", "ok", None, "approve"),
        ("approval", "approval.approved", "user:carol", "ok", None, None),
        ("tool.call", "mcp.tools/call", agent.name, "ok", "approval", None),  # the released call
    ], json.dumps(story, indent=1)
    requested, held_call, released = story[0], story[1], story[-1]
    assert requested["details"]["call"]["arguments"] == {"path": str(target), "content": "on the record"}
    assert requested["details"]["quorum"] == QUORUM and requested["chain"] == [agent.name]
    assert held_call["error"] == "approval_pending", held_call
    assert released["details"]["action"]["arguments"] == requested["details"]["call"]["arguments"]
    assert released["chain"] == [agent.name] and released["resource"] == "files/write_file"


def test_neither_the_agent_nor_the_user_who_delegated_to_it_can_vote_on_its_call(server):
    agent = HomeKeyAgent(server, "delegate")
    # alice (an approver herself) delegates write_file to it.
    agent.token = server.run_cli("delegate", "--as", "user:alice", "--to", agent.name, "--aud", "mcp:files",
                                 "--scope", "files:write_file").stdout.strip()
    target = server.files_root / "delegated.txt"
    apr = held(write(agent, target, "from alice's agent")).data["approval_id"]
    shown = show(server, apr)
    assert shown["chain"] == ["user:alice", agent.name] and shown["requested_by"] == agent.name, shown
    own = vote(server, apr, agent.name)
    assert own.returncode != 0, own.stdout
    assert f"{agent.name} is not a user" in own.stderr, own.stderr
    root = vote(server, apr, "user:alice")
    assert root.returncode != 0, root.stdout
    assert "user:alice is in the chain that made this call and cannot vote on it" in root.stderr, root.stderr
    shown = show(server, apr)
    assert shown["state"] == "pending" and shown["votes"] == [], shown
    assert not target.exists()


def test_webhooks_verify_with_the_standard_webhooks_library_and_tell_the_story(server):
    """The receiver checks each delivery with the Standard Webhooks reference library (signature
    and its 5-minute timestamp window), then reads the payload a chat tool would render."""
    agent = Agent(server, "files", "files:write_file", "hooked")
    target = server.files_root / "hooked.txt"
    apr = held(write(agent, target, "announced")).data["approval_id"]
    assert vote(server, apr, "user:bob").returncode == 0
    deny = server.run_cli("approvals", "deny", apr, "--as", "user:carol", "--reason", "not this file",
                          check=False)
    assert deny.returncode == 0, deny.stderr
    deadline = time.monotonic() + 10
    while True:
        mine = [(h, b) for h, b in list(Receiver.deliveries) if apr.encode() in b]
        kinds = [json.loads(b)["type"] for _, b in mine]
        if "approval.denied" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert kinds == ["approval.requested", "approval.vote", "approval.denied"], kinds
    hook = Webhook(server.webhook_secret)
    for headers, body in mine:
        payload = hook.verify(body, headers)
        assert payload["data"]["id"] == apr
    requested, voted, denied = (json.loads(b) for _, b in mine)
    assert requested["data"]["call"]["arguments"] == {"path": str(target), "content": "announced"}
    assert requested["data"]["text"].startswith(f"Approval request {apr} from {agent.name}: run write_file on files")
    assert f"mandate approvals approve {apr}" in requested["data"]["approve_command"]
    assert voted["data"]["by"] == "user:bob" and "1 of 2 approvals" in voted["data"]["text"]
    assert denied["data"]["state"] == "denied" and denied["data"]["resolution"] == "not this file"
    headers, body = mine[0]
    # The library refuses what a forger or a replayer would send.
    with pytest.raises(WebhookVerificationError):
        hook.verify(body.replace(b"write_file", b"read_file"), headers)
    stale = dict(headers, **{"webhook-timestamp": str(int(time.time()) - 600)})
    with pytest.raises(WebhookVerificationError):
        hook.verify(body, stale)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode()).verify(body, headers)
    assert not target.exists()
