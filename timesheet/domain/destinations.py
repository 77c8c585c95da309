"""
Where a webhook may be sent: ``https`` (``http`` only with
``WEBHOOK_ALLOW_HTTP``), to a public address. Loopback, private, link-local,
unique-local, multicast, unspecified and reserved addresses are refused
unless inside one of ``WEBHOOK_ALLOWED_NETWORKS``.

A URL is checked when it is saved (``check_url``: its scheme, and its host
when that is an address) and again at each delivery, after the name is
resolved (``resolve``): every address the name resolves to must be allowed,
and the delivery connects to one of those checked addresses, so that a name
rebound to a private address after it was saved is refused.
"""

import ipaddress
import socket
import threading
from urllib.parse import SplitResult, urlsplit

from django.utils.translation import gettext as _

from timesheet.core import conf
from timesheet.domain.errors import Code, Refused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64's well-known prefix: its addresses carry an IPv4 address in their last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(Exception):
    """A delivery's destination resolved to an address that is not allowed."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(network, strict=False) for network in conf.get("WEBHOOK_ALLOWED_NETWORKS")]


def _embedded(address: Address) -> list[Address]:
    """``address`` and the IPv4 addresses it carries (IPv4-mapped, 6to4, NAT64)."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _public(address: Address) -> bool:
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or not address.is_global
    )


def address_allowed(address: Address | str) -> bool:
    """Whether a webhook may be sent to ``address``: a public one, or one inside ``WEBHOOK_ALLOWED_NETWORKS``."""
    address = ipaddress.ip_address(address)
    networks = _allowed_networks()
    if any(address in network for network in networks):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        if any(address.ipv4_mapped in network for network in networks):
            return True
    return all(_public(carried) for carried in _embedded(address))


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    parts.port  # raises ValueError on a port that is not a number or out of range  # noqa: B018
    return parts


def check_url(url: str) -> None:
    """Refuse (``Code.INVALID``) a webhook URL that may not be saved: its scheme, its host, an address not allowed."""
    try:
        parts = _split(url)
    except ValueError:
        raise Refused(_("This URL is not valid."), code=Code.INVALID) from None
    scheme = parts.scheme.lower()
    if scheme == "http" and not conf.get("WEBHOOK_ALLOW_HTTP"):
        raise Refused(_("A webhook URL must use https."), code=Code.INVALID)
    if scheme not in ("http", "https"):
        raise Refused(_("A webhook URL must use https."), code=Code.INVALID)
    if parts.username is not None or parts.password is not None:
        raise Refused(_("A webhook URL may not hold a user name or a password."), code=Code.INVALID)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused(_("A webhook URL must name a host."), code=Code.INVALID)
    if host == "localhost" or host.endswith(".localhost"):
        candidates: list[Address] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    else:
        literal = _literal(host)
        candidates = [] if literal is None else [literal]
    if not all(address_allowed(address) for address in candidates):
        raise Refused(
            _("Webhooks may not be sent to this address: it is not a public one."),
            code=Code.INVALID,
        )


def target(url: str) -> tuple[str, str, int]:
    """The scheme, host and port a delivery to ``url`` connects to."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    return scheme, host, parts.port or (443 if scheme == "https" else 80)


def resolve(host: str, port: int, *, timeout: float) -> list[str]:
    """
    The addresses ``host`` resolves to, each allowed; raise
    ``DestinationRefused`` if any is not, ``TimeoutError`` if the resolver
    does not answer within ``timeout`` seconds, ``OSError`` if it fails.
    """
    literal = _literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        addresses = _getaddrinfo(host, port, timeout)
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    refused = [address for address in addresses if not address_allowed(address)]
    if refused:
        raise DestinationRefused(f"{host} resolves to {', '.join(refused)}, which is not allowed")
    return addresses


def _getaddrinfo(host: str, port: int, timeout: float) -> list[str]:
    """The resolver in a thread of its own: it has no timeout, the delivery's deadline does."""
    result: list[str] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            for info in infos:
                address = str(info[4][0]).split("%", 1)[0]  # an IPv6 scope ("fe80::1%eth0") is not an address
                if address not in result:
                    result.append(address)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=lookup, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    if thread.is_alive():
        raise TimeoutError(f"resolving {host} took longer than the delivery's deadline")
    if failure:
        raise failure[0]
    return result
