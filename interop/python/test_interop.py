"""Interop tests for Mandate, driven from the outside with third-party libraries only.

Everything cryptographic on this side is done by PyJWT + cryptography (and, for the tweetnacl
tests, by tweetnacl under Node). The `mandate` binary is used for exactly two things: running the
server, and admin setup through its CLI (`mandate init`, `mandate agent create`). Nothing here
imports or shells out to Mandate for signing, verifying or key handling.

Environment:
  MANDATE_BIN            path to the built `mandate` binary (default: <repo>/target/release/mandate)
  MANDATE_INTEROP_KEEP   if set, keep the temporary MANDATE_HOME (its path is printed)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent
INTEROP_DIR = HERE.parent
REPO_ROOT = INTEROP_DIR.parent
NODE_DIR = INTEROP_DIR / "node"

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

GITHUB = "https://api.github.com"
LEEWAY = 5  # seconds of clock slack allowed when checking times
HTTP_TIMEOUT = 10
READY_TIMEOUT = 15
CLI_TIMEOUT = 60
MAX_AGENT_TTL = 3600  # default max_ttl: 1 h
DELEGATED_TTL = 600  # default lifetime of a delegated mandate: 10 min

# Errors a refused bearer request may carry (RFC 6749 §5.2 leaves the choice to the server).
BEARER_REFUSAL_ERRORS = {"invalid_request", "invalid_client", "unauthorized_client"}


# --------------------------------------------------------------------------------------------
# Small encoding / key helpers (pure Python + cryptography)
# --------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def raw_public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def okp_jwk(public_raw: bytes) -> dict:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_raw)}


def thumbprint(public_raw: bytes) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 key: required members, lexicographic order."""
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % b64url(public_raw)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_key_form(private_key: Ed25519PrivateKey, form: str) -> str:
    """The public half of `private_key` written in one of the forms Mandate must accept."""
    pub = private_key.public_key()
    if form == "jwk":
        return json.dumps(okp_jwk(raw_public(private_key)))
    if form == "pem":
        return pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
    if form == "openssh":
        line = pub.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode("ascii")
        return line + " interop@example"  # as found in authorized_keys / id_ed25519.pub
    if form == "base64url":
        return b64url(raw_public(private_key))
    if form == "base64":
        return base64.b64encode(raw_public(private_key)).decode("ascii")
    raise ValueError(f"unknown key form {form!r}")


def unique_name(prefix: str) -> str:
    """A fresh bare agent name ([a-z0-9][a-z0-9._-]{0,62}) so tests never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def scope_set(scope: str) -> set:
    return set(scope.split())


def act_chain(claims: dict) -> list:
    """The `sub` of every nested `act`, outermost (current actor) first."""
    chain = []
    act = claims.get("act")
    while isinstance(act, dict):
        chain.append(act.get("sub"))
        act = act.get("act")
    return chain


def describe(resp: requests.Response) -> str:
    return f"HTTP {resp.status_code} from {resp.request.method} {resp.url}: {resp.text[:2000]}"


def expect_error(resp: requests.Response, errors: set, statuses=(400,)) -> dict:
    """Assert an RFC 6749 §5.2 error response and return its body."""
    assert resp.status_code in statuses, f"expected HTTP {statuses} with {errors}; got {describe(resp)}"
    try:
        body = resp.json()
    except ValueError:
        pytest.fail(f"error response is not JSON: {describe(resp)}")
    assert body.get("error") in errors, f"expected error in {sorted(errors)}; got {describe(resp)}"
    description = body.get("error_description")
    assert isinstance(description, str) and description.strip(), (
        f"error response needs an error_description a person can act on: {describe(resp)}"
    )
    return body


def expect_client_error(resp: requests.Response) -> dict:
    """invalid_client may come as 400 or 401 (RFC 6749 §5.2)."""
    return expect_error(resp, {"invalid_client"}, statuses=(400, 401))


# --------------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------------


def kill_groups(*procs) -> None:
    """Kills each still-running process started with start_new_session, with its whole group."""
    for p in procs:
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mandate_bin() -> Path:
    configured = os.environ.get("MANDATE_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "release" / "mandate"
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    return path


class Server:
    """A `mandate serve` child process with its own MANDATE_HOME."""

    def __init__(self, binary: Path, home: Path, port: int):
        self.binary = binary
        self.home = home
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.metadata_url = f"{self.base_url}/.well-known/oauth-authorization-server"
        self.log_path = home / "interop-serve.log"
        self.env = dict(os.environ, MANDATE_HOME=str(home), NO_COLOR="1")
        self.proc: Optional[subprocess.Popen] = None
        self._metadata: Optional[dict] = None
        self.http = requests.Session()

    # -- process lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        init = self.run_cli("init", "--listen", f"127.0.0.1:{self.port}", "--json", check=False)
        if init.returncode != 0:
            pytest.fail(
                f"`mandate init` failed (exit {init.returncode})\n"
                f"stdout: {init.stdout}\nstderr: {init.stderr}"
            )
        self.configure()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"`mandate serve` exited with {self.proc.returncode} before answering\n"
                    f"{self.log_tail()}"
                )
            try:
                resp = self.http.get(self.metadata_url, timeout=1)
                if resp.status_code == 200:
                    return
                last = describe(resp)
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"`mandate serve` did not answer 200 on {self.metadata_url} within {READY_TIMEOUT}s "
            f"(last: {last})\n{self.log_tail()}"
        )

    def configure(self) -> None:
        """Between `mandate init` and `mandate serve`: subclasses edit the configuration here."""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The server runs in its own session/process group: signal only that group.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        self.http.close()

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- mandate serve log ({self.log_path}), last {lines} lines ---\n{tail}"

    # -- admin CLI (setup only) -------------------------------------------------------------

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"`mandate {' '.join(args)}` exited {proc.returncode}\n"
                f"stderr: {proc.stderr.strip()}\nstdout: {proc.stdout.strip()}"
            )
        return proc

    def cli_json(self, *args: str) -> dict:
        proc = self.run_cli(*args)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"`mandate {' '.join(args)}` did not print JSON: {proc.stdout!r}")

    def create_agent(
        self,
        name: str,
        public_key: str,
        *,
        scopes: str = "github:* ci:read",
        audiences: str = GITHUB,
        allow_bearer: bool = False,
    ) -> dict:
        args = ["agent", "create", name, "--public-key", public_key,
                "--scopes", scopes, "--audiences", audiences]
        if allow_bearer:
            args.append("--allow-bearer")
        created = self.cli_json(*args, "--json")
        assert created.get("name") == f"agent:{name}", f"agent create printed {created}"
        assert created.get("kid"), f"agent create printed no kid: {created}"
        return created

    def register(
        self,
        prefix: str,
        private_key: Optional[Ed25519PrivateKey] = None,
        *,
        form: str = "jwk",
        **ceiling,
    ) -> "Client":
        """Register a new agent holding `private_key` (made here if None); return its client."""
        private_key = private_key or Ed25519PrivateKey.generate()
        name = unique_name(prefix)
        created = self.create_agent(name, public_key_form(private_key, form), **ceiling)
        client = Client(self, f"agent:{name}", private_key)
        assert created["kid"] == client.jkt, (
            f"kid {created['kid']} is not the RFC 7638 thumbprint {client.jkt}"
        )
        return client

    # -- discovery and verification ---------------------------------------------------------

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            resp = self.http.get(self.metadata_url, timeout=HTTP_TIMEOUT)
            assert resp.status_code == 200, describe(resp)
            self._metadata = resp.json()
        return self._metadata

    @property
    def issuer(self) -> str:
        return self.metadata["issuer"]

    @property
    def token_endpoint(self) -> str:
        return self.metadata["token_endpoint"]

    def jwks(self) -> dict:
        resp = self.http.get(self.metadata["jwks_uri"], timeout=HTTP_TIMEOUT)
        assert resp.status_code == 200, describe(resp)
        return resp.json()

    def verification_keys(self) -> dict:
        """kid -> public key object, built with PyJWT from the published JWKS."""
        keys = {}
        for jwk in self.jwks().get("keys", []):
            assert jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519", f"unexpected JWK {jwk}"
            assert "d" not in jwk, "JWKS leaks private key material"
            assert jwk.get("kid"), f"JWK without kid: {jwk}"
            # algorithm given explicitly: the JWK may say "EdDSA" or the RFC 9864 "Ed25519".
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="EdDSA").key
        assert keys, "JWKS has no keys"
        return keys

    def verify(self, token: str, *, audience: Optional[str] = GITHUB) -> dict:
        """Verify an issued mandate with PyJWT against the JWKS; return its claims.

        Checks: JOSE header (alg EdDSA, typ at+jwt, known kid), signature, iss, aud, exp, nbf,
        iat, and the presence/shape of the claims every mandate carries.
        """
        header = jwt.get_unverified_header(token)
        assert header.get("alg") == "EdDSA", f"token alg is {header.get('alg')!r}: {header}"
        assert header.get("typ") == "at+jwt", f"token typ is {header.get('typ')!r}: {header}"
        kid = header.get("kid")
        keys = self.verification_keys()
        assert kid in keys, f"token kid {kid!r} is not in the JWKS ({sorted(keys)})"
        claims = jwt.decode(
            token,
            key=keys[kid],
            algorithms=["EdDSA"],
            issuer=self.issuer,
            audience=audience,
            leeway=LEEWAY,
            options={
                "require": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"],
                "verify_aud": audience is not None,
            },
        )
        now = time.time()
        assert claims["iat"] <= now + LEEWAY and claims["nbf"] <= now + LEEWAY
        assert claims["exp"] > now, "token already expired"
        assert claims["exp"] - claims["iat"] <= MAX_AGENT_TTL + LEEWAY, "lifetime above max_ttl"
        assert isinstance(claims.get("scope"), str), f"scope must be a space-separated string: {claims}"
        assert isinstance(claims.get("client_id"), str) and claims["client_id"], claims
        mandate = claims.get("mandate")
        assert isinstance(mandate, dict), f"no mandate claim: {claims}"
        assert isinstance(mandate.get("depth"), int), f"mandate.depth: {mandate}"
        assert isinstance(mandate.get("parents"), list), f"mandate.parents: {mandate}"
        return claims


# --------------------------------------------------------------------------------------------
# An OAuth client built from PyJWT + cryptography
# --------------------------------------------------------------------------------------------


@dataclass
class Issued:
    """A successful token response together with the verified claims of its access token."""

    body: dict
    header: dict
    claims: dict

    @property
    def access_token(self) -> str:
        return self.body["access_token"]

    @property
    def jti(self) -> str:
        return self.claims["jti"]


class Client:
    """An agent that authenticates by private_key_jwt and binds its tokens by DPoP."""

    def __init__(self, server: Server, name: str, private_key: Ed25519PrivateKey):
        self.server = server
        self.name = name  # the principal, "agent:<name>"
        self.private_key = private_key
        self.public_raw = raw_public(private_key)
        self.jwk = okp_jwk(self.public_raw)
        self.jkt = thumbprint(self.public_raw)
        self.dpop_nonce: Optional[str] = None

    def assertion_claims(self, *, aud: Optional[str] = None, lifetime: int = 60,
                         jti: Optional[str] = None) -> dict:
        now = int(time.time())
        return {
            "iss": self.name,
            "sub": self.name,
            "aud": aud or self.server.issuer,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or str(uuid.uuid4()),
        }

    def assertion(self, *, aud: Optional[str] = None, lifetime: int = 60,
                  signer: Optional[Callable[[bytes], bytes]] = None) -> str:
        """RFC 7523 client assertion. Signed by PyJWT, or by `signer(signing_input) -> sig`."""
        claims = self.assertion_claims(aud=aud, lifetime=lifetime)
        header = {"alg": "EdDSA", "typ": "JWT", "kid": self.jkt}
        if signer is None:
            return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers=header)
        signing_input = f"{b64url(compact_json(header))}.{b64url(compact_json(claims))}"
        signature = signer(signing_input.encode("ascii"))
        return f"{signing_input}.{b64url(signature)}"

    def dpop_proof(self, method: str, url: str, *, nonce: Optional[str] = None) -> str:
        """RFC 9449 DPoP proof JWT for one request."""
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
        if nonce:
            claims["nonce"] = nonce
        headers = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": self.jwk}
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers=headers)

    def request_token(self, grant_type: str = CLIENT_CREDENTIALS, *, dpop: bool = True,
                      assertion: Optional[str] = None, **params: str) -> requests.Response:
        """POST the token endpoint; returns the raw response (success or error)."""
        url = self.server.token_endpoint
        for _attempt in range(2):
            form = {
                "grant_type": grant_type,
                "client_id": self.name,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion or self.assertion(),
                **params,
            }
            headers = {"Accept": "application/json"}
            if dpop:
                headers["DPoP"] = self.dpop_proof("POST", url, nonce=self.dpop_nonce)
            resp = self.server.http.post(url, data=form, headers=headers, timeout=HTTP_TIMEOUT)
            # RFC 9449 §8: a server may demand a nonce; retry once with it.
            nonce = resp.headers.get("DPoP-Nonce")
            if nonce:
                self.dpop_nonce = nonce
            if (dpop and nonce and resp.status_code in (400, 401)
                    and _error_of(resp) == "use_dpop_nonce"):
                continue
            return resp
        return resp

    def token(self, grant_type: str = CLIENT_CREDENTIALS, *, dpop: bool = True,
              assertion: Optional[str] = None, **params: str) -> Issued:
        """Obtain a token, insist on success, verify it against the JWKS."""
        resp = self.request_token(grant_type, dpop=dpop, assertion=assertion, **params)
        assert resp.status_code == 200, describe(resp)
        body = resp.json()
        assert isinstance(body.get("access_token"), str), body
        assert body.get("token_type") == ("DPoP" if dpop else "Bearer"), (
            f"token_type {body.get('token_type')!r} with dpop={dpop}: {body}"
        )
        assert isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, body
        assert isinstance(body.get("scope"), str), body
        token = body["access_token"]
        claims = self.server.verify(token, audience=params.get("audience", GITHUB))
        assert scope_set(body["scope"]) == scope_set(claims["scope"]), (body, claims)
        assert abs((claims["exp"] - claims["iat"]) - body["expires_in"]) <= LEEWAY, (body, claims)
        return Issued(body=body, header=jwt.get_unverified_header(token), claims=claims)


def _error_of(resp: requests.Response) -> Optional[str]:
    try:
        return resp.json().get("error")
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# tweetnacl under Node
# --------------------------------------------------------------------------------------------


def node(script: str, *args: str, stdin: Optional[str] = None) -> str:
    node_bin = shutil.which("node")
    if node_bin is None:
        pytest.fail("node is not on PATH (the tweetnacl tests need Node.js)")
    if not (NODE_DIR / "node_modules" / "tweetnacl").is_dir():
        pytest.fail(f"tweetnacl is not installed: run `npm ci` in {NODE_DIR} (interop/run.sh does)")
    proc = subprocess.run(
        [node_bin, script, *args],
        cwd=NODE_DIR,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"node {script} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def tweetnacl_sign(secret_key_b64: str, message: bytes) -> bytes:
    request = json.dumps({"secretKey": secret_key_b64,
                          "message": base64.b64encode(message).decode("ascii")})
    return base64.b64decode(node("sign.js", stdin=request).strip(), validate=True)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


def run_server(make, prefix: str):
    """Starts `make(binary, home, port)` in a fresh MANDATE_HOME, yields it, stops and cleans up."""
    binary = mandate_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"mandate binary not found at {binary}: build it (cargo build --release) "
                    f"or set MANDATE_BIN")
    home = Path(tempfile.mkdtemp(prefix=prefix))
    srv = make(binary, home, free_port())
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if os.environ.get("MANDATE_INTEROP_KEEP"):
            print(f"\nMANDATE_HOME kept at {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    yield from run_server(Server, "mandate-interop-")


@pytest.fixture(scope="session")
def nacl_agent(server):
    """An agent whose key was made by tweetnacl exactly as the article's script makes it."""
    identity = json.loads(node("agent-id.js"))
    name = unique_name("nacl")
    # Registered with the public key exactly as printed (standard base64, padded).
    created = server.create_agent(name, identity["publicKey"])
    secret = base64.b64decode(identity["secretKey"], validate=True)
    assert len(secret) == 64
    seed, public = secret[:32], secret[32:]
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    assert raw_public(private_key) == public == base64.b64decode(identity["publicKey"])
    client = Client(server, f"agent:{name}", private_key)
    return identity, created, client


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def test_metadata_advertises_issuer_endpoints_grants_and_algorithms(server):
    md = server.metadata
    assert md["issuer"].rstrip("/") == server.base_url, md
    for field in ("token_endpoint", "jwks_uri"):
        assert md.get(field, "").startswith(server.base_url + "/"), (field, md)
    assert {CLIENT_CREDENTIALS, TOKEN_EXCHANGE} <= set(md.get("grant_types_supported", [])), md
    assert "private_key_jwt" in md.get("token_endpoint_auth_methods_supported", []), md
    assert "EdDSA" in md.get("dpop_signing_alg_values_supported", []), md


def test_metadata_advertises_introspection_and_revocation_endpoints(server):
    md = server.metadata
    for field in ("introspection_endpoint", "revocation_endpoint"):
        assert md.get(field, "").startswith(server.base_url + "/"), (field, md)


def test_jwks_publishes_only_public_ed25519_keys(server):
    jwks = server.jwks()
    assert jwks.get("keys"), jwks
    for jwk in jwks["keys"]:
        assert jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519", jwk
        assert len(b64url_decode(jwk["x"])) == 32, jwk
        assert "d" not in jwk, "private key material in the JWKS"
        assert jwk.get("kid"), jwk
        assert jwk.get("alg", "EdDSA") in ("EdDSA", "Ed25519"), jwk
    assert server.verification_keys()  # PyJWT can build every published key


# --------------------------------------------------------------------------------------------
# tweetnacl-made agents
# --------------------------------------------------------------------------------------------


def test_tweetnacl_public_key_registers_with_rfc7638_kid(nacl_agent):
    identity, created, client = nacl_agent
    public_raw = base64.b64decode(identity["publicKey"], validate=True)
    assert len(public_raw) == 32
    expected = thumbprint(public_raw)
    assert created["kid"] == expected == client.jkt, (created, expected)


def test_tweetnacl_key_loaded_in_python_gets_dpop_token(nacl_agent):
    _identity, _created, client = nacl_agent
    issued = client.token(scope="github:pulls.read", audience=GITHUB)
    assert issued.claims["sub"] == client.name
    assert issued.claims["client_id"] == client.name
    assert issued.claims["cnf"]["jkt"] == client.jkt


def test_tweetnacl_signed_client_assertion_is_accepted(nacl_agent):
    identity, _created, client = nacl_agent

    def sign_with_tweetnacl(signing_input: bytes) -> bytes:
        signature = tweetnacl_sign(identity["secretKey"], signing_input)
        assert len(signature) == 64
        # Ed25519 is deterministic: tweetnacl and cryptography must agree byte for byte.
        assert signature == client.private_key.sign(signing_input)
        return signature

    assertion = client.assertion(signer=sign_with_tweetnacl)
    issued = client.token(assertion=assertion, scope="ci:read", audience=GITHUB)
    assert issued.claims["sub"] == client.name
    assert issued.claims["cnf"]["jkt"] == client.jkt


# --------------------------------------------------------------------------------------------
# Python-made agents: every accepted key form
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["jwk", "pem", "openssh", "base64url"])
def test_python_key_registered_as_form_gets_verifiable_dpop_token(server, form):
    client = server.register(f"py-{form}", form=form)
    issued = client.token(scope="github:pulls.write ci:read", audience=GITHUB)

    assert issued.header["alg"] == "EdDSA" and issued.header["typ"] == "at+jwt", issued.header
    claims = issued.claims
    assert claims["iss"] == server.issuer
    assert claims["aud"] == GITHUB or claims["aud"] == [GITHUB], claims
    assert claims["exp"] > time.time()
    assert claims["sub"] == client.name and claims["client_id"] == client.name
    assert scope_set(claims["scope"]) == {"github:pulls.write", "ci:read"}
    assert claims["cnf"]["jkt"] == client.jkt
    assert claims["mandate"]["depth"] == 0, claims["mandate"]
    assert claims["mandate"]["parents"] == [], claims["mandate"]
    assert "act" not in claims, claims

    # The same check through PyJWT's own JWKS client, as a third-party resource server would.
    signing_key = jwt.PyJWKClient(server.metadata["jwks_uri"]).get_signing_key_from_jwt(
        issued.access_token
    )
    again = jwt.decode(issued.access_token, signing_key.key, algorithms=["EdDSA"],
                       issuer=server.issuer, audience=GITHUB, leeway=LEEWAY)
    assert again == claims


def test_client_assertion_audience_may_be_token_endpoint(server):
    client = server.register("aud-te")
    assertion = client.assertion(aud=server.token_endpoint)
    issued = client.token(assertion=assertion, scope="ci:read", audience=GITHUB)
    assert issued.claims["sub"] == client.name


def test_token_response_is_not_cacheable(server):
    client = server.register("nostore")
    resp = client.request_token(scope="ci:read", audience=GITHUB)
    assert resp.status_code == 200, describe(resp)
    server.verify(resp.json()["access_token"])
    assert "no-store" in resp.headers.get("Cache-Control", ""), dict(resp.headers)


# --------------------------------------------------------------------------------------------
# Bearer vs DPoP
# --------------------------------------------------------------------------------------------


def test_bearer_refused_without_allow_bearer(server):
    client = server.register("nobearer")
    resp = client.request_token(dpop=False, scope="ci:read", audience=GITHUB)
    expected_status = (400, 401) if _error_of(resp) == "invalid_client" else (400,)
    expect_error(resp, BEARER_REFUSAL_ERRORS, statuses=expected_status)


def test_bearer_issued_with_allow_bearer_has_no_cnf(server):
    client = server.register("bearer", allow_bearer=True)
    issued = client.token(dpop=False, scope="ci:read", audience=GITHUB)
    assert issued.body["token_type"] == "Bearer"
    assert "cnf" not in issued.claims, issued.claims
    assert issued.claims["sub"] == client.name


# --------------------------------------------------------------------------------------------
# Client authentication refusals
# --------------------------------------------------------------------------------------------


def test_replayed_client_assertion_is_refused(server):
    client = server.register("replay")
    assertion = client.assertion()
    client.token(assertion=assertion, scope="ci:read", audience=GITHUB)  # first use: fine
    resp = client.request_token(assertion=assertion, scope="ci:read", audience=GITHUB)
    expect_client_error(resp)


def test_client_assertion_signed_by_another_key_is_refused(server):
    client = server.register("wrongkey")
    impostor = Client(server, client.name, Ed25519PrivateKey.generate())
    resp = impostor.request_token(scope="ci:read", audience=GITHUB)
    expect_client_error(resp)


def test_client_assertion_expiring_beyond_five_minutes_is_refused(server):
    client = server.register("longexp")
    assertion = client.assertion(lifetime=3600)
    resp = client.request_token(assertion=assertion, scope="ci:read", audience=GITHUB)
    expect_client_error(resp)


def test_cli_refuses_unrecognised_public_key_naming_accepted_forms(server):
    proc = server.run_cli("agent", "create", unique_name("badkey"), "--public-key",
                          "definitely not a key", "--scopes", "ci:read", "--audiences", GITHUB,
                          "--json", check=False)
    assert proc.returncode != 0, f"bad key accepted: {proc.stdout}"
    message = proc.stderr.strip()
    assert message, "no reason on stderr"
    lowered = message.lower()
    assert any(form in lowered for form in ("jwk", "pem", "ssh", "base64")), message


# --------------------------------------------------------------------------------------------
# Ceilings on client_credentials
# --------------------------------------------------------------------------------------------


def test_client_credentials_scope_beyond_ceiling_is_invalid_scope(server):
    client = server.register("ceiling", scopes="ci:read")
    resp = client.request_token(scope="ci:read github:admin", audience=GITHUB)
    expect_error(resp, {"invalid_scope"})


def test_client_credentials_audience_beyond_ceiling_is_invalid_target(server):
    client = server.register("aud-ceiling")
    resp = client.request_token(scope="ci:read", audience="https://api.example.invalid")
    expect_error(resp, {"invalid_target"})


# --------------------------------------------------------------------------------------------
# Delegation by token exchange (RFC 8693 push: requested_actor)
# --------------------------------------------------------------------------------------------


def exchange(holder: Client, subject: Issued, to: Client, scope: str,
             audience: str = GITHUB) -> requests.Response:
    return holder.request_token(
        TOKEN_EXCHANGE,
        subject_token=subject.access_token,
        subject_token_type=ACCESS_TOKEN_TYPE,
        requested_actor=to.name,
        scope=scope,
        audience=audience,
    )


def delegated(resp: requests.Response, server: Server) -> Issued:
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert body.get("issued_token_type") == ACCESS_TOKEN_TYPE, body
    assert body.get("token_type") == "DPoP", body
    assert isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, body
    assert isinstance(body.get("scope"), str), body
    claims = server.verify(body["access_token"], audience=GITHUB)
    return Issued(body=body, header=jwt.get_unverified_header(body["access_token"]),
                  claims=claims)


@pytest.fixture
def delegation(server):
    """Agents A and B (python keys) and A's own mandate."""
    a = server.register("deleg-a", scopes="github:*")
    b = server.register("deleg-b", scopes="github:*")
    a_token = a.token(scope="github:pulls.write github:issues.read", audience=GITHUB)
    assert scope_set(a_token.claims["scope"]) == {"github:pulls.write", "github:issues.read"}
    return a, b, a_token


def test_token_exchange_push_delegation_to_agent_b(server, delegation):
    a, b, a_token = delegation
    issued = delegated(exchange(a, a_token, b, "github:pulls.write"), server)
    claims = issued.claims

    assert scope_set(issued.body["scope"]) == {"github:pulls.write"}, issued.body
    assert scope_set(claims["scope"]) == {"github:pulls.write"}
    assert claims["sub"] == a.name, "sub is the root of the chain"
    assert claims["client_id"] == b.name, "client_id is the agent that holds the token"
    chain = act_chain(claims)
    assert chain and chain[0] == b.name, claims.get("act")
    assert chain in ([b.name], [b.name, a.name]), claims.get("act")
    assert claims["mandate"]["depth"] == 1, claims["mandate"]
    assert a_token.jti in claims["mandate"]["parents"], claims["mandate"]
    assert claims["cnf"]["jkt"] == b.jkt, "bound to the delegate's key"
    assert claims["jti"] != a_token.jti
    assert claims["exp"] <= a_token.claims["exp"], "outlives its parent"
    assert claims["exp"] - claims["iat"] <= DELEGATED_TTL + LEEWAY, "default delegated lifetime"


def test_token_exchange_cannot_escalate_beyond_subject_token_scope(server, delegation):
    a, b, a_token = delegation
    # B's ceiling (github:*) would allow it; A's mandate does not hold it.
    expect_error(exchange(a, a_token, b, "github:admin"), {"invalid_scope"})


def test_token_exchange_cannot_exceed_delegate_ceiling(server, delegation):
    a, _b, a_token = delegation
    narrow = server.register("deleg-narrow", scopes="github:pulls.write")
    # A holds github:issues.read, but the delegate's ceiling does not cover it.
    expect_error(exchange(a, a_token, narrow, "github:issues.read"), {"invalid_scope"})


def test_delegated_token_can_be_delegated_again_by_its_holder(server, delegation):
    a, b, a_token = delegation
    c = server.register("deleg-c", scopes="github:*")
    b_token = delegated(exchange(a, a_token, b, "github:pulls.write github:issues.read"), server)

    # B holds a mandate bound to its key; it passes a narrower one on to C.
    c_token = delegated(exchange(b, b_token, c, "github:pulls.write"), server)
    claims = c_token.claims
    assert claims["sub"] == a.name
    assert claims["client_id"] == c.name
    chain = act_chain(claims)
    assert chain[:2] == [c.name, b.name], claims.get("act")
    assert chain in ([c.name, b.name], [c.name, b.name, a.name]), claims.get("act")
    assert claims["mandate"]["depth"] == 2, claims["mandate"]
    assert {a_token.jti, b_token.jti} <= set(claims["mandate"]["parents"]), claims["mandate"]
    assert claims["cnf"]["jkt"] == c.jkt
    assert scope_set(claims["scope"]) == {"github:pulls.write"}
    assert claims["exp"] <= b_token.claims["exp"]
