"""
The systemd notify protocol, spoken over ``$NOTIFY_SOCKET`` (a Unix datagram
socket), so that a ``Type=notify`` unit knows when the ticker is ready, that
it is alive (``WATCHDOG=1``), what it last did, and when it is stopping.
Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

import logging
import os
import socket

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self.address = address or None
        self.socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: object) -> None:
        """Send ``NAME=value`` lines (``ready=1`` becomes ``READY=1``); a failure is logged, never raised."""
        if self.address is None:
            return
        message = "\n".join(f"{name.upper()}={value}" for name, value in fields.items())
        try:
            if self.socket is None:
                self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.socket.sendto(message.encode(), self.address)
        except OSError:
            logger.warning("Could not notify systemd at %r.", self.address, exc_info=True)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def watchdog_seconds() -> float | None:
    """The watchdog timeout systemd set for this process, if any."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None
