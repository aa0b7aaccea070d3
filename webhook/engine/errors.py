"""The one base of every error that refuses an input: a quantity, a resource, a config, a pod, an annotation.

`str(exc)` is the whole message for whoever wrote the input (at most ~1 KiB where the input is a pod's); a
caller that knows more, such as which annotation a value came from, says so in a new error of its own layer.
Any other exception is a bug of ours.
"""

from __future__ import annotations


class Refusal(ValueError):
    """An input the webhook refuses; the message says which and why."""

    @property
    def message(self) -> str:
        return str(self)
