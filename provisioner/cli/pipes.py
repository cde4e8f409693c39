"""A reader of berth's output that goes away early (``berth kubeconfig | head -1``).

Unix tools die of SIGPIPE when they write to a pipe nobody reads: quietly, and the shell reports
128 + SIGPIPE = 141 (what ``set -o pipefail`` sees of ``yes | head -1``). Python ignores SIGPIPE,
so the write fails with EPIPE instead, and both typer (click's copy of main) and rich (its
console's broken-pipe hook) catch it, silence stdout and exit 1: the status of a failed command.
berth keeps the Unix status instead, so a script can tell "my reader stopped listening" from
"berth failed". SIGPIPE itself stays ignored: berth talks to hosts over sockets, and a peer
closing one must be an error to handle, not a death.
"""

from __future__ import annotations

import os
import select
import stat
from typing import TextIO


def reader_gone(fd: int) -> bool:
    """Whether ``fd`` is the write end of a pipe whose every reader has closed it (poll says
    POLLERR then); False for a pipe still read, a terminal, a file."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


class StdoutPipe:
    """Watches stdout, when it is a pipe, across one command: a duplicate of its descriptor
    stays on the pipe even after rich points the descriptor itself at /dev/null."""

    def __init__(self, stdout: TextIO) -> None:
        self._stdout = stdout
        self._probe: int | None = None
        self._fd = -1
        try:
            fd = stdout.fileno()
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                self._fd, self._probe = fd, os.dup(fd)  # os.dup: not inherited by children
        except (OSError, ValueError):  # no descriptor (a test's capture) or a closed one
            pass

    def ended_on_lost_reader(self, stdout_now: TextIO, code: object) -> bool:
        """Whether a command that exited ``code`` ended on an EPIPE writing to stdout: both
        handlers exit 1 after silencing stdout (typer swaps ``sys.stdout`` for a wrapper, rich
        points the descriptor at /dev/null), and the pipe has lost its reader; an EPIPE of a
        host's socket stays a failure."""
        if code != 1 or self._probe is None:
            return False
        silenced = stdout_now is not self._stdout or not _same_file(self._fd, self._probe)
        return silenced and reader_gone(self._probe)


def _same_file(a: int, b: int) -> bool:
    try:
        return os.path.samestat(os.fstat(a), os.fstat(b))
    except OSError:
        return False
