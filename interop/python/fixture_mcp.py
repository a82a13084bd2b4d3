"""An MCP server written for the gateway tests with the official Python SDK (`MCPServer`).

`python fixture_mcp.py stdio` or `python fixture_mcp.py http PORT`. Its tools tell the tests what
reached the upstream without ever echoing a secret: `key_check` compares the SHA-256 of the
`X-Upstream-Key` header and of the `FIXTURE_KEY` variable with `FIXTURE_EXPECTED_SHA256`;
`env_names` lists the names (never the values) of its environment; `crash` exits the process.
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
def env_names() -> str:
    """The names of the variables in this process's environment."""
    return ",".join(sorted(os.environ))


@server.tool()
def echo(text: str) -> str:
    """Returns its argument."""
    return text


@server.tool()
def crash() -> str:
    """Exits the process at once (the gateway must restart a stdio upstream)."""
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1] == "http":
        port = int(sys.argv[2])
        anyio.run(lambda: server.run_streamable_http_async(port=port))
    else:
        server.run("stdio")
