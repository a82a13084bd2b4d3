"""Upstreams over HTTPS: the gateway verifies an upstream's certificate against the system's trust
store, or the CA bundle that SSL_CERT_FILE names, and refuses an upstream whose certificate does
not verify, before anything (a credential, the call) is sent to it.

The certificates are made here with `cryptography`; the TLS servers are Python's own `ssl` (a
plain HTTP API) and uvicorn running the official MCP SDK's server (fixture_mcp.py).
"""
import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from test_gateway import Agent, run, text_of
from test_interop import Server, free_port, kill_groups, run_server
from test_pdp import resource_proof

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixture_mcp.py"
API_KEY = "tls-api-key-" + uuid.uuid4().hex


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certs(dir: Path) -> dict:
    """A CA, a server certificate it signs for 127.0.0.1 and localhost, and a self-signed
    ("rogue") server certificate for the same names; PEM files in `dir`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Mandate test CA"))
          .issuer_name(_name("Mandate test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(issuer_name, issuer_key, key):
        return (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
                .issuer_name(issuer_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                    critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(issuer_key, hashes.SHA256()))

    good_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    good = leaf(ca.subject, ca_key, good_key)
    rogue = leaf(_name("127.0.0.1"), rogue_key, rogue_key)
    files = {}
    for name, data in [("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                       ("good.pem", good.public_bytes(serialization.Encoding.PEM)),
                       ("good.key", _pem_key(good_key)),
                       ("rogue.pem", rogue.public_bytes(serialization.Encoding.PEM)),
                       ("rogue.key", _pem_key(rogue_key))]:
        (dir / name).write_bytes(data)
        files[name] = dir / name
    return files


class Api:
    """A plain HTTP API over TLS in this process: answers every GET with the path it served and
    whether the injected key arrived (by hash), and remembers each request it received."""

    def __init__(self, cert: Path, key: Path):
        self.requests = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                got = self.headers.get("X-Api-Key") or ""
                api.requests.append({"path": self.path, "headers": dict(self.headers)})
                body = json.dumps({"served": self.path,
                                   "key": "match" if got == API_KEY else "no"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


class TlsServer(Server):
    """`mandate serve` trusting the test CA through SSL_CERT_FILE, with three HTTPS upstreams: an
    HTTP API and an MCP server whose certificates the CA signed, and an HTTP API whose
    self-signed certificate nothing trusts."""

    def configure(self) -> None:
        certs = make_certs(self.home)
        self.env["SSL_CERT_FILE"] = str(certs["ca.pem"])
        self.api = Api(certs["good.pem"], certs["good.key"])
        self.rogue = Api(certs["rogue.pem"], certs["rogue.key"])
        self.mcp_port = free_port()
        self.mcp = subprocess.Popen(
            [sys.executable, str(FIXTURE), "https", str(self.mcp_port),
             str(certs["good.pem"]), str(certs["good.key"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"https://127.0.0.1:{self.mcp_port}/mcp", timeout=1,
                             verify=str(certs["ca.pem"]))
                break
            except requests.RequestException:
                if self.mcp.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("fixture_mcp.py https did not start")
                time.sleep(0.2)
        key_file = self.home / "api-key"
        key_file.write_text(API_KEY + "\n")
        os.chmod(key_file, 0o600)
        routes = '[{ method = "GET", path = "/items/*", action = "get_item" }]'
        toml = f"""
[upstream.tlsapi]
http = "https://127.0.0.1:{self.api.port}/v1"
secret_header = {{ X-Api-Key = "@{key_file}" }}
routes = {routes}

[upstream.rogueapi]
http = "https://127.0.0.1:{self.rogue.port}/v1"
secret_header = {{ X-Api-Key = "@{key_file}" }}
routes = {routes}

[upstream.tlsmcp]
url = "https://127.0.0.1:{self.mcp_port}/mcp"
"""
        with open(self.home / "server" / "server.toml", "a") as f:
            f.write(toml)

    def stop(self) -> None:
        super().stop()
        for api in (getattr(self, "api", None), getattr(self, "rogue", None)):
            if api is not None:
                api.close()
        kill_groups(getattr(self, "mcp", None))


@pytest.fixture(scope="module")
def tls():
    yield from run_server(TlsServer, "mandate-tls-")


def api_get(server, upstream: str, path: str) -> requests.Response:
    client = server.register("tls", scopes=f"{upstream}:get_item", audiences=f"http:{upstream}")
    token = client.token(scope=f"{upstream}:get_item", audience=f"http:{upstream}").access_token
    url = f"{server.base_url}/http/{upstream}{path}"
    return requests.get(url, timeout=30, headers={
        "Authorization": f"DPoP {token}", "DPoP": resource_proof(client, "GET", url, token)})


def test_an_https_api_whose_certificate_the_trusted_ca_signed_is_reached_with_its_key(tls):
    resp = api_get(tls, "tlsapi", "/items/7")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"served": "/v1/items/7", "key": "match"}
    assert API_KEY not in resp.text


def test_an_https_mcp_server_is_reached_through_the_gateway(tls):
    agent = Agent(tls, "tlsmcp", "tlsmcp:echo")

    async def go():
        async with agent.session() as s:
            return await s.call_tool("echo", {"text": "over tls"})
    result = run(go())
    assert text_of(result) == "over tls" and not result.is_error


def test_an_upstream_whose_certificate_does_not_verify_gets_nothing_and_the_operator_is_told_why(tls):
    resp = api_get(tls, "rogueapi", "/items/7")
    assert resp.status_code == 502, resp.text
    assert "upstream rogueapi could not be reached" in resp.text, resp.text
    # The handshake failed: no request (and so no key) reached the rogue server.
    assert tls.rogue.requests == []
    # The operator's log names the cause; the key is in no log line.
    deadline = time.monotonic() + 5
    log = ""
    while time.monotonic() < deadline:
        log = tls.log_path.read_text(errors="replace")
        if "UnknownIssuer" in log:
            break
        time.sleep(0.1)
    assert "invalid peer certificate: UnknownIssuer" in log, tls.log_tail()
    assert API_KEY not in log
    # The call is in the audit log as failed at the upstream.
    events = tls.cli_json("audit", "query", "--action", "http.GET", "--json")
    failed = [e["event"] for e in events if e["event"].get("resource") == "rogueapi/get_item"]
    assert failed and failed[-1]["result"] == "failed", failed
    assert hashlib.sha256(API_KEY.encode()).hexdigest() not in json.dumps(events)
