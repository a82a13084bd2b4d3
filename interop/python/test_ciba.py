"""OpenID CIBA (poll mode) with RFC 9396 authorization_details, driven by a client that shares
none of Mandate's code: keys from `cryptography`, assertions and DPoP proofs signed by PyJWT,
HTTP by httpx. The action is server-filesystem's write_file (destructiveHint: the gateway would
hold it), approved by a human from the CLI: pending, approved, the mandate's
authorization_details, the one call it allows, a second use refused; denied and expired."""

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx2 as httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from test_gateway import FILESYSTEM, GatewayServer
from test_interop import free_port, kill_groups, run_server

CIBA = "urn:openid:params:grant-type:ciba"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Agent:
    """An agent with its own Ed25519 key, registered by its public key only."""

    def __init__(self, server, name: str):
        self.server = server
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
        self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        self.name = f"agent:{name}"
        server.run_cli("agent", "create", name, "--public-key", base64.b64encode(raw).decode(),
                       "--scopes", "files:write_file", "--audiences", "mcp:files")
        self.http = httpx.Client(timeout=30)
        self.md = self.http.get(f"{server.base_url}/.well-known/oauth-authorization-server").json()

    def assertion(self, aud: str) -> str:
        now = int(time.time())
        claims = {"iss": self.name, "sub": self.name, "aud": aud, "iat": now, "exp": now + 60,
                  "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"typ": "JWT"})

    def proof(self, method: str, url: str, token=None) -> str:
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
        if token:
            claims["ath"] = b64url(hashlib.sha256(token.encode()).digest())
        return jwt.encode(claims, self.key, algorithm="EdDSA",
                          headers={"typ": "dpop+jwt", "jwk": self.jwk})

    def bc_authorize(self, details, hint="user:carol", message="write the release notes", **extra):
        url = self.md["backchannel_authentication_endpoint"]
        form = {"client_assertion_type": ASSERTION, "client_assertion": self.assertion(url),
                "scope": "openid", "login_hint": hint, "binding_message": message,
                "authorization_details": json.dumps(details), **extra}
        return self.http.post(url, data=form)

    def poll(self, auth_req_id):
        url = self.md["token_endpoint"]
        form = {"grant_type": CIBA, "auth_req_id": auth_req_id,
                "client_assertion_type": ASSERTION,
                "client_assertion": self.assertion(self.md["issuer"])}
        return self.http.post(url, data=form, headers={"DPoP": self.proof("POST", url)})

    def call(self, token, tool, arguments, base_url=None):
        url = f"{base_url or self.server.base_url}/mcp/files"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}
        return self.http.post(url, json=body, headers={
            "Authorization": f"DPoP {token}", "DPoP": self.proof("POST", url, token),
            "Accept": "application/json, text/event-stream"})


@pytest.fixture(scope="module")
def gw():
    yield from run_server(GatewayServer, "mandate-ciba-")


def error(resp) -> str:
    assert resp.status_code == 400, (resp.status_code, resp.text)
    return resp.json()["error"]


def wait_interval():
    time.sleep(2.1)


def test_metadata_advertises_ciba_in_poll_mode(gw):
    md = httpx.get(f"{gw.base_url}/.well-known/oauth-authorization-server").json()
    assert md["backchannel_authentication_endpoint"] == f"{gw.base_url}/bc-authorize"
    assert md["backchannel_token_delivery_modes_supported"] == ["poll"]
    assert CIBA in md["grant_types_supported"]
    assert "tool_call" in md["authorization_details_types_supported"]


def test_an_approved_request_buys_one_mandate_for_exactly_one_call(gw):
    gw.run_cli("user", "create", "carol", "--role", "approver", check=False)
    agent = Agent(gw, "ciba-writer")
    target = str(gw.files_root / "src" / "ciba.txt")
    details = [{"type": "tool_call", "server": "files", "tool": "write_file",
                "arguments": {"path": target, "content": "approved"}}]
    r = agent.bc_authorize(details)
    assert r.status_code == 200, r.text
    started = r.json()
    auth_req_id = started["auth_req_id"]
    assert started["expires_in"] > 0 and started["interval"] >= 1
    assert error(agent.poll(auth_req_id)) == "authorization_pending"
    assert error(agent.poll(auth_req_id)) == "slow_down"
    # The agent itself cannot approve; carol does, from the CLI.
    shown = json.loads(gw.run_cli("approvals", "show", auth_req_id, "--as", "user:carol",
                                  "--json").stdout)
    assert shown["reason"] == "write the release notes" and shown["tool"] == "write_file"
    gw.run_cli("approvals", "approve", auth_req_id, "--as", "user:carol")
    wait_interval()
    r = agent.poll(auth_req_id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "DPoP"
    token = body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] in ("mcp:files", ["mcp:files"]) and claims["scope"] == "files:write_file"
    assert claims["cnf"]["jkt"]
    [detail] = claims["authorization_details"]
    assert detail["type"] == "tool_call" and detail["server"] == "files"
    assert detail["tool"] == "write_file" and detail["approval_id"] == auth_req_id
    assert detail["arguments"]["path"] == target
    # RFC 8785 of {"content": ..., "path": ...}: keys sorted, no spaces.
    canonical = json.dumps({"content": "approved", "path": target}, separators=(",", ":"),
                           sort_keys=True, ensure_ascii=False)
    assert detail["arguments_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    wait_interval()
    assert error(agent.poll(auth_req_id)) == "invalid_grant", "one mandate per approval"
    # Other arguments are not covered: the mandate is good for that one call only.
    other = agent.call(token, "write_file", {"path": target, "content": "changed"})
    assert "issued for the one call its authorization_details name" in other.text, other.text
    assert not (gw.files_root / "src" / "ciba.txt").exists()
    # The approved call goes through without being held again; once.
    ok = agent.call(token, "write_file", {"path": target, "content": "approved"})
    assert ok.status_code == 200 and "result" in ok.json(), ok.text
    assert (gw.files_root / "src" / "ciba.txt").read_text() == "approved"
    again = agent.call(token, "write_file", {"path": target, "content": "approved"})
    assert "already used" in again.json()["error"]["message"], again.text


def test_a_denied_request_says_access_denied_with_the_reason(gw):
    gw.run_cli("user", "create", "carol", "--role", "approver", check=False)
    agent = Agent(gw, "ciba-denied")
    details = [{"type": "tool_call", "server": "files", "tool": "write_file",
                "arguments": {"path": str(gw.files_root / "src" / "no.txt"), "content": "x"}}]
    auth_req_id = agent.bc_authorize(details).json()["auth_req_id"]
    gw.run_cli("approvals", "deny", auth_req_id, "--as", "user:carol", "--reason", "not now")
    r = agent.poll(auth_req_id)
    assert error(r) == "access_denied"
    assert "denied by user:carol: not now" in r.json()["error_description"]


def test_an_expired_request_says_expired_token(gw):
    gw.run_cli("user", "create", "carol", "--role", "approver", check=False)
    agent = Agent(gw, "ciba-late")
    details = [{"type": "tool_call", "server": "files", "tool": "write_file",
                "arguments": {"path": str(gw.files_root / "src" / "late.txt"), "content": "x"}}]
    r = agent.bc_authorize(details, requested_expiry="60")
    assert r.json()["expires_in"] == 60, r.text
    auth_req_id = r.json()["auth_req_id"]
    # A minute is the shortest expiry; the test moves the clock of this one request instead.
    db = sqlite3.connect(gw.home / "server" / "mandate.db")
    with db:
        db.execute("UPDATE approvals SET expires_at = ? WHERE id = ?",
                   (int(time.time()) - 1, auth_req_id))
    db.close()
    assert error(agent.poll(auth_req_id)) == "expired_token"


def test_bad_requests_get_the_ciba_errors(gw):
    agent = Agent(gw, "ciba-bad")
    inside = {"path": str(gw.files_root / "src" / "bad.txt"), "content": "x"}
    good = [{"type": "tool_call", "server": "files", "tool": "write_file", "arguments": inside}]
    r = agent.bc_authorize(good, hint="user:nobody-here")
    assert error(r) == "unknown_user_id"
    # The policy holds write_file for role:approver: the agent cannot pick a user outside it.
    gw.run_cli("user", "create", "dave", check=False)
    r = agent.bc_authorize(good, hint="user:dave")
    assert error(r) == "unknown_user_id"
    assert "the policy holds this call for role:approver" in r.json()["error_description"], r.text
    # What the policy refuses outright cannot be approved into being.
    outside = [dict(good[0], arguments={"path": str(gw.files_root / "elsewhere.txt"), "content": "x"})]
    r = agent.bc_authorize(outside)
    assert error(r) == "access_denied"
    assert "the policy refuses this call" in r.json()["error_description"], r.text
    r = agent.bc_authorize([good[0], good[0]])
    assert error(r) == "invalid_authorization_details"
    r = agent.bc_authorize([{"type": "payment", "amount": 1}])
    assert error(r) == "invalid_authorization_details"
    r = agent.bc_authorize(good, message="x" * 300)
    assert error(r) == "invalid_binding_message"
    # Text that could pass for Mandate's own lines in a chat message is refused.
    for sneaky in ("ok\u2028Approve: mandate approvals approve apr_x", "abc\u202edcba", "a\u200bb"):
        assert error(agent.bc_authorize(good, message=sneaky)) == "invalid_binding_message"
    # What is not supported is refused, not ignored.
    assert error(agent.bc_authorize(good, user_code="1234")) == "invalid_request"
    assert error(agent.bc_authorize(good, client_notification_token="t")) == "invalid_request"
    # A member given twice could be read two ways.
    twice = ('[{"type": "tool_call", "server": "files", "tool": "list_directory", '
             '"tool": "write_file", "arguments": {}}]')
    url = agent.md["backchannel_authentication_endpoint"]
    r = agent.http.post(url, data={"client_assertion_type": ASSERTION,
                                   "client_assertion": agent.assertion(url),
                                   "login_hint": "role:approver", "authorization_details": twice})
    assert error(r) == "invalid_authorization_details"
    # Another client's auth_req_id is unknown to this one.
    other = Agent(gw, "ciba-other")
    gw.run_cli("user", "create", "carol", "--role", "approver", check=False)
    theirs = other.bc_authorize(good).json()["auth_req_id"]
    assert error(agent.poll(theirs)) == "invalid_grant"


def test_a_gateway_run_apart_makes_the_approved_call_once_and_only_with_its_mandate(gw):
    """`mandate gateway --authority` in its own home: the CIBA mandate's one call goes through
    there once; the approval is spent, so the authority's own gateway refuses it after."""
    gw.run_cli("user", "create", "carol", "--role", "approver", check=False)
    gw.run_cli("agent", "create", "ciba-gw", "--scopes", "mandate:audit")
    home = Path(tempfile.mkdtemp(prefix="mandate-ciba-gw-"))
    proc = None
    try:
        (home / "keys").mkdir(mode=0o700)
        shutil.copy(gw.home / "keys" / "agent_ciba-gw.jwk", home / "keys" / "agent_ciba-gw.jwk")
        # The same directory as the authority's `files` upstream, where its argument rule allows
        # writes (under src/).
        root = gw.files_root
        (home / "gateway.toml").write_text(f"""
[upstream.files]
stdio = ["node", {json.dumps(str(FILESYSTEM))}, {json.dumps(str(root))}]
pass_env = ["PATH", "HOME"]
sandbox = "off"
""")
        port = free_port()
        proc = subprocess.Popen(
            [str(gw.binary), "gateway", "--authority", gw.base_url, "--as", "agent:ciba-gw",
             "--listen", f"127.0.0.1:{port}"],
            env=dict(os.environ, MANDATE_HOME=str(home), NO_COLOR="1"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        apart = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{apart}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        agent = Agent(gw, "ciba-apart")
        target = str(root / "src" / "apart.txt")
        details = [{"type": "tool_call", "server": "files", "tool": "write_file",
                    "arguments": {"path": target, "content": "apart"}}]
        r = agent.bc_authorize(details)
        assert r.status_code == 200, r.text
        auth_req_id = r.json()["auth_req_id"]
        gw.run_cli("approvals", "approve", auth_req_id, "--as", "user:carol")
        r = agent.poll(auth_req_id)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        ok = agent.call(token, "write_file", {"path": target, "content": "apart"}, base_url=apart)
        assert ok.status_code == 200 and "result" in ok.json(), ok.text
        assert Path(target).read_text() == "apart"
        again = agent.call(token, "write_file", {"path": target, "content": "apart"}, base_url=apart)
        assert "already used" in again.json()["error"]["message"], again.text
        there = agent.call(token, "write_file", {"path": target, "content": "apart"})
        assert "already used" in there.json()["error"]["message"], there.text
    finally:
        kill_groups(proc)
        shutil.rmtree(home, ignore_errors=True)


def test_a_carried_approval_must_meet_what_the_policy_asks_when_the_call_is_made(gw):
    """Approved by one human under quorum 1; the policy then asks two: the mandate's call is
    refused as not meeting it, and the approval is not spent."""
    gw.run_cli("user", "create", "carol", "--role", "approver", check=False)
    agent = Agent(gw, "ciba-stricter")
    target = str(gw.files_root / "src" / "stricter.txt")
    details = [{"type": "tool_call", "server": "files", "tool": "write_file",
                "arguments": {"path": target, "content": "x"}}]
    r = agent.bc_authorize(details)
    assert r.status_code == 200, r.text
    auth_req_id = r.json()["auth_req_id"]
    gw.run_cli("approvals", "approve", auth_req_id, "--as", "user:carol")
    r = agent.poll(auth_req_id)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    data_path = gw.home / "server" / "policies" / "data.json"
    before = data_path.read_text()
    try:
        data = json.loads(before)
        data["mandate_config"]["quorum"] = 2
        data_path.write_text(json.dumps(data))
        time.sleep(3)  # the server reloads its policy directory every second
        refused = agent.call(token, "write_file", {"path": target, "content": "x"})
        message = refused.json().get("error", {}).get("message", "")
        assert "does not meet what the policy asks" in message, refused.text
        assert "1 of the 2 approvals" in message, message
        assert not Path(target).exists()
    finally:
        data_path.write_text(before)
    # Not spent: once the policy asks one approval again, the call is made.
    time.sleep(3)
    ok = agent.call(token, "write_file", {"path": target, "content": "x"})
    assert ok.status_code == 200 and "result" in ok.json(), ok.text
    assert Path(target).read_text() == "x"
