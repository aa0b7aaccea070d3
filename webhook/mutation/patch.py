"""RFC 6902 JSON Patch ops between a pod and its planned copy.

The engine's functions return a new pod that shares every untouched branch with the input, so the ops are found
by walking only the branches that changed, without copying or diffing the whole pod (a Flyte task pod with
managedFields and env is several KB; kopf's generic patch path deep-copies and diffs all of it).
"""

from __future__ import annotations

import operator
from typing import Any

from webhook.mutation.decision import JsonPatchOp


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1") if "/" in key or "~" in key else key


_MISSING = object()


def diff(old: Any, new: Any, path: str = "") -> list[JsonPatchOp]:
    """Minimal RFC 6902 ops turning `old` into `new`; branches shared by identity are skipped without a look."""
    ops: list[JsonPatchOp] = []
    if old is not new:
        _diff(old, new, path, ops)
    return ops


def _diff(old: Any, new: Any, path: str, ops: list[JsonPatchOp]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):  # JSON objects; a concrete class keeps the check cheap
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(str(key))}"})
        for key, value in new.items():
            before = old.get(key, _MISSING)
            if before is value or (type(value) is str and before == value):
                continue
            child = f"{path}/{_escape(str(key))}"
            if before is _MISSING:
                ops.append({"op": "add", "path": child, "value": value})
            elif isinstance(value, dict | list):
                _diff(before, value, child, ops)
            elif before != value or type(before) is not type(value):
                ops.append({"op": "replace", "path": child, "value": value})
    elif isinstance(old, list) and isinstance(new, list) and len(new) >= len(old):
        # Items appended to a long list (tolerations) leave the old ones shared: check that at C speed first.
        shared = all(map(operator.is_, old, new))
        for index, (before, after) in enumerate(() if shared else zip(old, new, strict=False)):
            if before is not after:
                _diff(before, after, f"{path}/{index}", ops)
        for index in range(len(old), len(new)):
            ops.append({"op": "add", "path": f"{path}/{index}", "value": new[index]})
    elif old != new or type(old) is not type(new):
        ops.append({"op": "replace", "path": path, "value": new})
