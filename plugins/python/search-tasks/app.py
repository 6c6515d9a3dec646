"""search_tasks: a wasmgate tool plugin written in Python.

Built with componentize-py against the same WIT world as the Rust plugins
(task-tool), which is the point: the contract is language-neutral. It finds
the calling user's tasks whose title or description contains every word of a
query, through the host's `tasks` capability.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, tasks, types

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
        return json.dumps({"query": query, "matches": matches})
