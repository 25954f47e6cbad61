"""The server's front door: `Host` allow-list, cross-site write refusal and authentication, decided from the
request line and headers alone, before any body byte is read (pure ASGI middleware in front of every route).

Why here and not in a FastAPI dependency: FastAPI parses a JSON body before it runs the dependencies, so a key
checked there let an unauthenticated 23 MB body stall the event loop 0.7 s (and malformed JSON got 400, not
401). Why the Host and Origin checks: browsers send cross-site form posts (multipart uploads included) without
a preflight, and a DNS-rebinding page reaches a loopback server under its own host name; a keyless server
would serve both.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Collection, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mini.ingest.netguard import canonical_host
from mini.server.errors import error_response
from mini.server.settings import ServerSettings

log = logging.getLogger("mini.server")

# What a keyless server answers to by default, besides the address the request arrived at (any port).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A Host header: a bracketed IPv6 address or a name/IPv4 of DNS characters, then an optional port. Anything
# else (user info, spaces, an unbracketed IPv6) is malformed: no browser sends it.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")


class Refusal(NamedTuple):
    status: int
    type: str
    message: str
    headers: dict[str, str] | None = None


UNAUTHORIZED = Refusal(401, "unauthorized", "missing or invalid API key", {"WWW-Authenticate": "Bearer"})


def authenticated(headers: Mapping[str, str], keys: Collection[str]) -> bool:
    """Whether the request carries one of `keys` as `Authorization: Bearer <key>` or `X-API-Key` (always, when
    there are no keys). The only authentication of the server (the guard and `deps.require_api_key` use it)."""
    if not keys:
        return True
    given = headers.get("x-api-key", "")
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = token.strip()
    if not given:
        return False
    # Constant time, against every key (no short cut): no timing hint about a prefix or which key matched.
    matches = [hmac.compare_digest(given.encode(), key.encode()) for key in keys]
    return any(matches)


def host_name(header: str) -> str | None:
    """The host of a `Host` header, canonical and without its port; None if the header is malformed."""
    match = _HOST.fullmatch(header.strip())
    if match is None or (match["port"] is not None and int(match["port"]) > 65_535):
        return None
    if match["ip6"] is not None:
        try:
            ipaddress.IPv6Address(match["ip6"])
        except ValueError:
            return None
        return canonical_host(match["ip6"])
    return canonical_host(match["name"])


def host_allowed(name: str, patterns: Collection[str]) -> bool:
    """`name` (canonical) matches one of `patterns`: `*`, `*.example.com` (subdomains) or a canonical host."""
    for pattern in patterns:
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL or Origin header, lower-case and without the scheme's default
    port; None for anything else (`null`, other schemes, user info), which then matches no allowed origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    host = canonical_host(parts.hostname)
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


class Guard:
    """Refuses, in this order: a `Host` that is not allowed (400 `invalid_host`), a state-changing request from
    another site (403 `forbidden`), a request without a valid key where keys are set (401 `unauthorized`), on
    every path but `public_paths` (GET/HEAD) and CORS preflights. Everything else goes through untouched."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings, public_paths: Collection[str]) -> None:
        self.app = app
        self.keys = settings.keys()
        patterns = settings.host_patterns()
        # Default: with keys, any host (a page on a rebound name has no key to send, and clients of a public
        # server use its DNS name); without keys, the loopback names and the address the request came in on.
        self.any_host = "*" in patterns or (not patterns and bool(self.keys))
        self.local_default = not patterns
        self.hosts = frozenset(
            p.lower() if p.startswith("*") else canonical_host(p) for p in (patterns or LOCAL_HOSTS)
        )
        origins = settings.origins()
        self.any_origin = "*" in origins
        self.origins = frozenset(o for o in map(origin_of, origins) if o is not None)
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation; no route uses them
        else:
            log.debug("refused %s %s: %s", scope.get("method"), scope.get("path"), refusal.type)
            response = error_response(refusal.status, refusal.type, refusal.message, refusal.headers)
            await response(scope, receive, send)

    def refusal(self, scope: Scope) -> Refusal | None:
        """Why this request is refused, from its scope (method, path, headers, server address) alone; None if
        it may go on."""
        headers = Headers(scope=scope)
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        host = headers.get("host", "")
        if not self._host_allowed(host, scope):
            shown = host[:100]
            return Refusal(
                400,
                "invalid_host",
                f"this server does not answer to the host {shown!r}; add it to MINI_ALLOWED_HOSTS",
            )
        if (method in STATE_CHANGING or scope["type"] == "websocket") and not self._same_site(scope, headers):
            return Refusal(
                403,
                "forbidden",
                "cross-site request refused: its Origin is neither this server nor one of MINI_CORS_ORIGINS",
            )
        if not self._public(method, scope["path"], headers) and not authenticated(headers, self.keys):
            return UNAUTHORIZED
        return None

    def _host_allowed(self, header: str, scope: Scope) -> bool:
        if self.any_host:
            return True
        name = host_name(header)
        if name is None:
            return False
        if host_allowed(name, self.hosts):
            return True
        # The address the connection arrived at (uvicorn: the socket's local address) is the bind address, or
        # on 0.0.0.0 the interface used. An IP literal cannot be rebound: only names can.
        server = scope.get("server")
        return self.local_default and server is not None and name == canonical_host(str(server[0]))

    def _same_site(self, scope: Scope, headers: Headers) -> bool:
        """A request without Origin passes (curl, SDKs, servers: no browser, no ambient credentials); with
        one, it must be this server's own origin or an allowed CORS origin. `Sec-Fetch-Site: cross-site`
        without an Origin is refused too."""
        origin = headers.get("origin")
        if origin is None:
            return headers.get("sec-fetch-site", "").lower() != "cross-site"
        if self.any_origin:
            return True
        given = origin_of(origin)
        if given is None:
            return False
        scheme = {"ws": "http", "wss": "https"}.get(scope["scheme"], scope["scheme"])
        return given in self.origins or given == origin_of(f"{scheme}://{headers.get('host', '')}")

    def _public(self, method: str, path: str, headers: Headers) -> bool:
        if method == "OPTIONS" and "access-control-request-method" in headers:
            return True  # a CORS preflight: browsers never send credentials with it
        return method in ("GET", "HEAD") and path in self.public_paths
