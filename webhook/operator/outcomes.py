"""What became of one admission review: the one vocabulary of the reviewer's answers, the metric's labels and logs."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    """Admitted unchanged with nothing to do: no annotation of ours, not a CREATE, or already as planned."""
    PATCHED = "patched"
    """Admitted with a JSON Patch."""
    DENIED = "denied"
    """Refused: invalid annotations or a malformed pod (`on-invalid: reject`), or a limit (`on-limit-exceeded`)."""
    IGNORED = "ignored"
    """Admitted unchanged although its annotations or pod are invalid (`on-invalid: ignore`), with a warning."""
    ERRORED = "errored"
    """Our own bug: logged with the pod's name and answered by `on-error` (deny, or admit unchanged)."""
