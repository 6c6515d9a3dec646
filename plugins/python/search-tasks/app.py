"""search_tasks: a wasmgate tool plugin written in Python.

Built with componentize-py against the same WIT world as the Rust plugins
(task-tool), which is the point: the contract is language-neutral. It finds
the calling user's tasks whose title or description contains every word of a
query, through the host's `tasks` capability, and keeps the user's recent
queries with the `kv` capability (the host scopes it to this plugin and user),
as many as the operator's `recent_kept` setting (`config`) says.

componentize-py imports every interface of the world it builds for, so the
manifest asks for all of them (`tasks`, `kv`, `config`, `log`), and this
plugin uses each.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, kv, log, tasks, types

RECENT_KEY = "recent-queries"
DEFAULT_RECENT_KEPT = 5

SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "description": "Words to look for."},
        "include_completed": {"type": "boolean", "default": False},
    },
    "required": ["query"],
    "additionalProperties": False,
}


class Tool(exports.Tool):
    def list_tools(self) -> list[types.ToolSpec]:
        return [
            types.ToolSpec(
                name="search_tasks",
                description="Find the user's tasks whose title or description contains all the given words.",
                input_schema=json.dumps(SCHEMA),
            )
        ]

    def call(self, name: str, arguments: str) -> str:
        if name != "search_tasks":
            raise Err(types.ToolError_UnknownTool(name))
        args = json.loads(arguments)
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise Err(types.ToolError_InvalidArguments("query must be a non-empty string"))
        words = query.lower().split()
        status = tasks.StatusFilter.ALL if args.get("include_completed") else tasks.StatusFilter.PENDING
        try:
            found = tasks.list(status)
        except Err as err:
            raise Err(types.ToolError_Failed(str(err.value)))
        matches = [
            {"id": task.id, "title": task.title, "completed": task.completed}
            for task in found
            if all(word in f"{task.title} {task.description or ''}".lower() for word in words)
        ]
        log.log(log.Level.DEBUG, f"search_tasks: {len(matches)} of {len(found)} match")
        return json.dumps({"query": query, "matches": matches, "recent_queries": remember(query)})


def remember(query: str) -> list[str]:
    """The user's recent queries, this one first; storage is best effort."""
    setting = config.get("recent_kept")
    kept = int(setting) if setting and setting.isdigit() else DEFAULT_RECENT_KEPT
    try:
        stored = kv.get(RECENT_KEY)
        recent = json.loads(stored) if stored is not None else []
        recent = ([query] + [q for q in recent if q != query])[:kept]
        kv.set(RECENT_KEY, json.dumps(recent).encode())
        return recent
    except Err as err:
        log.log(log.Level.WARN, f"search_tasks: recent queries not kept: {err.value}")
        return [query]
