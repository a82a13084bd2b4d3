"""Interop: Mandate deciding token issuance through an external OPA (`[policy.external] kind = "opa"`).

The external decision point is the real OPA Go library (opa-golib-python-bindings, OPA v1.20.2,
loaded exactly as interop/rego_differential.py does) behind a small OPA-compatible REST server
started here: `POST /v1/data/<path>` with `{"input": ...}` answers `{"result": ..., "decision_id":
...}` (no `result` when the document is undefined, as OPA does). It evaluates the repository's
`policies/default` with one data override: delegation from agent:planner to agent:coder is
forbidden. Mandate is `mandate init --demo` + `mandate serve` with `[policy.external]` pointing at
that server. The token requests themselves are test_interop.py's `Client` (PyJWT private_key_jwt
and DPoP) holding the demo principals' keys.

Checks: an allowed push delegation (and what OPA was asked), a delegation OPA forbids (its reason
in error_description), a decision point that answers too late, one that is gone (both deny), and a
bad `kind` refusing to start.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from test_interop import (
    GITHUB,
    HTTP_TIMEOUT,
    INTEROP_DIR,
    REPO_ROOT,
    Client,
    Issued,
    Server,
    b64url_decode,
    delegated,
    describe,
    exchange,
    expect_error,
    run_server,
    free_port,
    mandate_bin,
)

POLICY_DIR = REPO_ROOT / "policies" / "default"
DELEGATION_PATH = "mandate/delegation/decision"
TIMEOUT_MS = 500
HANG_SECONDS = 2.0  # well past TIMEOUT_MS
FORBIDDEN = [{"from": "agent:planner", "to": "agent:coder"}]
FORBIDDEN_REASON = (
    "delegation from agent:planner to agent:coder is forbidden by policy "
    "(rule: from agent:planner to agent:coder)"
)


# --------------------------------------------------------------------------------------------
# A genuine OPA behind an OPA-compatible REST data API
# --------------------------------------------------------------------------------------------


def load_opa_bindings():
    """opa_bindings, imported (or fetched from PyPI and unpacked) as rego_differential.py does."""
    sys.path.insert(0, str(INTEROP_DIR))
    try:
        from rego_differential import load_opa
    finally:
        sys.path.remove(str(INTEROP_DIR))
    try:
        return load_opa(os.environ.get("MANDATE_OPA_BINDINGS"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"could not load the OPA Go library (opa-golib-python-bindings): {exc!r}")


class OpaRestServer:
    """`POST /v1/data/<path>` evaluated by the OPA library over a policy directory and data."""

    def __init__(self, ob, policy_dir: Path, data: dict):
        self.ob = ob
        self.engine = ob.OpaEngine()
        for path in sorted(policy_dir.glob("*.rego")):
            if not path.name.endswith("_test.rego"):
                self.engine.add_policy(path.name, path.read_text())
        self.engine.add_data(data)
        self.seen: list[dict] = []  # {"path", "input", "response"} per request
        self.hang = 0.0  # seconds to stall before answering
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                outer._handle(self)

            def log_message(self, *_args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        raw = json.dumps(body).encode("utf-8")
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(raw)))
            h.end_headers()
            h.wfile.write(raw)
        except OSError:
            pass  # the caller gave up (timeout): nothing to answer

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if not h.path.startswith("/v1/data/"):
            return self._reply(h, 404, {"code": "resource_not_found", "message": h.path})
        path = h.path[len("/v1/data/"):].split("?", 1)[0].strip("/")
        try:
            body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", "0"))) or b"{}")
        except ValueError as exc:
            return self._reply(h, 400, {"code": "invalid_parameter", "message": str(exc)})
        record = {"path": path, "input": body.get("input"), "response": None}
        with self.lock:
            self.seen.append(record)
            hang = self.hang
        if hang:
            time.sleep(hang)
        response: dict = {"decision_id": str(uuid.uuid4())}
        try:
            response["result"] = self.engine.eval_document(path.replace("/", "."),
                                                           body.get("input"))
        except self.ob.OpaUndefinedError:
            pass  # OPA omits `result` for an undefined document
        except self.ob.OpaError as exc:
            return self._reply(h, 500, {"code": "internal_error", "message": str(exc)})
        record["response"] = response
        self._reply(h, 200, response)

    def requests_to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.seen if r["path"] == path]

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        self.engine.close()


# --------------------------------------------------------------------------------------------
# Mandate with [policy.external]
# --------------------------------------------------------------------------------------------


def external_section(kind: str, url: str) -> str:
    return f'\n[policy.external]\nkind = "{kind}"\nurl = "{url}"\ntimeout_ms = {TIMEOUT_MS}\n'


class ExternalPolicyServer(Server):
    """test_interop's Server, initialised with `--demo` and `[policy.external]` in server.toml
    before `mandate serve` starts (Server.start runs `init` through run_cli, then serves)."""

    def __init__(self, binary: Path, home: Path, port: int, kind: str, url: str):
        super().__init__(binary, home, port)
        self.section = external_section(kind, url)

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if args[:1] != ("init",):
            return super().run_cli(*args, check=check)
        proc = super().run_cli(*args, "--demo", check=check)
        if proc.returncode == 0:
            with open(self.home / "server" / "server.toml", "a") as f:
                f.write(self.section)
        return proc

    def demo_client(self, principal: str) -> Client:
        """A Client holding the private key `init --demo` saved for `principal` (a JWK file)."""
        kind, name = principal.split(":", 1)
        jwk = json.loads((self.home / "keys" / f"{kind}_{name}.jwk").read_text())
        key = Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))
        client = Client(self, principal, key)
        assert jwk.get("kid") in (None, client.jkt), (jwk.get("kid"), client.jkt)
        return client


@pytest.fixture(scope="module")
def opa():
    data = json.loads((POLICY_DIR / "data.json").read_text())
    data = copy.deepcopy(data)
    data["mandate_config"]["delegation"]["forbidden"] = FORBIDDEN
    srv = OpaRestServer(load_opa_bindings(), POLICY_DIR, data)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def server(opa):
    """Named `server` so conftest.py attaches the `mandate serve` log to failures."""
    yield from run_server(
        lambda binary, home, port: ExternalPolicyServer(binary, home, port, "opa", opa.url),
        "mandate-interop-opa-")


@pytest.fixture(scope="module")
def fleet(server):
    return {p: server.demo_client(p) for p in ("user:alice", "agent:planner", "agent:coder")}


def alice_to_planner(fleet) -> Issued:
    alice, planner = fleet["user:alice"], fleet["agent:planner"]
    own = alice.token(scope="github:pulls.write github:contents.read", audience=GITHUB)
    return delegated(exchange(alice, own, planner, "github:pulls.write github:contents.read"),
                     alice.server)


def refusal(resp) -> str:
    body = expect_error(resp, {"unauthorized_client"})
    description = body["error_description"]
    assert "refused by policy" in description, describe(resp)
    return description


# --------------------------------------------------------------------------------------------
# Tests (in order: the last one stops the decision point)
# --------------------------------------------------------------------------------------------


def test_opa_allows_push_delegation_from_alice_to_planner(server, opa, fleet):
    before = len(opa.requests_to(DELEGATION_PATH))
    issued = alice_to_planner(fleet)
    assert issued.claims["sub"] == "user:alice" and issued.claims["client_id"] == "agent:planner"

    asked = opa.requests_to(DELEGATION_PATH)[before:]
    push = [r for r in asked if (r["input"] or {}).get("action", {}).get("mode") == "push"]
    assert len(push) == 1, f"OPA was asked {json.dumps([r['input'] for r in asked])}"
    action = push[0]["input"]["action"]
    assert action["kind"] == "delegation", action
    assert action["from"] == "user:alice" and action["to"] == "agent:planner", action
    assert push[0]["response"]["result"]["allow"] is True, push[0]["response"]
    # Alice's own mandate (client_credentials) was asked about too, as mode "self".
    assert any(r["input"]["action"]["mode"] == "self" for r in asked), asked


def test_opa_forbidden_delegation_is_refused_with_its_reason(server, opa, fleet):
    t = alice_to_planner(fleet)
    before = len(opa.requests_to(DELEGATION_PATH))
    resp = exchange(fleet["agent:planner"], t, fleet["agent:coder"], "github:pulls.write")
    description = refusal(resp)
    assert FORBIDDEN_REASON in description, describe(resp)

    asked = opa.requests_to(DELEGATION_PATH)[before:]
    assert len(asked) == 1, asked
    action, answer = asked[0]["input"]["action"], asked[0]["response"]
    assert (action["mode"], action["from"], action["to"]) == (
        "push", "agent:planner", "agent:coder"), action
    assert answer["result"]["allow"] is False and answer["result"]["reasons"] == [FORBIDDEN_REASON]
    assert answer["decision_id"] in description, (
        f"error_description should carry OPA's decision_id {answer['decision_id']}: {description}")


def test_decision_point_answering_too_late_denies(server, opa, fleet):
    alice = fleet["user:alice"]
    opa.hang = HANG_SECONDS
    try:
        started = time.monotonic()
        resp = alice.request_token(scope="github:pulls.write", audience=GITHUB)
        elapsed = time.monotonic() - started
    finally:
        opa.hang = 0.0
    description = refusal(resp)
    assert "external decision point did not answer" in description, describe(resp)
    assert elapsed < HANG_SECONDS, f"took {elapsed:.2f}s: the {TIMEOUT_MS} ms limit was not kept"


def test_decision_point_gone_fails_closed(server, opa, fleet):
    alice, planner = fleet["user:alice"], fleet["agent:planner"]
    own = alice.token(scope="github:pulls.write", audience=GITHUB)  # still up: allowed
    opa.stop()
    for resp in (alice.request_token(scope="github:pulls.write", audience=GITHUB),
                 exchange(alice, own, planner, "github:pulls.write")):
        description = refusal(resp)
        assert "external decision point failed" in description, describe(resp)
        assert opa.url in description, describe(resp)


def test_serve_refuses_unknown_external_kind(tmp_path):
    binary = mandate_bin()
    srv = ExternalPolicyServer(binary, tmp_path, free_port(), "xacml", "http://127.0.0.1:9")
    srv.run_cli("init", "--listen", f"127.0.0.1:{srv.port}", "--json")
    try:
        proc = subprocess.run([str(binary), "serve"], env=srv.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=HTTP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("`mandate serve` with [policy.external] kind = \"xacml\" kept running")
    finally:
        srv.http.close()
    assert proc.returncode != 0, f"exit 0\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got stderr: {proc.stderr!r}"
    assert "[policy.external]" in lines[0] and "xacml" in lines[0], lines[0]
