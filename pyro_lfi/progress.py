"""Progress bars that redraw in a terminal or notebook and print a line now and then in logs.

When standard error is not a terminal (a batch job, CI, output piped to a file), a redrawn bar
leaves every redraw in the log. There, the bar prints one plain line per ``LOG_INTERVAL``
seconds instead.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as notebook_or_plain_tqdm
from tqdm.std import tqdm as plain_tqdm

__all__ = ["LOG_INTERVAL", "progress_bar"]

#: Seconds between lines of a progress bar written to a log.
LOG_INTERVAL = 10.0


class _Lines:
    """A stream for tqdm that turns each redraw (``\\r`` + bar) into one line of its own."""

    def __init__(self, stream):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:  # closing the bar redraws its last state
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """:class:`tqdm.auto.tqdm`, or, when ``sys.stderr`` is not a terminal (and this is not a
    notebook), a bar that writes a plain line every :data:`LOG_INTERVAL` seconds."""
    stream = kwargs.pop("file", None) or sys.stderr
    is_terminal = getattr(stream, "isatty", lambda: False)()
    if notebook_or_plain_tqdm is not plain_tqdm or is_terminal:  # a notebook widget, or a terminal
        return tqdm(iterable, file=stream, **kwargs)
    return plain_tqdm(iterable, file=_Lines(stream), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL * 3,
                      ncols=0, **kwargs)
