"""Interop: RFC 7662 introspection and RFC 7009 revocation, driven by a third-party client.

As in test_interop.py, everything cryptographic on this side is PyJWT + cryptography; the
`mandate` binary only runs the server and registers agents. The server, client and helpers are
test_interop.py's own, imported (its session `server` fixture included).
"""

from __future__ import annotations

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from test_interop import (  # noqa: F401  (`server` is a fixture, used by name)
    ASSERTION_TYPE,
    GITHUB,
    HTTP_TIMEOUT,
    TOKEN_EXCHANGE,
    ACCESS_TOKEN_TYPE,
    Client,
    describe,
    expect_client_error,
    expect_error,
    server,
)


def endpoint(srv, name: str) -> str:
    url = srv.metadata.get(name)
    assert isinstance(url, str) and url.startswith(srv.base_url + "/"), (name, srv.metadata)
    return url


def call(client: Client, url: str, token: str, *, aud: str | None = None,
         dpop: bool = False, authenticate: bool = True) -> requests.Response:
    """POST `token` to an introspection or revocation endpoint, authenticated by
    private_key_jwt (assertion `aud` defaults to the issuer), with a DPoP proof if asked."""
    form = {"token": token}
    if authenticate:
        form.update(client_assertion_type=ASSERTION_TYPE,
                    client_assertion=client.assertion(aud=aud))
    headers = {"Accept": "application/json"}
    if dpop:
        headers["DPoP"] = client.dpop_proof("POST", url)
    return client.server.http.post(url, data=form, headers=headers, timeout=HTTP_TIMEOUT)


def introspect(client: Client, token: str, **kw) -> dict:
    resp = call(client, endpoint(client.server, "introspection_endpoint"), token, **kw)
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), describe(resp)
    assert "no-store" in resp.headers.get("Cache-Control", ""), dict(resp.headers)
    return resp.json()


def revoke(client: Client, token: str, **kw) -> requests.Response:
    return call(client, endpoint(client.server, "revocation_endpoint"), token, **kw)


@pytest.fixture
def agent(server):
    """A Python-made agent with its own key and a fresh DPoP-bound mandate."""
    client = server.register("introspect")
    return client, client.token(scope="github:pulls.read ci:read", audience=GITHUB)


def test_introspection_of_own_token_matches_the_jwks_verified_claims(server, agent):
    client, issued = agent
    answer = introspect(client, issued.access_token)
    assert answer.get("active") is True, answer
    assert answer.get("token_type") == "DPoP", answer

    # The claims, decoded here by PyJWT against the published JWKS.
    kid = jwt.get_unverified_header(issued.access_token)["kid"]
    decoded = jwt.decode(issued.access_token, server.verification_keys()[kid],
                         algorithms=["EdDSA"], issuer=server.issuer, audience=GITHUB)
    assert decoded == issued.claims
    for name, value in decoded.items():
        assert answer.get(name) == value, f"introspection {name}={answer.get(name)!r}, token {value!r}"
    assert set(answer) == set(decoded) | {"active", "token_type"}, answer
    assert answer["sub"] == answer["client_id"] == client.name
    assert answer["cnf"]["jkt"] == client.jkt


def test_introspection_accepts_the_endpoint_as_audience_and_a_dpop_proof_for_it(server, agent):
    client, issued = agent
    url = endpoint(server, "introspection_endpoint")
    for aud in (server.issuer, server.token_endpoint, url):
        assert introspect(client, issued.access_token, aud=aud)["active"] is True, aud
    assert introspect(client, issued.access_token, dpop=True)["active"] is True


def test_introspection_of_a_delegated_token_carries_act(server, agent):
    client, issued = agent
    delegate = server.register("introspect-delegate")
    resp = client.request_token(TOKEN_EXCHANGE, subject_token=issued.access_token,
                                subject_token_type=ACCESS_TOKEN_TYPE,
                                requested_actor=delegate.name, scope="github:pulls.read",
                                audience=GITHUB)
    assert resp.status_code == 200, describe(resp)
    token = resp.json()["access_token"]
    # The delegate, holder of the new mandate, asks about it.
    answer = introspect(delegate, token)
    assert answer["active"] is True, answer
    assert answer["act"]["sub"] == delegate.name, answer
    assert answer["client_id"] == delegate.name and answer["sub"] == client.name, answer
    assert answer["mandate"]["parents"] == [issued.jti], answer
    assert answer["cnf"]["jkt"] == delegate.jkt, answer


@pytest.mark.parametrize("garbage", [
    "garbage",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "a.b.c",
])
def test_introspection_of_garbage_is_only_inactive(agent, garbage):
    client, _issued = agent
    assert introspect(client, garbage) == {"active": False}


def test_introspection_of_a_token_signed_by_the_client_itself_is_inactive(server, agent):
    client, issued = agent
    # The same claims, validly signed, but by the client's own key under its own kid.
    forged = jwt.encode(issued.claims, client.private_key, algorithm="EdDSA",
                        headers={"typ": "at+jwt", "kid": client.jkt})
    assert introspect(client, forged) == {"active": False}


def test_introspection_without_client_authentication_is_invalid_client(server, agent):
    client, issued = agent
    resp = call(client, endpoint(server, "introspection_endpoint"), issued.access_token,
                authenticate=False)
    assert resp.status_code == 401, describe(resp)
    body = expect_client_error(resp)
    assert "active" not in body, body
    # Signed by a key that is not the client's.
    impostor = Client(server, client.name, Ed25519PrivateKey.generate())
    expect_client_error(call(impostor, endpoint(server, "introspection_endpoint"),
                             issued.access_token))


def test_revocation_by_the_holder_makes_its_token_inactive(server, agent):
    client, issued = agent
    outsider = server.register("introspect-outsider")
    resp = revoke(outsider, issued.access_token)
    expect_error(resp, {"unauthorized_client"})
    assert introspect(client, issued.access_token)["active"] is True

    resp = revoke(client, issued.access_token)
    assert resp.status_code == 200, describe(resp)
    assert introspect(client, issued.access_token) == {"active": False}
    # Nor can it be exchanged any more.
    resp = client.request_token(TOKEN_EXCHANGE, subject_token=issued.access_token,
                                subject_token_type=ACCESS_TOKEN_TYPE,
                                requested_actor=outsider.name, scope="github:pulls.read",
                                audience=GITHUB)
    expect_error(resp, {"invalid_grant"})
    # Revoking again, or revoking garbage: 200 (RFC 7009 §2.2).
    assert revoke(client, issued.access_token).status_code == 200
    assert revoke(client, "garbage").status_code == 200

    # Anyone who verifies mandates learns it from the public feed.
    feed = server.http.get(f"{server.base_url}/revocations/v1", params={"since": 0},
                           timeout=HTTP_TIMEOUT)
    assert feed.status_code == 200, describe(feed)
    entries = feed.json()["entries"]
    assert {"kind": "jti", "value": issued.jti} in [
        {"kind": e["kind"], "value": e["value"]} for e in entries
    ], entries
    # The client's other mandates are untouched.
    other = client.token(scope="ci:read", audience=GITHUB)
    assert introspect(client, other.access_token)["active"] is True


def test_revocation_of_a_parent_makes_the_delegated_token_inactive(server, agent):
    client, issued = agent
    delegate = server.register("introspect-child")
    resp = client.request_token(TOKEN_EXCHANGE, subject_token=issued.access_token,
                                subject_token_type=ACCESS_TOKEN_TYPE,
                                requested_actor=delegate.name, scope="github:pulls.read",
                                audience=GITHUB)
    assert resp.status_code == 200, describe(resp)
    child = resp.json()["access_token"]
    assert introspect(delegate, child)["active"] is True
    assert revoke(client, issued.access_token).status_code == 200
    assert introspect(delegate, child) == {"active": False}
