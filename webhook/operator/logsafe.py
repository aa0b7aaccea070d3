"""Log lines that a pod cannot forge: control characters in a message are written as escapes.

A pod's name, an annotation key or value reach log messages (denials quote them), and under the plain format a
newline in one would start a line that looks like the webhook's own. The filter sits on the handlers, so it
covers every logger (ours, kopf's, aiohttp's) in every format; a message without such characters costs one
`isprintable()` scan.
"""

from __future__ import annotations

import logging


def escape_controls(text: str) -> str:
    """`text` with every non-printable character as its Python escape (`\\n`, `\\x1b`, `\\u2028`)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class EscapeControlCharacters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = escape_controls(message), None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, EscapeControlCharacters) for f in handler.filters):
            handler.addFilter(EscapeControlCharacters())
