"""Which addresses a URL may be fetched from on a user's behalf (the SSRF guard), and a resolver that enforces it.

A server that fetches URLs for its clients must not become their way into its own network: loopback-only
services, the cloud metadata endpoint (169.254.169.254), the intranet, the server's own routes. `FetchPolicy`
says which addresses are refused; `GuardedResolver` applies it where it cannot be dodged, at connect time:
aiohttp connects only to the addresses a resolver returns, so the address checked is the address used, and a
name that resolves to a public address for the check and to 127.0.0.1 a moment later (DNS rebinding) gets
no second lookup. aiohttp skips the resolver for IP literals, so `UrlFetcher` checks those itself
(`FetchPolicy.refused_host`), including the legacy forms the C resolver still accepts (`2130706433`,
`127.1`, `0x7f.1`), and re-checks every redirect hop.

Refused when `refuse_private` is on: every IPv4 and IPv6 address that is not globally routable (the IANA
special-purpose registries), and IPv6 forms that embed a refused IPv4 address (IPv4-mapped
`::ffff:127.0.0.1`, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`). The table is our own rather than
`ipaddress.is_global`, whose answer changed between Python patch releases (and which calls multicast global).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mini._checks import at_least
from mini.errors import ConfigurationError

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult
    from aiohttp.resolver import ThreadedResolver

__all__ = ["DEFAULT_MAX_REDIRECTS", "FetchPolicy", "FetchRefused", "GuardedResolver", "parse_allow"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_REDIRECTS = 5
SERVER_HINT = "the server fetches only public addresses (allow it with MINI_FETCH_ALLOW)"
LIBRARY_HINT = "only public addresses are fetched (allow it in the FetchPolicy allow-list)"


def _table(entries: dict[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), kind) for net, kind in entries.items())


# Not globally routable, with the word a message uses for it. Disjoint, so the order does not matter.
_V4_REFUSED = _table(
    {
        "0.0.0.0/8": "unspecified",
        "10.0.0.0/8": "private",
        "100.64.0.0/10": "shared (carrier-grade NAT)",
        "127.0.0.0/8": "loopback",
        "169.254.0.0/16": "link-local",
        "172.16.0.0/12": "private",
        "192.0.0.0/24": "special-purpose",
        "192.0.2.0/24": "documentation",
        "192.88.99.0/24": "reserved",
        "192.168.0.0/16": "private",
        "198.18.0.0/15": "benchmarking",
        "198.51.100.0/24": "documentation",
        "203.0.113.0/24": "documentation",
        "224.0.0.0/4": "multicast",
        "240.0.0.0/4": "reserved",  # includes the broadcast address 255.255.255.255
    }
)
# IPv6: only 2000::/3 is allocated global unicast; inside it, these are special. The embedding prefixes
# (mapped, compatible, NAT64, 6to4) are unwrapped before this table is consulted.
_V6_GLOBAL = ipaddress.IPv6Network("2000::/3")
_V6_REFUSED = _table(
    {
        "::/128": "unspecified",
        "::1/128": "loopback",
        "64:ff9b:1::/48": "private",  # local-use NAT64
        "100::/64": "special-purpose",  # discard-only
        "2001::/23": "special-purpose",  # Teredo, benchmarking, ORCHID, ...
        "2001:db8::/32": "documentation",
        "3fff::/20": "documentation",
        "fc00::/7": "private",  # unique local
        "fec0::/10": "private",  # site-local (deprecated)
        "fe80::/10": "link-local",
        "ff00::/8": "multicast",
    }
)
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# What aiohttp (and the socket layer) take for an IP address rather than a name: an IPv6 literal, or digits,
# dots and hex in one of the legacy IPv4 spellings `inet_aton` accepts (2130706433, 127.1, 0x7f.1, 0177.0.0.1).
_NUMERIC_HOST = re.compile(r"[0-9][0-9a-fx.]*", re.IGNORECASE)
_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*")


class FetchRefused(Exception):
    """A URL's address is refused by the policy; `.reason` says which address and why (without the hint)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Where URLs may be fetched from. Build one with `permissive()`, `refusing(allow)` or `server(allow)`.

    - `refuse_private`: refuse every address that is not globally routable (see the module docstring).
    - `allow_networks`, `allow_hosts`: opened although refused (an operator's intranet, a sidecar).
    - `max_redirects`: hops followed; each one is checked like the first URL.
    - `hint`: appended to refusals, saying what the user can do about it.
    """

    refuse_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    hint: str = ""

    def __post_init__(self) -> None:
        at_least(0, max_redirects=self.max_redirects)

    @classmethod
    def permissive(cls, *, max_redirects: int = DEFAULT_MAX_REDIRECTS) -> FetchPolicy:
        """Fetch from any address: the library and CLI default (a user fetching their own intranet)."""
        return cls(max_redirects=max_redirects)

    @classmethod
    def refusing(
        cls,
        allow: str | Iterable[str] = "",
        *,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        hint: str = LIBRARY_HINT,
    ) -> FetchPolicy:
        """Refuse non-public addresses except those `allow` names ("10.0.0.0/8,127.0.0.1,intranet.example")."""
        networks, hosts = parse_allow(allow)
        return cls(True, networks, hosts, max_redirects, hint)

    @classmethod
    def server(cls, allow: str | Iterable[str] = "") -> FetchPolicy:
        """The server's policy: refusing, opened by `MINI_FETCH_ALLOW` (`settings.fetch_allow`)."""
        return cls.refusing(allow, hint=SERVER_HINT)

    def allows_name(self, host: str) -> bool:
        """True when `host` is on the allow-list by name (then whatever it resolves to is fetched)."""
        return _normal_name(host) in self.allow_hosts

    def refused_address(self, address: str | IPAddress) -> str | None:
        """Why the policy refuses `address` ("loopback", "private", ...), or None when it may be fetched."""
        if not self.refuse_private:
            return None
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self._allowed(ip):
            return None
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return None if self._allowed(embedded) else _kind(embedded)
        return _kind(ip)

    def refused_host(self, host: str) -> str | None:
        """Why a URL host that is an IP address, in any spelling, is refused ("127.1 is a loopback address
        (127.0.0.1)"), or None. Names are left to the resolver, which sees the addresses they resolve to."""
        if not self.refuse_private or self.allows_name(host):
            return None
        literal = host.strip("[]").rstrip(".")
        try:
            ip = literal_address(literal)
        except ValueError:
            return f"{host} is not a valid IP address"
        if ip is None:
            return None
        kind = self.refused_address(ip)
        if kind is None:
            return None
        meant = _embedded_ipv4(ip) or ip  # ::ffff:7f00:1 means 127.0.0.1
        spelled = "" if str(meant) == literal else f" ({meant})"
        return f"{host} is {_article(kind)} {kind} address{spelled}"

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow_networks)


def canonical_host(name: str) -> str:
    """A host name lower-case without a trailing dot; an IP address in its canonical form (IPv4-mapped IPv6
    as IPv4), so that `::FFFF:127.0.0.1`, `0:0::1` and `127.0.0.1.` compare as what they are."""
    name = name.strip().strip("[]").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP (127.0.0.0/8, ::1): what a server without keys may bind to (`mini serve`, `mini mcp`)."""
    name = canonical_host(host)
    try:
        return name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells, or None for a name. The legacy IPv4 forms `inet_aton` accepts count
    (`2130706433`, `127.1`, `0x7f.1`): the socket layer would connect to them. ValueError for something aiohttp
    would take for an address that is none (`1.2.3.4.5`, a bad IPv6 literal)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:
        raise ValueError(host)
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        if host.replace(".", "").isdigit():
            raise ValueError(host) from None
        return None  # hex-looking letters, e.g. "0a.de": a name


def parse_allow(allow: str | Iterable[str]) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """The networks and host names of an allow-list: "10.0.0.0/8,127.0.0.1,::1,intranet.example" (commas or
    an iterable of entries; blanks ignored). ConfigurationError names the first entry that is neither."""
    entries = allow.split(",") if isinstance(allow, str) else list(allow)
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = _normal_name(entry)
        if not _HOST_NAME.fullmatch(name) or _spells_address(name):
            raise ConfigurationError(
                f"fetch allow-list entry {entry!r} is not a network (10.0.0.0/8), an IP address (dotted, "
                "127.0.0.1) or a host name"
            )
        hosts.add(name)
    return tuple(networks), frozenset(hosts)


class GuardedResolver:
    """An aiohttp resolver that drops the addresses the policy refuses (aiohttp connects only to what its
    resolver returns). Wraps aiohttp's `ThreadedResolver` (the system resolver: /etc/hosts, search domains),
    whose close is a no-op, so sessions that never call `close()` leak nothing. Raises `FetchRefused` when
    nothing is left; the message does not say which address a name had (no probing of internal DNS)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._inner: ThreadedResolver | None = None

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is None:
            from aiohttp.resolver import ThreadedResolver

            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, socket.AddressFamily(family))
        if self.policy.allows_name(host):
            return results
        kept = [r for r in results if self.policy.refused_address(r["host"]) is None]
        if results and not kept:
            raise FetchRefused(f"{host} resolves to a non-public address")
        return kept

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), whose route it takes."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return low
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1
        return low
    return None


def _kind(ip: IPAddress) -> str | None:
    table = _V4_REFUSED if ip.version == 4 else _V6_REFUSED
    for network, kind in table:
        if ip.version == network.version and ip in network:
            return kind
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _V6_GLOBAL:
        return "reserved"
    return None


def _spells_address(name: str) -> bool:
    """True for what a URL would take as an address (127.1, 2130706433, 1.2.3.4.5), not a name."""
    try:
        return literal_address(name) is not None
    except ValueError:
        return True


def _normal_name(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
