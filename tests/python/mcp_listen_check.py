"""Watches wasmgate's tool list with the official Python MCP client (PyPI `mcp`).

Usage: python mcp_listen_check.py http://127.0.0.1:8000/mcp <token> auto|legacy

Prints one JSON line per step, which the end-to-end test reads as they come:

- the negotiated protocol, whether `tools.listChanged` is advertised, the tools;
- in `auto` mode (the client's default: `server/discover`, 2026-07-28), opens
  `subscriptions/listen` for tool list changes, prints `{"subscribed": ...}`,
  waits for the first change and prints it with the tools listed again;
- in `legacy` mode (the `initialize` handshake), prints whether listening
  is refused, as it must be before 2026-07-28.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared._httpx_utils import create_mcp_http_client


def say(line: dict) -> None:
    print(json.dumps(line), flush=True)


async def tool_names(client: Client) -> list[str]:
    return sorted(tool.name for tool in (await client.list_tools()).tools)


async def main(url: str, token: str, mode: str) -> None:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        tools_capability = client.server_capabilities.tools
        say({
            "protocol": client.protocol_version,
            "list_changed": bool(tools_capability and tools_capability.list_changed),
            "tools": await tool_names(client),
        })
        if mode == "legacy":
            try:
                async with client.listen(tools_list_changed=True):
                    say({"listen": "accepted"})
            except ListenNotSupportedError:
                say({"listen": "not supported"})
            return
        async with client.listen(tools_list_changed=True) as subscription:
            say({"subscribed": bool(subscription.honored.tools_list_changed)})
            async for event in subscription:
                say({"event": type(event).__name__, "tools": await tool_names(client)})
                return


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2], sys.argv[3]), timeout=30))
