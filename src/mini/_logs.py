"""Dropping a dependency's log records that say nothing to our users (one mechanism for every such case).

A library sometimes logs, at WARNING or ERROR, a state we cause on purpose and handle: Ray warning that it set no
SIGTERM handler because we call `ray.init` from a worker thread; pymilvus logging a traceback for the index poll
Milvus Lite's server does not implement. `drop_records` filters exactly those records on that library's logger,
and nothing else it logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable


class _Drop(logging.Filter):
    def __init__(self, name: str, matches: Callable[[str], bool]) -> None:
        super().__init__()
        self.drop_name = name
        self.matches = matches

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.matches(str(record.msg))


def drop_records(logger: str, name: str, matches: Callable[[str], bool]) -> None:
    """Drop the records of `logger` whose (unformatted) message `matches`; `name` identifies the filter, which
    is installed once however often this is called."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, _Drop) and f.drop_name == name for f in target.filters):
        target.addFilter(_Drop(name, matches))
