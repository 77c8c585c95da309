"""
The listening side of ``timesheet.core.wake``: one PostgreSQL connection per
web process that LISTENs on ``wake.CHANNEL`` and wakes the streams' poller
when a writer's transaction has committed.

The poller still polls every ``STREAM_POLL_SECONDS``: a NOTIFY only makes it
read sooner. The listener opens while the poller runs (while at least one
stream is open) and closes with it; a connection lost is opened again after
``RETRY_SECONDS``, and each time it is (re)opened the poller is woken at once,
so that what committed while nobody listened is read now rather than at the
next poll. Elsewhere than on PostgreSQL there is no listener.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.db import connections

from timesheet.core.wake import CHANNEL, connection_params

logger = logging.getLogger(__name__)

# The wait before opening a lost listening connection again (polling covers the gap).
RETRY_SECONDS = 5.0


def listens(using: str = "default") -> bool:
    """Whether the database behind ``using`` can wake the streams (PostgreSQL)."""
    return connections[using].vendor == "postgresql"


async def connect(params: dict[str, Any]) -> Any:
    """A new autocommit connection with ``params`` (the tests hold it back to play a database that is away)."""
    import psycopg

    return await psycopg.AsyncConnection.connect(**params, autocommit=True)


class Listener:
    """
    LISTEN on ``CHANNEL`` and call ``wake()`` for each NOTIFY, and once at
    each (re)connection; ``run()`` until cancelled.
    """

    def __init__(self, wake: Callable[[], None], *, using: str = "default") -> None:
        self.wake = wake
        self.using = using
        self.connections = 0  # how many times it has started listening
        self.backend_pid: int | None = None  # the listening connection's server process, while connected
        self.listening = asyncio.Event()

    async def run(self) -> None:
        params = connection_params(self.using)
        while True:
            try:
                await self._listen(params)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "Listening for the log's wake-ups failed; the streams poll until it is back.", exc_info=True
                )
            finally:
                self.backend_pid = None
                self.listening.clear()
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self, params: dict[str, Any]) -> None:
        connection = await connect(params)
        async with connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = connection.info.backend_pid
            self.connections += 1
            self.listening.set()
            # Whatever committed while nobody listened is read now, not at the next poll.
            self.wake()
            async for _notify in connection.notifies():
                self.wake()
        raise ConnectionError("the listening connection ended")
