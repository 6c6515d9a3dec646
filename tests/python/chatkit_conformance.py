#!/usr/bin/env python3
"""Check wasmgate's ChatKit JSON against the official Python SDK's pydantic types.

Requires: pip install 'openai-chatkit>=1.6,<1.7'

Usage: chatkit_conformance.py SAMPLES.jsonl [--lenient]

Each input line is {"kind": K, "value": V}. K is one of:
  event        one ThreadStreamEvent (an SSE `data:` payload)
  thread       a Thread answer (threads.get_by_id / threads.update)
  thread_page  Page[Thread] answered by threads.list (the SDK always sends full
               Thread objects there, with `items`, usually {"data":[],"has_more":false})
  item_page    Page[ThreadItem] answered by items.list
  attachment   Attachment answered by attachments.create
  transcription TranscriptionResult answered by input.transcribe
  empty        must be exactly {} (threads.delete, items.feedback, attachments.delete)
  request      a ChatKitReq request body

Two checks per value:
  1. pydantic validation in strict JSON mode (no "1" -> 1 or "true" -> true coercion);
  2. key comparison: the validated value is re-dumped the way chatkit's server does
     (mode="json", exclude_none, by_alias, exclude_metadata context) and the keys
     are compared recursively with the input, so extra or misnamed fields (which
     pydantic silently ignores) are caught. Only keys are compared, not values
     (datetime formatting legitimately differs).
For responses, keys the SDK would emit but the input lacks (fields with defaults,
e.g. `attachments: []`, `metadata: {}`) and keys sent as null (the SDK omits None)
are failures too, unless --lenient is given. For requests only extra keys count,
since clients legitimately omit defaulted params.
"""

import json
import sys

from pydantic import TypeAdapter, ValidationError

from chatkit.types import (
    Attachment,
    ChatKitReq,
    Page,
    Thread,
    ThreadItem,
    ThreadStreamEvent,
    TranscriptionResult,
)

ADAPTERS = {
    "event": TypeAdapter(ThreadStreamEvent),
    "thread": TypeAdapter(Thread),
    "thread_page": TypeAdapter(Page[Thread]),
    "item_page": TypeAdapter(Page[ThreadItem]),
    "attachment": TypeAdapter(Attachment),
    "transcription": TypeAdapter(TranscriptionResult),
    "request": TypeAdapter(ChatKitReq),
}


def key_diffs(given, dumped, path, strict_missing):
    """Yield human-readable differences between the key sets of two JSON trees."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        for k, v in given.items():
            if k in dumped:
                yield from key_diffs(v, dumped[k], f"{path}.{k}", strict_missing)
            elif v is None:
                if strict_missing:
                    yield f"{path}.{k}: null (SDK omits None fields)"
            else:
                yield f"{path}.{k}: unexpected key (unknown or misnamed field)"
        if strict_missing:
            for k in dumped.keys() - given.keys():
                yield f"{path}.{k}: missing key (SDK would emit {json.dumps(dumped[k])})"
    elif isinstance(given, list) and isinstance(dumped, list):
        if len(given) != len(dumped):
            yield f"{path}: list length {len(given)} became {len(dumped)}"
        for i, (g, d) in enumerate(zip(given, dumped)):
            yield from key_diffs(g, d, f"{path}[{i}]", strict_missing)


def check(kind, value, lenient):
    """Return a list of problems for one sample (empty list = conforming)."""
    if kind == "empty":
        return [] if value == {} else [f"expected exactly {{}}, got {json.dumps(value)}"]
    adapter = ADAPTERS.get(kind)
    if adapter is None:
        return [f"unknown kind {kind!r}"]
    try:
        # Round-trip through JSON text so pydantic's strict *JSON* rules apply
        # (ISO-8601 strings are accepted for datetimes, enums match by value).
        model = adapter.validate_json(json.dumps(value), strict=True)
    except ValidationError as e:
        errs = e.errors()
        # Non-discriminated unions (e.g. ThreadItemUpdate) report every branch;
        # hide branches (loc segment = class name) whose `type` literal did not match.
        wrong = {
            err["loc"][:-1] for err in errs
            if err["type"] == "literal_error" and err["loc"][-1:] == ("type",)
            and len(err["loc"]) >= 2 and str(err["loc"][-2])[:1].isupper()
        }
        errs = [r for r in errs if not any(r["loc"][: len(w)] == w for w in wrong)] or errs
        return [
            f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']} [{err['type']}]"
            for err in errs
        ]
    # Same options as ChatKitServer._serialize (exclude_metadata drops Attachment.metadata).
    dumped = adapter.dump_python(
        model, mode="json", exclude_none=True, by_alias=True,
        context={"exclude_metadata": True},
    )
    return list(key_diffs(value, dumped, "$", not lenient and kind != "request"))


def main():
    args = [a for a in sys.argv[1:] if a != "--lenient"]
    if len(args) != 1:
        sys.exit(__doc__)
    lenient = "--lenient" in sys.argv[1:]
    count = failed = 0
    with open(args[0], encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            count += 1
            kind = "?"
            try:
                sample = json.loads(line)
                kind = sample["kind"]
                problems = check(kind, sample["value"], lenient)
            except (ValueError, KeyError, TypeError) as e:
                problems = [f"bad sample line: {e!r}"]
            if problems:
                failed += 1
                print(f"line {lineno} [{kind}]: " + "; ".join(problems))
    if failed:
        print(f"FAILED {failed} of {count} values")
        sys.exit(1)
    print(f"ok {count} values")


if __name__ == "__main__":
    main()
