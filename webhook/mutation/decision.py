"""What becomes of one pod: allowed, patched, denied, ignored or errored, and the one word for each.

The mutation layer makes the decision; the reviewer encodes it into an AdmissionResponse (and keeps it for pods
with the same inputs), the metrics count it under its word, the log line starts with it and `explain` prints it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.engine.errors import Refusal
from webhook.engine.excerpt import bounded

JsonPatchOp = dict[str, Any]


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    """Admitted unchanged with nothing to do: no annotation of ours, not a CREATE, or already as planned."""
    PATCHED = "patched"
    """Admitted with a JSON Patch (one that only writes or removes the summary annotation included)."""
    DENIED = "denied"
    """Refused: invalid annotations or a malformed pod (`on-invalid: reject`), a policy, or a limit."""
    IGNORED = "ignored"
    """Admitted unchanged although its annotations or pod are invalid (`on-invalid: ignore`), with a warning."""
    ERRORED = "errored"
    """Our own bug: logged with the pod's name and answered by `on-error` (deny, or admit unchanged)."""


class Denied(Refusal):
    """The pod must be refused; `message` is what the user sees (annotation, value, reason), at most ~1 KiB."""

    def __init__(self, message: str) -> None:
        super().__init__(bounded(message))


@dataclass(frozen=True, slots=True)
class Decision:
    """One pod's answer. `reason` is set exactly when the pod is refused: what the user is told."""

    outcome: Outcome
    ops: list[JsonPatchOp] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is None


def allowed() -> Decision:
    return Decision(Outcome.ALLOWED)


def patched(ops: list[JsonPatchOp], warnings: list[str]) -> Decision:
    """The ops and warnings of a plan: allowed (warnings and all) when there is nothing to patch."""
    return Decision(Outcome.PATCHED if ops else Outcome.ALLOWED, ops, warnings)


def denied(reason: str) -> Decision:
    return Decision(Outcome.DENIED, reason=bounded(reason))


def ignored(warning: str) -> Decision:
    return Decision(Outcome.IGNORED, warnings=[bounded(warning)])


def errored(message: str, on_error: Literal["deny", "allow"]) -> Decision:
    """Our own bug: refused with `message`, or admitted unchanged with it as a warning (`on-error: allow`)."""
    if on_error == "deny":
        return Decision(Outcome.ERRORED, reason=message)
    return Decision(Outcome.ERRORED, warnings=[f"{message}; admitted unchanged (on-error: allow)"])
