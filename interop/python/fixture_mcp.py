"""An MCP server written for the gateway tests with the official Python SDK (`MCPServer`).

`python fixture_mcp.py stdio`, `python fixture_mcp.py http PORT` or
`python fixture_mcp.py https PORT CERT_PEM KEY_PEM`. Its tools tell the tests what
reached the upstream without ever echoing a secret: `key_check` compares the SHA-256 of the
`X-Upstream-Key` header and of the `FIXTURE_KEY` variable with `FIXTURE_EXPECTED_SHA256`;
`env_names` lists the names (never the values) of its environment; `crash` exits the process;
`forwarded_mandate` verifies the mandate the gateway forwards (`Authorization: Bearer`) with PyJWT
against the authority's JWKS (`FIXTURE_ISSUER`) and returns its claims and the token's SHA-256.
"""
import hashlib
import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

EXPECTED = os.environ.get("FIXTURE_EXPECTED_SHA256", "")
server = MCPServer("fixture")


def matches(value) -> bool:
    return bool(value) and hashlib.sha256(value.encode()).hexdigest() == EXPECTED


@server.tool()
def key_check(ctx: Context) -> str:
    """Whether the injected credentials arrived (by hash; nothing secret is returned)."""
    headers = ctx.headers or {}
    header = headers.get("x-upstream-key") if hasattr(headers, "get") else None
    env = os.environ.get("FIXTURE_KEY")
    return f"header:{'match' if matches(header) else 'no'} env:{'match' if matches(env) else 'no'}"


@server.tool()
def leak_key(ctx: Context) -> str:
    """Returns the injected X-Upstream-Key header (over HTTP) or FIXTURE_KEY variable (over stdio)
    as it arrived: a badly behaved upstream, which the gateway must keep from handing its own key
    to the agent."""
    headers = ctx.headers or {}
    header = headers.get("x-upstream-key") if hasattr(headers, "get") else None
    return f"the key I was given: {header or os.environ.get('FIXTURE_KEY')}"


@server.tool()
def env_names() -> str:
    """The names of the variables in this process's environment."""
    return ",".join(sorted(os.environ))


@server.tool()
def echo(text: str) -> str:
    """Returns its argument."""
    return text


@server.tool()
def forwarded_mandate(ctx: Context) -> str:
    """The forwarded mandate's verified claims (a JSON object), or `none` when none came."""
    import json

    import jwt
    import requests

    headers = ctx.headers or {}
    auth = headers.get("authorization") if hasattr(headers, "get") else None
    if not auth:
        return "none"
    scheme, _, token = auth.partition(" ")
    issuer = os.environ["FIXTURE_ISSUER"]
    meta = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer=issuer,
                        options={"verify_aud": False, "require": ["exp", "iat", "jti"]})
    header = jwt.get_unverified_header(token)
    return json.dumps({"scheme": scheme, "typ": header.get("typ"), "claims": claims,
                       "sha256": hashlib.sha256(token.encode()).hexdigest()})


@server.tool()
def crash() -> str:
    """Exits the process at once (the gateway must restart a stdio upstream)."""
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1] == "http":
        port = int(sys.argv[2])
        anyio.run(lambda: server.run_streamable_http_async(port=port))
    elif sys.argv[1] == "https":
        # `https PORT CERT_PEM KEY_PEM`: the same server behind TLS (test_tls.py).
        import uvicorn

        port, cert, key = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port,
                    ssl_certfile=cert, ssl_keyfile=key, log_level="warning")
    else:
        server.run("stdio")
