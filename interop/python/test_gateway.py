"""The gateway end to end: real MCP servers from npm and PyPI behind `mandate serve`, driven by the
official Python MCP SDK client (and raw HTTP where the wire itself is the point).

Upstreams (declared in server.toml before the server starts):
- `demo`: the binary's own demo server (`mandate demo-mcp`, stdio);
- `everything`: @modelcontextprotocol/server-everything over stdio;
- `files`: @modelcontextprotocol/server-filesystem over stdio, rooted in a temporary directory;
- `web`: server-everything over Streamable HTTP (its own process);
- `keyed` / `keyed-stdio`: fixture_mcp.py (the Python SDK's MCPServer) over HTTP and stdio, given
  a secret header / variable that it checks by hash and never returns.
"""
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from test_interop import Server, free_port, kill_groups, run_server
from test_pdp import resource_proof

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parent / "node" / "node_modules" / "@modelcontextprotocol"
EVERYTHING = NODE_MODULES / "server-everything" / "dist" / "index.js"
FILESYSTEM = NODE_MODULES / "server-filesystem" / "dist" / "index.js"
FIXTURE = HERE / "fixture_mcp.py"
SECRET = "upstream-secret-" + uuid.uuid4().hex
SECRET_SHA = hashlib.sha256(SECRET.encode()).hexdigest()


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        try:
            requests.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    pytest.fail(f"{what} did not listen on {port}")


class GatewayServer(Server):
    """`mandate serve` with upstreams declared in server.toml."""

    def configure(self) -> None:
        self.files_root = self.home / "files-root"
        (self.files_root / "src").mkdir(parents=True)
        (self.files_root / "src" / "main.txt").write_text("hello from the repo\n")
        secret_file = self.home / "upstream-key"
        secret_file.write_text(SECRET + "\n")
        os.chmod(secret_file, 0o600)
        self.web_port, self.keyed_port = free_port(), free_port()
        env = dict(os.environ, PORT=str(self.web_port))
        self.web = subprocess.Popen(["node", str(EVERYTHING), "streamableHttp"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        fixture_env = dict(os.environ, FIXTURE_EXPECTED_SHA256=SECRET_SHA,
                           FIXTURE_ISSUER=f"http://127.0.0.1:{self.port}")
        self.keyed = subprocess.Popen([sys.executable, str(FIXTURE), "http", str(self.keyed_port)],
                                      env=fixture_env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.web_port, self.web, "server-everything (streamableHttp)")
        wait_port(self.keyed_port, self.keyed, "fixture_mcp.py http")
        path = lambda p: json.dumps(str(p))
        toml = f"""
[upstream.demo]
stdio = [{path(self.binary)}, "demo-mcp"]
pass_env = []
sandbox = "off"

[upstream.everything]
stdio = ["node", {path(EVERYTHING)}, "stdio"]
pass_env = ["PATH", "HOME"]
sandbox = "off"

[upstream.files]
stdio = ["node", {path(FILESYSTEM)}, {path(self.files_root)}]
pass_env = ["PATH", "HOME"]
sandbox = "off"

[upstream.web]
url = "http://127.0.0.1:{self.web_port}/mcp"

[upstream.web2]
url = "http://127.0.0.1:{self.web_port}/mcp"

[upstream.keyed]
url = "http://127.0.0.1:{self.keyed_port}/mcp"
secret_header = {{ X-Upstream-Key = "@{secret_file}" }}

[upstream.aware]
url = "http://127.0.0.1:{self.keyed_port}/mcp"
forward_mandate = true

[upstream.keyed-stdio]
stdio = [{path(sys.executable)}, {path(FIXTURE)}, "stdio"]
pass_env = ["PATH", "HOME"]
sandbox = "off"
env = {{ FIXTURE_EXPECTED_SHA256 = "{SECRET_SHA}" }}
secret_env = {{ FIXTURE_KEY = "@{secret_file}" }}
"""
        cfg_path = self.home / "server" / "server.toml"
        # Held calls wait 6 s for their approval here (60 s by default).
        cfg_path.write_text(cfg_path.read_text().replace('approval_hold = "60s"', 'approval_hold = "6s"') + toml)
        # The README's argument rule: the coder may write only under <root>/src.
        data_path = self.home / "server" / "policies" / "data.json"
        data = json.loads(data_path.read_text())
        data["mandate_config"]["argument_rules"] = [{
            "principals": ["*"], "server": "files", "tools": ["create_directory", "write_file", "edit_file"],
            "argument": "path", "prefixes": [str(self.files_root / "src")],
        }]
        data_path.write_text(json.dumps(data))

    def stop(self) -> None:
        super().stop()
        kill_groups(getattr(self, "web", None), getattr(self, "keyed", None))


@pytest.fixture(scope="module")
def gw():
    yield from run_server(GatewayServer, "mandate-gateway-")


def mcp_url(server, name: str) -> str:
    return f"{server.base_url}/mcp/{name}"


class Agent:
    """An agent with a mandate for one upstream, calling it through the gateway."""

    def __init__(self, server, upstream: str, scopes: str, prefix: str = "gw"):
        self.server = server
        self.upstream = upstream
        self.client = server.register(prefix, scopes=scopes, audiences=f"mcp:{upstream}")
        self.issued = self.client.token(scope=scopes, audience=f"mcp:{upstream}")
        self.token = self.issued.access_token
        self.name = self.client.name

    def headers(self, method: str, url: str) -> dict:
        return {"Authorization": f"DPoP {self.token}",
                "DPoP": resource_proof(self.client, method, url, self.token)}

    def post(self, body, upstream=None, extra=None) -> requests.Response:
        url = mcp_url(self.server, upstream or self.upstream)
        headers = self.headers("POST", url)
        headers["Accept"] = "application/json, text/event-stream"
        headers.update(extra or {})
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return requests.post(url, data=data, timeout=30,
                             headers=dict(headers, **{"Content-Type": "application/json"}))

    @asynccontextmanager
    async def session(self):
        agent = self

        class DPoP(httpx2.Auth):
            def auth_flow(self, request):
                url = str(request.url).split("?")[0]
                request.headers.update(agent.headers(request.method, url))
                yield request

        async with httpx2.AsyncClient(auth=DPoP(), timeout=60) as http:
            async with streamable_http_client(mcp_url(self.server, self.upstream),
                                              http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as s:
                    await s.initialize()
                    yield s


def run(coro):
    return asyncio.run(coro)


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


# -- filtering, allowed and refused calls --------------------------------------------------------

def test_tools_list_shows_only_the_tools_the_mandate_covers(gw):
    agent = Agent(gw, "everything", "everything:echo everything:get-sum")

    async def go():
        async with agent.session() as s:
            return sorted(t.name for t in (await s.list_tools()).tools)
    assert run(go()) == ["echo", "get-sum"]


def test_an_allowed_call_reaches_the_stdio_upstream_and_answers(gw):
    agent = Agent(gw, "everything", "everything:echo")

    async def go():
        async with agent.session() as s:
            return await s.call_tool("echo", {"message": "through the gateway"})
    result = run(go())
    assert "through the gateway" in text_of(result) and not result.is_error


def test_a_call_outside_scope_is_403_insufficient_scope_and_never_reaches_the_upstream(gw):
    reader = Agent(gw, "demo", "demo:read_note demo:list_notes")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "delete_note", "arguments": {"name": "todo"}}}
    resp = reader.post(call)
    assert resp.status_code == 403, resp.text
    challenges = resp.headers.get("WWW-Authenticate", "")
    assert 'error="insufficient_scope"' in challenges and 'scope="demo:delete_note"' in challenges
    assert "resource_metadata=" in challenges
    # A tool that does not exist is refused in exactly the same way (hidden = missing).
    missing = reader.post(dict(call, params={"name": "no_such_tool", "arguments": {}}))
    assert missing.status_code == 403 and 'scope="demo:no_such_tool"' in missing.headers["WWW-Authenticate"]
    # The note is still there: the call never reached the upstream.
    listed = reader.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                          "params": {"name": "list_notes", "arguments": {}}})
    assert "todo" in listed.json()["result"]["content"][0]["text"], listed.text


def test_a_destructive_call_is_held_for_approval_and_not_made(gw):
    planner = Agent(gw, "demo", "demo:*")
    resp = planner.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "delete_note", "arguments": {"name": "todo"}}})
    assert resp.status_code == 200, resp.text
    err = resp.json()["error"]
    assert err["code"] == -32004, err
    assert err["message"].startswith("approval pending: delete_note on demo"), err
    assert err["data"]["decision_id"] in err["message"]
    assert err["data"]["approval_id"].startswith("apr_") and err["data"]["approvers"] == ["role:approver"]
    assert f"mandate approvals approve {err['data']['approval_id']}" in err["message"]
    listed = planner.post({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                           "params": {"name": "list_notes", "arguments": {}}})
    assert "todo" in listed.json()["result"]["content"][0]["text"]


def test_an_argument_rule_refuses_a_write_outside_its_path(gw):
    # server-filesystem annotates write_file as destructive (the default policy holds it for
    # approval); create_directory writes without destroying, so the argument rule decides it.
    coder = Agent(gw, "files", "files:create_directory files:write_file", "coder")
    inside = str(gw.files_root / "src" / "made")
    outside = str(gw.files_root / "outside")
    sneaky = str(gw.files_root / "src" / ".." / "escape")

    async def go():
        async with coder.session() as s:
            ok = await s.call_tool("create_directory", {"path": inside})
            errors = []
            for path in (outside, sneaky):
                try:
                    r = await s.call_tool("create_directory", {"path": path})
                    errors.append(("answered", text_of(r)))
                except Exception as e:  # the SDK raises on a JSON-RPC error
                    errors.append(("refused", str(e)))
            try:
                await s.call_tool("write_file", {"path": inside + "/f.txt", "content": "x"})
                held = "answered"
            except Exception as e:
                held = str(e)
            return ok, errors, held
    ok, errors, held = run(go())
    assert not ok.is_error, text_of(ok)
    assert (gw.files_root / "src" / "made").is_dir()
    for kind, message in errors:
        assert kind == "refused" and "only with path under" in message, (kind, message)
    assert not (gw.files_root / "outside").exists()
    assert not (gw.files_root / "escape").exists()
    assert "approval pending: write_file on files" in held, held
    assert not (gw.files_root / "src" / "made" / "f.txt").exists()


def test_write_file_is_held_until_a_human_approves_it_from_the_cli(gw):
    """server-filesystem's write_file says destructiveHint: held, nothing written; the agent
    itself cannot approve; bob approves from another process; the same call then goes through
    once; other content needs its own approval; a denial carries bob's reason."""
    coder = Agent(gw, "files", "files:write_file", "held")
    gw.run_cli("user", "create", "bob", "--role", "approver", check=False)
    target = str(gw.files_root / "src" / "held.txt")

    async def write(content):
        async with coder.session() as s:
            try:
                r = await s.call_tool("write_file", {"path": target, "content": content})
                return ("answered", text_of(r), r.is_error)
            except Exception as e:  # the SDK raises on a JSON-RPC error
                return ("refused", str(e), None)

    kind, message, _ = run(write("v1"))
    assert kind == "refused" and "approval pending: write_file on files" in message, message
    apr = re.search(r"apr_[A-Za-z0-9_-]{22}", message).group(0)
    assert not (gw.files_root / "src" / "held.txt").exists()
    # (That neither the agent nor the user who delegated to it can vote is test_approvals.py's.)
    shown = json.loads(gw.run_cli("approvals", "show", apr, "--as", "user:bob", "--json").stdout)
    assert shown["state"] == "pending" and shown["tool"] == "write_file"
    assert shown["chain"] == [coder.name] and shown["call"]["arguments"]["path"] == target
    gw.run_cli("approvals", "approve", apr, "--as", "user:bob", "--reason", "ok")
    kind, message, is_error = run(write("v1"))
    assert kind == "answered" and not is_error, message
    assert (gw.files_root / "src" / "held.txt").read_text() == "v1"
    # Once: the same call again, and other content, are new requests.
    kind, message, _ = run(write("v1"))
    again = re.search(r"apr_[A-Za-z0-9_-]{22}", message).group(0)
    assert kind == "refused" and again != apr, message
    kind, message, _ = run(write("v2"))
    other = re.search(r"apr_[A-Za-z0-9_-]{22}", message).group(0)
    assert other not in (apr, again), message
    gw.run_cli("approvals", "deny", other, "--as", "user:bob", "--reason", "v1 is final")
    kind, message, _ = run(write("v2"))
    assert kind == "refused" and "denied by user:bob: v1 is final" in message, message
    assert (gw.files_root / "src" / "held.txt").read_text() == "v1"


def test_a_held_write_completes_when_another_process_approves_it(gw):
    """The official client's call waits at the gateway; bob, in another process, finds it in
    the queue and approves it; the same call then completes and the file is written."""
    coder = Agent(gw, "files", "files:write_file", "waiting")
    gw.run_cli("user", "create", "bob", "--role", "approver", check=False)
    target = str(gw.files_root / "src" / "waited.txt")

    def approve_when_listed():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            listed = json.loads(gw.run_cli("approvals", "list", "--state", "pending",
                                           "--as", "user:bob", "--json").stdout)
            mine = [a for a in listed["approvals"]
                    if a["tool"] == "write_file" and a["call"]["arguments"].get("path") == target]
            if mine:
                gw.run_cli("approvals", "approve", mine[0]["id"], "--as", "user:bob")
                return mine[0]["id"]
            time.sleep(0.2)
        return None

    async def go():
        async with coder.session() as s:
            call = asyncio.create_task(
                s.call_tool("write_file", {"path": target, "content": "approved while waiting"}))
            approved = await asyncio.to_thread(approve_when_listed)
            return approved, await call

    approved, result = run(go())
    assert approved, "the held call was listed for bob"
    assert not result.is_error, text_of(result)
    assert (gw.files_root / "src" / "waited.txt").read_text() == "approved while waiting"


# -- the wire ---------------------------------------------------------------------------------------

def test_a_missing_mandate_gets_401_with_resource_metadata(gw):
    url = mcp_url(gw, "demo")
    resp = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert resp.status_code == 401
    rm = f"{gw.base_url}/.well-known/oauth-protected-resource/mcp/demo"
    assert f'resource_metadata="{rm}"' in resp.headers["WWW-Authenticate"]
    meta = requests.get(rm, timeout=10).json()
    assert meta["resource"] == url and meta["authorization_servers"] == [gw.issuer]


def test_malformed_json_rpc_gets_the_json_rpc_error(gw):
    agent = Agent(gw, "demo", "demo:list_notes")
    cases = [(b"{", -32700), (b'{"jsonrpc": "2.0"}', -32600), (b"[]", -32600),
             (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', -32600)]
    for body, code in cases:
        resp = agent.post(body)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"]["code"] == code, (body, resp.text)
    bad_params = agent.post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": 5}})
    assert bad_params.json()["error"]["code"] == -32602


def test_a_batch_and_notifications_are_handled(gw):
    agent = Agent(gw, "demo", "demo:list_notes demo:read_note")
    resp = agent.post([
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call",
         "params": {"name": "read_note", "arguments": {"name": "welcome"}}},
    ])
    answers = {a["id"]: a for a in resp.json()}
    assert set(answers) == {"a", "b"} and "result" in answers["b"], resp.text
    only_notification = agent.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert only_notification.status_code == 202


def test_stateless_mcp_headers_must_agree_with_the_body(gw):
    agent = Agent(gw, "demo", "demo:list_notes demo:read_note")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "read_note", "arguments": {"name": "welcome"}}}
    agreed = agent.post(call, extra={"Mcp-Method": "tools/call", "Mcp-Name": "read_note",
                                     "MCP-Protocol-Version": "2026-07-28"})
    assert agreed.status_code == 200 and "result" in agreed.json(), agreed.text
    lying = agent.post(call, extra={"Mcp-Method": "tools/call", "Mcp-Name": "list_notes"})
    assert lying.status_code == 400 and lying.json()["error"]["code"] == -32600


def test_each_protocol_revision_initializes(gw):
    agent = Agent(gw, "demo", "demo:list_notes")
    for version in ("2025-06-18", "2025-11-25", "2026-07-28"):
        resp = agent.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}},
            extra={"MCP-Protocol-Version": version})
        assert resp.json()["result"]["protocolVersion"] == version, resp.text


# -- Streamable HTTP upstreams, sessions and credentials ---------------------------------------------

def test_a_streamable_http_upstream_is_filtered_and_called(gw):
    agent = Agent(gw, "web", "web:echo")

    async def go():
        async with agent.session() as s:
            names = sorted(t.name for t in (await s.list_tools()).tools)
            echoed = await s.call_tool("echo", {"message": "over http"})
            return names, echoed
    names, echoed = run(go())
    assert names == ["echo"]
    assert "over http" in text_of(echoed)


def test_a_batch_with_a_list_is_refused_for_an_http_upstream_whose_answers_pass_through(gw):
    agent = Agent(gw, "web", "web:echo")
    resp = agent.post([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                       {"jsonrpc": "2.0", "id": 2, "method": "ping"}])
    assert resp.status_code == 400 and resp.json()["error"]["code"] == -32600, resp.text


def test_a_call_before_any_list_is_decided_with_the_annotations_the_gateway_learns(gw):
    # Nobody listed web2's tools: the gateway asks the upstream itself (a session of its own),
    # so the policy sees echo's annotations (readOnlyHint) on the very first call.
    agent = Agent(gw, "web2", "web2:echo")

    async def go():
        async with agent.session() as s:
            return await s.call_tool("echo", {"message": "first"})
    assert "first" in text_of(run(go()))
    time.sleep(1.2)
    events = [r["event"] for r in gw.cli_json("audit", "query", "--principal", agent.name, "--json")]
    call = next(e for e in events if e.get("resource") == "web2/echo")
    assert call["details"]["action"]["annotations"].get("readOnlyHint") is True, call
    assert "read-only" in " ".join(call.get("reasons", [])), call


def test_a_session_belongs_to_the_agent_that_opened_it(gw):
    alice = Agent(gw, "web", "web:echo")
    mallory = Agent(gw, "web", "web:echo")
    init = alice.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = init.headers.get("Mcp-Session-Id")
    assert session, init.headers
    stolen = mallory.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                          extra={"Mcp-Session-Id": session})
    assert stolen.status_code == 404, stolen.text


def test_injected_credentials_reach_the_upstream_and_never_the_agent(gw):
    seen = []
    for upstream, expect in (("keyed", "header:match"), ("keyed-stdio", "env:match")):
        agent = Agent(gw, upstream, f"{upstream}:key_check {upstream}:env_names")

        async def go():
            async with agent.session() as s:
                checked = await s.call_tool("key_check", {})
                names = await s.call_tool("env_names", {})
                return text_of(checked), text_of(names)
        checked, names = run(go())
        assert expect in checked, checked
        seen += [checked, names]
    # A stdio child sees only what its configuration names.
    assert "FIXTURE_KEY" in names and "MANDATE_HOME" not in names, names
    # The secret is in no answer, nor in the server's log or the audit log.
    assert not any(SECRET in t for t in seen)
    assert SECRET not in gw.log_path.read_text(errors="replace")
    export = gw.run_cli("audit", "export").stdout
    assert '"tool.call"' in export and SECRET not in export


def test_an_upstream_that_echoes_its_injected_key_does_not_hand_it_to_the_agent(gw):
    for upstream in ("keyed", "keyed-stdio"):  # a header over HTTP, a variable over stdio
        agent = Agent(gw, upstream, f"{upstream}:leak_key")

        async def go():
            async with agent.session() as s:
                return text_of(await s.call_tool("leak_key", {}))
        # The upstream got the key (it answers with it); the gateway's answer has it redacted.
        assert run(go()) == "the key I was given: [redacted]", upstream


def test_a_mandate_aware_upstream_gets_a_minted_mandate_for_the_call_never_the_agents_own(gw):
    agent = Agent(gw, "aware", "aware:forwarded_mandate aware:echo")

    async def go():
        async with agent.session() as s:
            return text_of(await s.call_tool("forwarded_mandate", {}))
    got = json.loads(run(go()))
    claims = got["claims"]
    own = json.loads(gw.run_cli("token", "inspect", agent.token, "--json").stdout)
    own = own.get("claims", own)
    # Verified by PyJWT against the authority's JWKS; bearer, for the upstream alone, the call's
    # scope only, at most a minute, the chain and every ancestor kept.
    assert got["scheme"] == "Bearer" and got["typ"] == "at+jwt"
    assert got["sha256"] != hashlib.sha256(agent.token.encode()).hexdigest()
    assert claims["aud"] in (f"http://127.0.0.1:{gw.keyed_port}", [f"http://127.0.0.1:{gw.keyed_port}"])
    assert claims["scope"] == "aware:forwarded_mandate"
    assert claims["sub"] == own["sub"] and claims["client_id"] == own["client_id"]
    assert claims["mandate"]["parents"][-1] == own["jti"]
    assert claims["mandate"]["max_depth"] == claims["mandate"]["depth"]
    assert 0 < claims["exp"] - claims["iat"] <= 60 and "cnf" not in claims
    # The call's audit event names the forwarded mandate by its jti.
    events = [json.loads(l) for l in gw.run_cli("audit", "export").stdout.splitlines() if l.strip()]
    bodies = [e.get("event", e) for e in events]
    assert any(b.get("details", {}).get("forwarded_mandate") == claims["jti"] for b in bodies), bodies[-3:]
    # An upstream that did not ask for one gets no Authorization at all.
    plain = Agent(gw, "keyed", "keyed:forwarded_mandate")

    async def go_plain():
        async with plain.session() as s:
            return text_of(await s.call_tool("forwarded_mandate", {}))
    assert run(go_plain()) == "none"


# -- revocation, restarts, audit ------------------------------------------------------------------

def test_a_revoked_agent_is_refused_within_a_second_on_an_open_session(gw):
    agent = Agent(gw, "demo", "demo:list_notes")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_notes", "arguments": {}}}
    assert agent.post(call).status_code == 200
    gw.run_cli("revoke", "agent", agent.name.split(":", 1)[1], "--json")
    revoked_at = time.monotonic()
    while True:
        resp = agent.post(call)
        if resp.status_code == 401:
            break
        assert time.monotonic() - revoked_at < 1.0, "still served a second after revocation"
        time.sleep(0.05)
    assert "principal_revoked" in resp.text or "revoked" in resp.headers.get("WWW-Authenticate", "")


def test_an_open_stream_of_a_revoked_agent_is_closed_within_a_second(gw):
    agent = Agent(gw, "web", "web:echo")
    init = agent.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = init.headers["Mcp-Session-Id"]
    agent.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
               extra={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})
    url = mcp_url(gw, "web")
    headers = dict(agent.headers("GET", url), **{"Accept": "text/event-stream",
                   "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"})
    stream = requests.get(url, headers=headers, stream=True, timeout=(5, 10))
    assert stream.status_code == 200, stream.text
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    gw.run_cli("revoke", "agent", agent.name.split(":", 1)[1], "--json")
    revoked_at = time.monotonic()
    for _ in stream.iter_content(chunk_size=None):
        assert time.monotonic() - revoked_at < 5, "the stream kept running after revocation"
    closed_after = time.monotonic() - revoked_at
    assert closed_after < 1.5, f"closed {closed_after:.2f}s after revocation"


def test_a_crashed_stdio_upstream_is_restarted_and_the_next_call_works(gw):
    agent = Agent(gw, "keyed-stdio", "keyed-stdio:crash keyed-stdio:key_check")
    crashed = agent.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "crash", "arguments": {}}})
    assert crashed.json()["error"]["code"] == -32050, crashed.text
    deadline = time.monotonic() + 20
    while True:
        resp = agent.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": {"name": "key_check", "arguments": {}}})
        if "result" in resp.json():
            break
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.2)
    metrics = requests.get(f"{gw.base_url}/metrics", timeout=10).text
    starts = re.search(r'mandate_gateway_upstream_starts_total\{upstream="keyed-stdio"\} (\d+)', metrics)
    assert starts and int(starts.group(1)) >= 2, metrics


def test_every_call_is_an_audit_event_with_its_chain_and_the_log_verifies(gw):
    agent = Agent(gw, "demo", "demo:read_note demo:list_notes")
    agent.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "read_note", "arguments": {"name": "welcome"}}})
    agent.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "delete_note", "arguments": {"name": "welcome", "password": "hunter2"}}})
    time.sleep(1.2)  # the checkpoint signer runs every half second
    events = [r["event"] for r in gw.cli_json("audit", "query", "--principal", agent.name, "--json")]
    calls = [e for e in events if e["kind"] == "tool.call"]
    by_tool = {e["resource"]: e for e in calls}
    allowed, refused = by_tool["demo/read_note"], by_tool["demo/delete_note"]
    assert allowed["decision"] == "allow" and allowed["result"] == "ok" and allowed["chain"] == [agent.name]
    assert allowed["details"]["action"]["arguments"] == {"name": "welcome"}
    assert refused["result"] == "refused" and refused["error"] == "insufficient_scope"
    assert "hunter2" not in json.dumps(calls)
    verify = gw.run_cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# -- mandate connect ---------------------------------------------------------------------------------

def test_mandate_connect_serves_an_stdio_client_and_renews_its_mandate_past_a_lifetime(gw):
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    name = "connect-" + uuid.uuid4().hex[:8]
    gw.run_cli("agent", "create", name, "--scopes", "demo:list_notes demo:read_note",
               "--audiences", "mcp:demo", "--json")
    ttl = 20
    params = StdioServerParameters(
        command=str(gw.binary),
        args=["connect", "--as", name, "--server", "demo", "--scope", "demo:list_notes demo:read_note",
              "--ttl", f"{ttl}s"],
        env={"MANDATE_HOME": str(gw.home), "PATH": os.environ["PATH"]})

    async def go():
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                tools = sorted(t.name for t in (await s.list_tools()).tools)
                first = text_of(await s.call_tool("read_note", {"name": "welcome"}))
                try:
                    await s.call_tool("delete_note", {"name": "todo"})
                    refused = "answered"
                except Exception as e:
                    refused = str(e)
                await asyncio.sleep(ttl + 2)  # past the first mandate's lifetime
                second = text_of(await s.call_tool("read_note", {"name": "welcome"}))
                return tools, first, refused, second
    tools, first, refused, second = run(go())
    assert tools == ["list_notes", "read_note"]
    assert "demo notes" in first and "demo notes" in second
    assert "needs scope demo:delete_note" in refused, refused
    issued = [r["event"] for r in gw.cli_json("audit", "query", "--principal", f"agent:{name}", "--json")
              if r["event"]["kind"] == "token.issued"]
    assert len(issued) >= 2, f"one mandate per lifetime: {len(issued)} issued"


def test_mandate_connect_relays_the_log_messages_an_http_upstream_sends_on_its_get_stream(gw):
    """server-everything (`web`, Streamable HTTP) sends simulated log messages on the session's
    standalone stream, answering no request: only `connect`'s GET stream can carry them to the
    stdio client."""
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    name = "stream-" + uuid.uuid4().hex[:8]
    scope = "web:toggle-simulated-logging"
    gw.run_cli("agent", "create", name, "--scopes", scope, "--audiences", "mcp:web", "--json")
    params = StdioServerParameters(
        command=str(gw.binary),
        args=["connect", "--as", name, "--server", "web", "--scope", scope],
        env={"MANDATE_HOME": str(gw.home), "PATH": os.environ["PATH"]})
    logged = []

    async def on_log(params):
        logged.append(params)

    async def go():
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w, logging_callback=on_log) as s:
                await s.initialize()
                await s.call_tool("toggle-simulated-logging", {})
                deadline = time.monotonic() + 15
                while not logged and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                # Calls still work with the stream open.
                await s.send_ping()
    run(go())
    assert logged, "no log message from the upstream's GET stream reached the stdio client"
    assert "message" in str(logged[0]), logged[0]
