"""The stream protocol between the API server and a node agent (exec, attach, port-forward).

The API server speaks whatever the client chose (WebSocket channels or SPDY) and reaches the
agent over one mTLS WebSocket:

* exec / attach: ``GET /exec/{namespace}/{pod}/{container}?command=..&stdin=1&stdout=1&
  stderr=1&tty=1`` (``/attach/...`` without ``command``), subprotocol ``v5.channel.k8s.io``:
  each binary message is one channel byte then data: 0 stdin, 1 stdout, 2 stderr, 3 error (the
  final ``Status`` JSON), 4 resize (``{"Width": w, "Height": h}``), 255 close (the next byte
  names the channel that ended, e.g. stdin).
* port-forward: ``GET /portForward/{namespace}/{pod}?port=N`` per forwarded connection, binary
  messages of one kind byte then data: 0 bytes of the connection, 1 an error text (the agent
  could not connect), 2 end of this side's writes (half-close).
"""

from __future__ import annotations

from typing import Any

EXEC_PROTOCOL = "v5.channel.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

PF_DATA, PF_ERROR, PF_EOF = 0, 1, 2

MAX_MESSAGE = 1 << 20
"""Largest WebSocket message either side accepts."""

PF_CHUNK = 256 * 1024
"""Most port-forward payload put in one message (well under :data:`MAX_MESSAGE`). Each
message costs a fixed amount of Python work on every hop (framing, a TLS record, a task
switch): bigger messages are what makes port-forward throughput approach a direct
connection's. Reads return what is there, so small exchanges stay small."""

NON_ZERO_EXIT = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(argv: list[str], code: int) -> dict[str, Any]:
    """The Status kubectl turns into its own exit code (``command terminated with exit code
    N``): reason NonZeroExitCode with an ExitCode cause, as the kubelet reports it."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command"
            f" {argv}, exit code {code}"
        ),
        "reason": NON_ZERO_EXIT,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
