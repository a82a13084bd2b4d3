"""Interop: Mandate as a policy decision point, asked by an ordinary HTTP client.

Covers OpenID AuthZEN 1.0 (`/.well-known/authzen-configuration`, `POST /access/v1/evaluation`,
`POST /access/v1/evaluations`) and the OPA REST data API (`POST /v1/data/{path}`), answered by the
default policy pack. The enforcement point here is a Python agent registered with scope
`mandate:pdp` and audience = the issuer; it calls with `Authorization: DPoP <mandate>` and an
RFC 9449 §7 proof (htm, htu, ath) made by PyJWT, or `Bearer` when registered with --allow-bearer.
As in test_introspection.py, the server, client and helpers are test_interop.py's own.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Optional

import jwt
import pytest
import requests

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from test_interop import (  # noqa: F401  (`server` is a fixture, used by name)
    HTTP_TIMEOUT,
    Client,
    Issued,
    b64url,
    describe,
    public_key_form,
    server,
    unique_name,
)

PDP_SCOPE = "mandate:pdp"
EVALUATION = "/access/v1/evaluation"
EVALUATIONS = "/access/v1/evaluations"
AUTHZ_DECISION = "/v1/data/mandate/authz/decision"


# --------------------------------------------------------------------------------------------
# An enforcement point: a registered agent holding a mandate for the PDP
# --------------------------------------------------------------------------------------------


def resource_proof(client: Client, method: str, url: str, access_token: str) -> str:
    """RFC 9449 §7 proof for a resource request: htm, htu and ath (hash of the mandate)."""
    claims = {
        "jti": str(uuid.uuid4()),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
        "ath": b64url(hashlib.sha256(access_token.encode("ascii")).digest()),
    }
    headers = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client.jwk}
    return jwt.encode(claims, client.private_key, algorithm="EdDSA", headers=headers)


class Pep:
    """An agent that asks the PDP with its own mandate (DPoP-bound unless `bearer`)."""

    def __init__(self, client: Client, issued: Issued, *, bearer: bool = False):
        self.client = client
        self.issued = issued
        self.bearer = bearer

    @property
    def server(self):
        return self.client.server

    def url(self, path: str) -> str:
        return self.server.base_url + path

    def auth_headers(self, method: str, url: str) -> dict:
        token = self.issued.access_token
        if self.bearer:
            return {"Authorization": f"Bearer {token}"}
        return {"Authorization": f"DPoP {token}",
                "DPoP": resource_proof(self.client, method, url, token)}

    def post(self, path: str, body=None, *, headers: Optional[dict] = None,
             data: Optional[bytes] = None) -> requests.Response:
        url = self.url(path)
        all_headers = {"Accept": "application/json", **self.auth_headers("POST", url)}
        all_headers.update(headers or {})
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
            return self.server.http.post(url, data=data, headers=all_headers,
                                         timeout=HTTP_TIMEOUT)
        return self.server.http.post(url, json=body, headers=all_headers, timeout=HTTP_TIMEOUT)

    def ok(self, path: str, body) -> dict:
        resp = self.post(path, body)
        assert resp.status_code == 200, f"{describe(resp)}\nrequest: {body}"
        assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
        return resp.json()


def pdp_mandate(client: Client, *, dpop: bool = True, scope: str = PDP_SCOPE) -> Issued:
    issued = client.token(dpop=dpop, scope=scope, audience=client.server.issuer)
    assert issued.claims["aud"] in (client.server.issuer, [client.server.issuer]), issued.claims
    return issued


@pytest.fixture(scope="module")
def pep(server):
    client = server.register("pep", scopes=PDP_SCOPE, audiences=server.issuer)
    return Pep(client, pdp_mandate(client))


@pytest.fixture(scope="module")
def admin(server):
    """A user with the admin role (its key made here), asking with its mandate:admin mandate:
    admins may read every policy document, decision points only the decisions."""
    key = Ed25519PrivateKey.generate()
    name = unique_name("ops")
    server.cli_json("user", "create", name, "--public-key", public_key_form(key, "jwk"),
                    "--role", "admin", "--json")
    client = Client(server, f"user:{name}", key)
    return Pep(client, pdp_mandate(client, scope="mandate:admin"))


# --------------------------------------------------------------------------------------------
# Requests for the default pack's cases
# --------------------------------------------------------------------------------------------


def subject(scopes, sid: str = "agent:coder", **props) -> dict:
    return {"type": "agent", "id": sid,
            "properties": {"scopes": scopes, "chain": ["user:alice", sid], **props}}


def mcp_tool(tool: str, *, server_name: str = "github", **annotations) -> dict:
    props = {"server": server_name}
    if annotations:
        props["annotations"] = annotations
    return {"type": "mcp_tool", "id": tool, "properties": props}


CALL = {"name": "tools/call", "properties": {"arguments": {}}}

# In scope and read-only: allowed.
READ_ALLOWED = {
    "subject": subject(["github:read"]),
    "resource": mcp_tool("list_pull_requests", readOnlyHint=True),
    "action": CALL,
}
# A write the mandate's scopes do not cover: denied.
OUT_OF_SCOPE = {
    "subject": subject(["github:read"]),
    "resource": mcp_tool("create_issue", readOnlyHint=False),
    "action": CALL,
}
# Destructive, in scope: held for approval.
DESTRUCTIVE = {
    "subject": subject("github:*"),  # space-separated string form
    "resource": mcp_tool("delete_repo", destructiveHint=True),
    "action": {"name": "tools/call", "properties": {"arguments": {"owner": "acme", "repo": "x"}}},
}
# A write to a production upstream through an HTTP route: held for approval.
PRODUCTION_WRITE = {
    "subject": subject(["ci:*"], sid="agent:deployer"),
    "resource": {"type": "http_route", "id": "/builds",
                 "properties": {"server": "ci", "action": "create_build",
                                "upstream": {"environment": "production"}}},
    "action": {"name": "POST", "properties": {"arguments": {"ref": "main"}}},
}


def policy_input(req: dict) -> dict:
    """The policy input document (docs/policy.md) for the same case, written independently."""
    s, r, a = req["subject"], req["resource"], req["action"]
    scopes = s["properties"]["scopes"]
    if isinstance(scopes, str):
        scopes = scopes.split()
    action = {"server": r["properties"]["server"],
              "arguments": a.get("properties", {}).get("arguments", {})}
    if r["type"] == "mcp_tool":
        action.update(kind="mcp", tool=r["id"], mcp_method=a["name"])
    else:
        action.update(kind="http", tool=r["properties"].get("action", r["id"]),
                      http={"method": a["name"].upper(), "path": r["id"]})
    for key in ("annotations", "upstream"):
        if key in r["properties"]:
            action[key] = r["properties"][key]
    name = s["id"].split(":", 1)[1]
    return {
        "principal": {"id": s["id"], "type": "agent", "name": name},
        "subject": s["properties"]["chain"][0],
        "chain": s["properties"]["chain"],
        "scopes": scopes,
        "audience": [],
        "mandate": None,
        "action": action,
        "context": {"environment": "development"},
    }


def check_context(answer: dict) -> dict:
    """Every AuthZEN answer: boolean decision and a context with id, version and reasons."""
    assert isinstance(answer.get("decision"), bool), answer
    ctx = answer.get("context")
    assert isinstance(ctx, dict), answer
    assert isinstance(ctx.get("decision_id"), str) and ctx["decision_id"], answer
    assert isinstance(ctx.get("policy_version"), str) and ctx["policy_version"], answer
    reasons = ctx.get("reasons")
    assert isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons), answer
    assert isinstance(ctx.get("reason_admin", {}).get("en"), str), answer
    for r in reasons:
        assert r in ctx["reason_admin"]["en"], answer
    return ctx


def check_approval(answer: dict, *, why: str) -> None:
    ctx = check_context(answer)
    assert answer["decision"] is False, f"approval-needed must be decision false: {answer}"
    approval = ctx.get("approval")
    assert isinstance(approval, dict), f"expected context.approval: {answer}"
    assert approval.get("approvers") == ["role:approver"], answer
    assert approval.get("quorum") == 1, answer
    assert why in approval.get("reason", ""), answer


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def test_authzen_configuration_is_public_and_names_the_endpoints(server):
    resp = server.http.get(f"{server.base_url}/.well-known/authzen-configuration",
                           timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
    config = resp.json()
    assert config.get("policy_decision_point") == server.issuer, config
    assert config.get("access_evaluation_endpoint") == server.issuer.rstrip("/") + EVALUATION, config
    assert config.get("access_evaluations_endpoint") == server.issuer.rstrip("/") + EVALUATIONS, config


# --------------------------------------------------------------------------------------------
# Single evaluations
# --------------------------------------------------------------------------------------------


def test_read_only_tool_within_scope_is_allowed(pep):
    answer = pep.ok(EVALUATION, READ_ALLOWED)
    ctx = check_context(answer)
    assert answer["decision"] is True, answer
    assert ctx.get("approval") is None, answer
    assert "list_pull_requests" in ctx["reason_admin"]["en"], answer


def test_tool_outside_scope_is_denied_naming_the_scope(pep):
    answer = pep.ok(EVALUATION, OUT_OF_SCOPE)
    ctx = check_context(answer)
    assert answer["decision"] is False, answer
    assert ctx.get("approval") is None, answer
    assert any("github:create_issue" in r for r in ctx["reasons"]), answer
    assert any("github:read" in r for r in ctx["reasons"]), "the reason lists the held scopes"


def test_destructive_tool_is_held_for_approval(pep):
    answer = pep.ok(EVALUATION, DESTRUCTIVE)
    check_approval(answer, why="destructive")
    assert "delete_repo" in answer["context"]["reason_admin"]["en"], answer


def test_production_http_write_is_held_for_approval(pep):
    answer = pep.ok(EVALUATION, PRODUCTION_WRITE)
    check_approval(answer, why="production")
    # The same route read with GET is allowed.
    read = dict(PRODUCTION_WRITE, action={"name": "get"})
    assert pep.ok(EVALUATION, read)["decision"] is True


def test_secret_looking_arguments_are_listed_for_redaction(pep):
    req = dict(READ_ALLOWED, action={"name": "tools/call",
                                     "properties": {"arguments": {"api_key": "s3cr3t", "q": 1}}})
    answer = pep.ok(EVALUATION, req)
    assert answer["decision"] is True, answer
    assert answer["context"].get("redact") == ["/action/arguments/api_key"], answer


def test_the_audit_log_records_redacted_arguments_as_hmacs_and_never_the_secret(pep):
    secret = "s3cr3t-" + str(time.time_ns())
    req = dict(READ_ALLOWED, action={"name": "tools/call",
                                     "properties": {"arguments": {"api_key": secret, "q": 7}}})
    answer = pep.ok(EVALUATION, req)
    events = pep.server.cli_json("--json", "audit", "query", "--kind", "policy.decision",
                                 "--limit", "50")
    mine = [e["event"] for e in events
            if e["event"].get("decision_id") == answer["context"]["decision_id"]]
    assert len(mine) == 1, events
    args = mine[0]["details"]["action"]["arguments"]
    assert args["q"] == 7, mine[0]
    assert args["api_key"].startswith("hmac-sha256:"), mine[0]
    assert secret not in json.dumps(events)
    # An auditor holding the candidate value can match it.
    hashed = pep.server.run_cli("audit", "hash", secret).stdout.strip()
    assert hashed == args["api_key"], (hashed, args)


def test_x_request_id_is_echoed_and_answers_are_not_cached(pep):
    request_id = f"interop-{uuid.uuid4()}"
    for path, body in ((EVALUATION, READ_ALLOWED),
                       (EVALUATIONS, {**READ_ALLOWED, "evaluations": [{}, {}]})):
        resp = pep.post(path, body, headers={"X-Request-ID": request_id})
        assert resp.status_code == 200, describe(resp)
        assert resp.headers.get("X-Request-ID") == request_id, (path, dict(resp.headers))
        assert "no-store" in resp.headers.get("Cache-Control", ""), (path, dict(resp.headers))


def test_decision_ids_are_unique_per_evaluation(pep):
    first = pep.ok(EVALUATION, READ_ALLOWED)["context"]["decision_id"]
    second = pep.ok(EVALUATION, READ_ALLOWED)["context"]["decision_id"]
    assert first != second


@pytest.mark.parametrize("missing", ["subject", "resource", "action"])
def test_request_missing_a_member_is_400_naming_it(pep, missing):
    body = {k: v for k, v in READ_ALLOWED.items() if k != missing}
    resp = pep.post(EVALUATION, body)
    assert resp.status_code == 400, describe(resp)
    assert missing in resp.text, describe(resp)


def test_request_that_is_not_json_is_400(pep):
    resp = pep.post(EVALUATION, data=b"{not json")
    assert resp.status_code == 400, describe(resp)


# --------------------------------------------------------------------------------------------
# Batch evaluations
# --------------------------------------------------------------------------------------------


def batch(*items: dict, semantic: Optional[str] = None) -> dict:
    """Defaults from READ_ALLOWED (subject and action); each item names its resource and may
    replace the subject or action."""
    body = {"subject": READ_ALLOWED["subject"], "action": READ_ALLOWED["action"],
            "evaluations": list(items)}
    if semantic:
        body["options"] = {"evaluations_semantic": semantic}
    return body


ALLOW_ITEM = {"resource": READ_ALLOWED["resource"]}
DENY_ITEM = {"resource": OUT_OF_SCOPE["resource"]}
APPROVAL_ITEM = {"subject": DESTRUCTIVE["subject"], "resource": DESTRUCTIVE["resource"]}


def decisions(answer: dict) -> list:
    items = answer.get("evaluations")
    assert isinstance(items, list), answer
    for item in items:
        check_context(item)
    return [item["decision"] for item in items]


def test_batch_execute_all_answers_every_item_in_order(pep):
    answer = pep.ok(EVALUATIONS, batch(ALLOW_ITEM, DENY_ITEM, APPROVAL_ITEM, ALLOW_ITEM,
                                       semantic="execute_all"))
    assert decisions(answer) == [True, False, False, True], answer
    items = answer["evaluations"]
    assert any("github:create_issue" in r for r in items[1]["context"]["reasons"]), items[1]
    assert items[1]["context"].get("approval") is None, items[1]
    assert items[2]["context"].get("approval"), items[2]
    assert len({i["context"]["decision_id"] for i in items}) == 4, "one decision id per item"
    # execute_all is the default.
    again = pep.ok(EVALUATIONS, batch(ALLOW_ITEM, DENY_ITEM, APPROVAL_ITEM, ALLOW_ITEM))
    assert decisions(again) == [True, False, False, True], again


def test_batch_deny_on_first_deny_stops_at_the_first_deny(pep):
    answer = pep.ok(EVALUATIONS, batch(ALLOW_ITEM, DENY_ITEM, ALLOW_ITEM,
                                       semantic="deny_on_first_deny"))
    assert decisions(answer) == [True, False], answer
    # Approval-needed is not a permit: it stops the batch too.
    answer = pep.ok(EVALUATIONS, batch(APPROVAL_ITEM, ALLOW_ITEM, semantic="deny_on_first_deny"))
    assert decisions(answer) == [False], answer
    # No deny: every item is answered.
    answer = pep.ok(EVALUATIONS, batch(ALLOW_ITEM, ALLOW_ITEM, semantic="deny_on_first_deny"))
    assert decisions(answer) == [True, True], answer


def test_batch_permit_on_first_permit_stops_at_the_first_permit(pep):
    answer = pep.ok(EVALUATIONS, batch(DENY_ITEM, APPROVAL_ITEM, ALLOW_ITEM, DENY_ITEM,
                                       semantic="permit_on_first_permit"))
    assert decisions(answer) == [False, False, True], answer
    answer = pep.ok(EVALUATIONS, batch(DENY_ITEM, DENY_ITEM, semantic="permit_on_first_permit"))
    assert decisions(answer) == [False, False], answer


def test_batch_without_evaluations_is_a_single_evaluation(pep):
    for body in (dict(READ_ALLOWED), {**READ_ALLOWED, "evaluations": []}):
        answer = pep.ok(EVALUATIONS, body)
        assert "evaluations" not in answer, answer
        check_context(answer)
        assert answer["decision"] is True, answer
    answer = pep.ok(EVALUATIONS, DESTRUCTIVE)
    check_approval(answer, why="destructive")


def test_batch_item_that_cannot_be_evaluated_is_a_deny_in_place(pep):
    body = {"action": READ_ALLOWED["action"], "evaluations": [
        {"subject": READ_ALLOWED["subject"], "resource": READ_ALLOWED["resource"]},
        {"resource": READ_ALLOWED["resource"]},  # no subject here nor in the defaults
        {"subject": READ_ALLOWED["subject"], "resource": READ_ALLOWED["resource"]},
    ]}
    items = pep.ok(EVALUATIONS, body)["evaluations"]
    assert [i["decision"] for i in items] == [True, False, True], items
    error = items[1].get("context", {}).get("error", {})
    assert error.get("status") == 400 and "subject" in error.get("message", ""), items[1]


def test_batch_with_unknown_semantic_is_400(pep):
    resp = pep.post(EVALUATIONS, batch(ALLOW_ITEM, semantic="first_come_first_served"))
    assert resp.status_code == 400, describe(resp)


def test_batch_request_missing_subject_is_400(pep):
    body = {k: v for k, v in READ_ALLOWED.items() if k != "subject"}
    resp = pep.post(EVALUATIONS, body)
    assert resp.status_code == 400, describe(resp)
    assert "subject" in resp.text, describe(resp)


# --------------------------------------------------------------------------------------------
# The OPA REST data API
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [READ_ALLOWED, OUT_OF_SCOPE, DESTRUCTIVE, PRODUCTION_WRITE],
                         ids=["read-allowed", "out-of-scope", "destructive", "production-write"])
def test_data_api_decision_equals_the_authzen_verdict(pep, case):
    authzen = pep.ok(EVALUATION, case)
    opa = pep.ok(AUTHZ_DECISION, {"input": policy_input(case)})
    assert isinstance(opa.get("decision_id"), str) and opa["decision_id"], opa
    result = opa.get("result")
    assert isinstance(result, dict), opa
    assert result.get("allow") is authzen["decision"], (opa, authzen)
    assert result.get("reasons") == authzen["context"]["reasons"], (opa, authzen)
    assert result.get("approval") == authzen["context"].get("approval"), (opa, authzen)
    assert result.get("redact", []) == authzen["context"].get("redact", []), (opa, authzen)


def test_data_api_undefined_path_is_200_without_result(pep, admin):
    resp = pep.post("/v1/data/mandate/authz/decision/no_such_member",
                    {"input": policy_input(READ_ALLOWED)})
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert "result" not in body, f"undefined must have no result member: {body}"
    assert isinstance(body.get("decision_id"), str) and body["decision_id"], body
    for path in ("/v1/data/mandate/authz/no_such_rule", "/v1/data/no/such/package"):
        resp = admin.post(path, {"input": policy_input(READ_ALLOWED)})
        assert resp.status_code == 200, describe(resp)
        assert "result" not in resp.json(), resp.json()


def test_data_api_decision_points_read_only_the_decisions(pep):
    for path in ("/v1/data/mandate/lib", "/v1/data/mandate_config", "/v1/data",
                 "/v1/data/mandate/authz/wanted_scope"):
        body = expect_opa_error(pep.post(path, {"input": {}}), 403)
        assert "data/mandate/authz/decision" in body["message"], body


def test_data_api_package_query_returns_an_object(admin):
    body = admin.ok("/v1/data/mandate/lib", {"input": {}})
    lib = body.get("result")
    assert isinstance(lib, dict), body
    assert lib.get("approvers") == ["role:approver"], body
    assert lib.get("quorum") == 1, body
    assert "delete" in lib.get("destructive_verbs", []), body
    # A data document, and a rule evaluated without input.
    config = admin.ok("/v1/data/mandate_config", {}).get("result")
    assert isinstance(config, dict) and config.get("quorum") == 1, config


def test_data_api_input_reaches_single_rules(admin):
    body = admin.ok("/v1/data/mandate/authz/wanted_scope", {"input": policy_input(DESTRUCTIVE)})
    assert body.get("result") == "github:delete_repo", body
    body = admin.ok("/v1/data/mandate/authz/read_only", {"input": policy_input(READ_ALLOWED)})
    assert body.get("result") is True, body


def expect_opa_error(resp: requests.Response, status: int = 400) -> dict:
    assert resp.status_code == status, describe(resp)
    body = resp.json()
    assert isinstance(body.get("code"), str) and body["code"], f"OPA error shape: {describe(resp)}"
    assert isinstance(body.get("message"), str) and body["message"], f"OPA error shape: {describe(resp)}"
    return body


def test_data_api_body_that_is_not_an_object_is_an_opa_error(pep):
    body = expect_opa_error(pep.post(AUTHZ_DECISION, [1, 2]))
    assert body["code"] == "invalid_parameter", body


def test_data_api_malformed_json_is_an_opa_error(pep):
    body = expect_opa_error(pep.post(AUTHZ_DECISION, data=b'{"input": '))
    assert body["code"] == "invalid_parameter", body


# --------------------------------------------------------------------------------------------
# Authentication and authorisation of the enforcement point
# --------------------------------------------------------------------------------------------


PROTECTED = [
    (EVALUATION, READ_ALLOWED),
    (EVALUATIONS, batch(ALLOW_ITEM)),
    (AUTHZ_DECISION, {"input": policy_input(READ_ALLOWED)}),
]
PROTECTED_IDS = ["evaluation", "evaluations", "data"]


def expect_challenge(resp: requests.Response, status: int) -> None:
    assert resp.status_code == status, describe(resp)
    challenge = resp.headers.get("WWW-Authenticate", "")
    assert challenge, f"no WWW-Authenticate challenge: {dict(resp.headers)}"
    body = resp.json()
    assert "decision" not in body and "result" not in body, describe(resp)


@pytest.mark.parametrize("path,body", PROTECTED, ids=PROTECTED_IDS)
def test_unauthenticated_request_is_401_with_a_challenge(server, path, body):
    resp = server.http.post(server.base_url + path, json=body, timeout=HTTP_TIMEOUT)
    expect_challenge(resp, 401)
    assert resp.headers["WWW-Authenticate"].split()[0] in ("DPoP", "Bearer"), dict(resp.headers)


@pytest.mark.parametrize("path,body", PROTECTED, ids=PROTECTED_IDS)
def test_mandate_without_the_pdp_scope_is_403(server, path, body):
    client = server.register("not-pep", scopes=f"{PDP_SCOPE} ci:read", audiences=server.issuer)
    outsider = Pep(client, pdp_mandate(client, scope="ci:read"))
    resp = outsider.post(path, body)
    expect_challenge(resp, 403)
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"], dict(resp.headers)


def test_mandate_for_another_audience_is_401(server):
    from test_interop import GITHUB

    client = server.register("pep-github", scopes=f"{PDP_SCOPE} ci:read",
                             audiences=f"{GITHUB} {server.issuer}")
    issued = client.token(scope="ci:read", audience=GITHUB)
    resp = Pep(client, issued).post(EVALUATION, READ_ALLOWED)
    expect_challenge(resp, 401)


def test_reused_dpop_proof_is_401(pep):
    url = pep.url(EVALUATION)
    headers = {"Accept": "application/json", **pep.auth_headers("POST", url)}
    first = pep.server.http.post(url, json=READ_ALLOWED, headers=headers, timeout=HTTP_TIMEOUT)
    assert first.status_code == 200, describe(first)
    again = pep.server.http.post(url, json=READ_ALLOWED, headers=headers, timeout=HTTP_TIMEOUT)
    expect_challenge(again, 401)


def test_dpop_proof_for_another_url_or_without_ath_is_401(pep):
    token = pep.issued.access_token
    url = pep.url(EVALUATION)
    wrong_url = resource_proof(pep.client, "POST", pep.url(EVALUATIONS), token)
    wrong_method = resource_proof(pep.client, "GET", url, token)
    no_ath = pep.client.dpop_proof("POST", url)
    for proof in (wrong_url, wrong_method, no_ath):
        resp = pep.server.http.post(url, json=READ_ALLOWED, timeout=HTTP_TIMEOUT,
                                    headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        expect_challenge(resp, 401)
    # A DPoP-bound mandate presented as a bearer token.
    resp = pep.server.http.post(url, json=READ_ALLOWED, timeout=HTTP_TIMEOUT,
                                headers={"Authorization": f"Bearer {token}"})
    expect_challenge(resp, 401)


def test_bearer_mandate_of_a_bearer_allowed_principal_works(server):
    client = server.register("pep-bearer", scopes=PDP_SCOPE, audiences=server.issuer,
                             allow_bearer=True)
    issued = pdp_mandate(client, dpop=False)
    assert "cnf" not in issued.claims, issued.claims
    bearer = Pep(client, issued, bearer=True)
    answer = bearer.ok(EVALUATION, READ_ALLOWED)
    assert answer["decision"] is True, answer
    assert decisions(bearer.ok(EVALUATIONS, batch(ALLOW_ITEM, DENY_ITEM))) == [True, False]
    assert bearer.ok(AUTHZ_DECISION, {"input": policy_input(READ_ALLOWED)})["result"]["allow"] is True
