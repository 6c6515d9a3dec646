"""Drives wasmgate's /mcp with the official Python MCP client (PyPI `mcp`).

Usage: python mcp_client_check.py http://127.0.0.1:8000/mcp <token>

Initializes, lists the tools, adds a task, lists tasks, and prints one JSON
summary line that the end-to-end test checks.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, token: str) -> None:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            added = await session.call_tool("add_task", {"title": "From Python"})
            listed = await session.call_tool("list_tasks", {"status": "all"})
            missing = await session.call_tool("complete_task", {"task_id": 987654})
            print(json.dumps({
                "protocol": init.protocol_version,
                "server": init.server_info.name,
                "tools": sorted(tool.name for tool in tools.tools),
                "added": added.structured_content,
                "listed": listed.structured_content,
                "missing_is_error": missing.is_error,
                "missing_text": missing.content[0].text,
            }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
