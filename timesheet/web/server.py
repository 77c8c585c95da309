"""
uvicorn's h11 protocol with read deadlines: a client gets ``HEADER_TIMEOUT``
seconds to send a request's line and headers and ``BODY_TIMEOUT`` seconds to
send its body, whatever it dribbles meanwhile; past that the connection is
closed (with a 408 when part of a request line or headers had come).

uvicorn has neither (``--timeout-keep-alive`` bounds only the idle wait
between two requests, ``--h11-max-incomplete-event-size`` the headers' size),
so without them a few hundred slow connections hold every slot of
``--limit-concurrency``. Selected with::

    uvicorn settings.asgi:application --http timesheet.web.server:DeadlineH11Protocol ...

The protocol runs before Django: its deadlines are read here from the
environment (``HTTP_HEADER_TIMEOUT_SECONDS``, default 10, and
``HTTP_BODY_TIMEOUT_SECONDS``, default 30) when uvicorn imports this module at
start, which fails with a clear message on a bad value. The first connection
the protocol serves in a process sets that process's garbage collection
policy (``timesheet.web.collector``).

The header deadline runs from the moment a connection is accepted (a
connection that sends nothing is cut too) and, on a kept-alive connection,
from the first byte of each further request (the idle wait before it is
uvicorn's keep-alive timeout). The body deadline runs from the end of the
headers to the end of the body; once a request is read whole, nothing here
bounds the time the application takes to answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from timesheet.web import collector

__all__ = [
    "BODY_TIMEOUT",
    "HEADER_TIMEOUT",
    "DeadlineError",
    "DeadlineH11Protocol",
    "Deadlines",
    "deadlines_from",
]

logger = logging.getLogger("uvicorn.error")

HEADER_VARIABLE = "HTTP_HEADER_TIMEOUT_SECONDS"
BODY_VARIABLE = "HTTP_BODY_TIMEOUT_SECONDS"
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
# uvicorn's exit status when it cannot start (a bad application, say).
STARTUP_FAILURE = 3


class DeadlineError(ValueError):
    """A deadline's environment variable is not a positive number of seconds."""


@dataclass(frozen=True)
class Deadlines:
    header: float
    body: float


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise DeadlineError(f"{name} must be a positive number of seconds (such as {default:g}), not {raw!r}.")
    return value


def deadlines_from(environ: Mapping[str, str]) -> Deadlines:
    """The deadlines ``environ`` sets (unset or empty: the defaults); ``DeadlineError`` names a bad one."""
    return Deadlines(
        header=_seconds(environ, HEADER_VARIABLE, DEFAULT_HEADER_TIMEOUT),
        body=_seconds(environ, BODY_VARIABLE, DEFAULT_BODY_TIMEOUT),
    )


def _deadlines_at_start() -> Deadlines:
    try:
        return deadlines_from(os.environ)
    except DeadlineError as error:
        # As uvicorn reports an application it cannot load: one line, and the start fails.
        logger.error("Cannot start: %s", error)
        sys.exit(STARTUP_FAILURE)


_DEADLINES = _deadlines_at_start()
HEADER_TIMEOUT: float = _DEADLINES.header
BODY_TIMEOUT: float = _DEADLINES.body


class Phase(Enum):
    HEADERS = "line and headers"
    BODY = "body"


REQUEST_TIMEOUT_BODY = b"The request was not received in time."


class DeadlineH11Protocol(H11Protocol):
    """``H11Protocol`` that closes a connection whose request's headers or body are not received in time."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The process serves thousands of live streams, whose objects a full collection walks while
        # every request waits: fewer, rarer full passes. Here, at the server's first connection, and
        # not when this module is imported (by the tests' process too).
        collector.apply_once()
        self.header_timeout = HEADER_TIMEOUT
        self.body_timeout = BODY_TIMEOUT
        self._phase: Phase | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # What uvicorn calls, followed by a look at what is being read now.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have begun in what was already received.
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    # The deadlines.

    def _reading(self) -> Phase | None:
        """What the connection waits for from the client now, if a deadline bounds it."""
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return None  # closed, or handed to another protocol (an upgrade)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return Phase.BODY
        if state is not h11.IDLE:
            return None  # the request is read (or the connection is done): the application's time
        if self.conn.trailing_data[0] or self.timeout_keep_alive_task is None:
            return Phase.HEADERS  # a request has begun, or a new connection waits for its first
        return None  # kept alive between requests, without a byte yet: uvicorn's --timeout-keep-alive

    def _follow(self) -> None:
        phase = self._reading()
        if phase is self._phase:
            return  # the deadline running (if any) still applies: dribbled bytes never extend it
        self._cancel()
        self._phase = phase
        if phase is not None:
            seconds = self.header_timeout if phase is Phase.HEADERS else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = None

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        self._phase = None
        if self.transport.is_closing():
            return
        seconds = self.header_timeout if phase is Phase.HEADERS else self.body_timeout
        prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
        logger.warning("%sRequest %s not received within %g s: connection closed.", prefix, phase.value, seconds)
        if phase is Phase.HEADERS and self.conn.trailing_data[0]:
            self._send_408()
        # In the body's case the application sees the client gone (http.disconnect).
        self.transport.close()

    def _send_408(self) -> None:
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(REQUEST_TIMEOUT_BODY)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"))
            output = (output or b"") + (self.conn.send(h11.Data(data=REQUEST_TIMEOUT_BODY)) or b"")
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # h11 will not answer in this state: the connection is only closed
        self.transport.write(output)
