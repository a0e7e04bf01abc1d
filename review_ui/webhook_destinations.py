"""Where a webhook may be POSTed: checked on every delivery, against the addresses the host resolves to then.

A tenant's webhook URL is a server-side request waiting to happen (SSRF): pointed at 127.0.0.1, a private
range, the cloud metadata service or the S3 server, the sender would POST into the deployment's own network.
So each delivery resolves the host, refuses the URL if any address it resolves to is loopback, private
(RFC 1918, ULA), link-local, shared (CGNAT), reserved, unspecified, multicast or a metadata address, or if
it is the S3 endpoint, and then connects to the address it checked (not to the name again, which a DNS
rebinding answer could point elsewhere), sending the URL's own Host header and TLS server name. IPv6
addresses that carry an IPv4 one (`::ffff:127.0.0.1`, NAT64, 6to4) are judged by the IPv4 address.

Plain `http` is refused: a webhook body names a candidate and an outcome. `allow_private` (development, or
a receiver inside the operator's own network) admits loopback and private addresses, over plain http too;
metadata addresses and the S3 endpoint stay refused whatever it says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Instance metadata services: AWS, GCP, Azure, OCI, DigitalOcean (IPv4 and AWS's IPv6), AWS ECS, Alibaba Cloud.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What `allow_private` admits; everything else named by `address_kind` is refused whatever the settings say.
PRIVATE_KINDS = frozenset({"loopback", "link-local", "private-network", "non-public"})
ALLOW_SETTING = "PROCTOR_WEBHOOK_ALLOW_PRIVATE=true"
S3_REFUSED = "the webhook URL points at the S3 server ({}): set the URL of the platform's receiver"


class DestinationRefused(ValueError):
    """The webhook URL may not be delivered to; the message says why and what to change."""


@dataclass(frozen=True)
class DestinationRules:
    allow_private: bool = False
    refused_endpoints: tuple[str, ...] = ()  # "host:port" of services never to POST to: the S3 server


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses to connect to, in order; requests carry the URL's Host and SNI."""

    url: httpx.URL
    addresses: tuple[str, ...]

    def target(self, address: str) -> httpx.URL:
        return self.url.copy_with(host=address)

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    @property
    def extensions(self) -> dict[str, str]:
        return {"sni_hostname": self.url.raw_host.decode("ascii")} if self.url.scheme == "https" else {}


def parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DestinationRefused(f"the webhook URL does not parse ({exc}): set an https:// URL") from None
    if parsed.scheme not in ("https", "http") or not parsed.raw_host:
        raise DestinationRefused(f"the webhook URL must be https://host/...; found scheme {parsed.scheme!r}")
    return parsed


def effective_address(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), which is where a packet ends up."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public internet address (a word for the message), or None when it is one."""
    for candidate in (ip, effective_address(ip)):
        if candidate in METADATA:
            return "cloud metadata service"
    ip = effective_address(ip)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("reserved", ip.is_reserved),
        ("private-network", ip.is_private),
        ("non-public", not ip.is_global),
    )
    return next((kind for kind, matches in checks if matches), None)


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def check_destination(
    url: httpx.URL, addresses: Sequence[str], rules: DestinationRules, refused: frozenset[tuple[str, int]]
) -> Destination:
    """The destination if every address `url`'s host resolved to may be delivered to; else DestinationRefused.

    `refused` holds the (address, port) pairs of the refused endpoints, resolved alike."""
    host, port = url.host, _port(url)
    if not addresses:
        raise DestinationRefused(f"the webhook host {host} resolves to no address")
    kinds = []
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if (str(ip), port) in refused or (str(effective_address(ip)), port) in refused:
            raise DestinationRefused(S3_REFUSED.format(f"{host}:{port}"))
        kind = address_kind(ip)
        if kind is not None and not (rules.allow_private and kind in PRIVATE_KINDS):
            hint = f"; {ALLOW_SETTING} admits it for development or a receiver inside your own network"
            hint = hint if kind in PRIVATE_KINDS else ""
            raise DestinationRefused(
                f"the webhook host {host} resolves to {ip}, a {kind} address: webhooks go to public https:// "
                f"endpoints{hint}"
            )
        kinds.append(kind)
    if url.scheme == "http" and not (rules.allow_private and all(kind in PRIVATE_KINDS for kind in kinds)):
        raise DestinationRefused(
            f"plain http:// is refused for {host}: webhook bodies name candidates and outcomes; use https:// "
            f"({ALLOW_SETTING} allows plain http to private-network receivers only)"
        )
    return Destination(url, tuple(addresses))


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the system's order of preference, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_destination(url: str, rules: DestinationRules, resolve: Resolver) -> Destination:
    """Parse, resolve and check `url` (and resolve the refused endpoints alike); raises DestinationRefused,
    or OSError when the host does not resolve."""
    parsed = parse_url(url)
    refused: set[tuple[str, int]] = set()
    for endpoint in rules.refused_endpoints:
        endpoint_url = httpx.URL(f"http://{endpoint}")
        endpoint_port = _port(endpoint_url)
        if endpoint_url.host == parsed.host and endpoint_port == _port(parsed):
            raise DestinationRefused(S3_REFUSED.format(endpoint))
        try:
            resolved = await resolve(endpoint_url.host, endpoint_port)
            refused.update((str(ipaddress.ip_address(address)), endpoint_port) for address in resolved)
        except OSError:  # an endpoint that does not resolve now cannot be what the webhook host resolves to
            continue
    addresses = await resolve(parsed.host, _port(parsed))
    return check_destination(parsed, addresses, rules, frozenset(refused))
