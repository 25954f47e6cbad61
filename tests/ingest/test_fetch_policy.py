"""The outbound fetch policy (SSRF guard): which addresses are refused, and `UrlFetcher` enforcing it against real
loopback servers: literal addresses in every spelling, names that resolve to loopback, and redirects to each.

Private ranges (10/8, 192.168/16, ...) are refused before any connection is tried, so those tests need no network.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mini import EmbeddingModel, VectorStore
from mini.errors import ConfigurationError, DocumentParseError, InvalidInputError
from mini.ingest.netguard import (
    SERVER_HINT,
    FetchPolicy,
    FetchRefused,
    GuardedResolver,
    parse_allow,
)
from mini.ingest.pipeline import Ingestor
from mini.ingest.web import UrlFetcher
from mini.types import Document
from tests.ingest.web_site import HTML, Site, running_site

REFUSING = FetchPolicy.refusing()
PERMISSIVE = FetchPolicy.permissive()


def _can_bind(family: socket.AddressFamily, host: str) -> bool:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        return False
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


# --- the policy, pure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata endpoint
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "special-purpose"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("2001::1", "special-purpose"),  # Teredo
        ("100::1", "special-purpose"),
        ("4000::1", "reserved"),  # outside 2000::/3, the only allocated global unicast
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::7f00:1", "loopback"),  # IPv4-compatible ::127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b:1::1", "private"),  # local-use NAT64
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert REFUSING.refused_address(address) == kind
    assert PERMISSIVE.refused_address(address) is None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "11.0.0.1",
        "172.32.0.1",  # just past 172.16/12
        "100.128.0.1",  # just past 100.64/10
        "192.169.0.1",
        "223.255.255.254",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",  # mapped public
        "64:ff9b::808:808",  # NAT64 of a public address (DNS64 networks)
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert REFUSING.refused_address(address) is None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("127.0.0.1.", "127.0.0.1. is a loopback address"),
        ("2130706433", "2130706433 is a loopback address (127.0.0.1)"),  # decimal
        ("127.1", "127.1 is a loopback address (127.0.0.1)"),  # short
        ("0x7f.1", "0x7f.1 is a loopback address (127.0.0.1)"),  # hex
        ("0x7f000001", "0x7f000001 is a loopback address (127.0.0.1)"),
        ("0177.0.0.1", "0177.0.0.1 is a loopback address (127.0.0.1)"),  # octal
        ("0", "0 is an unspecified address (0.0.0.0)"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("10.0.0.1", "10.0.0.1 is a private address"),
        ("167772161", "167772161 is a private address (10.0.0.1)"),
        ("::1", "::1 is a loopback address"),
        ("::ffff:7f00:1", "::ffff:7f00:1 is a loopback address (127.0.0.1)"),  # yarl's [::ffff:127.0.0.1]
        ("[::ffff:127.0.0.1]", "[::ffff:127.0.0.1] is a loopback address"),
        ("1.2.3.4.5", "1.2.3.4.5 is not a valid IP address"),  # digits aiohttp takes for an address
    ],
)
def test_url_hosts_that_spell_a_refused_address_are_refused(host: str, reason: str) -> None:
    assert REFUSING.refused_host(host) is not None
    assert REFUSING.refused_host(host).startswith(reason)  # type: ignore[union-attr]
    assert PERMISSIVE.refused_host(host) is None


@pytest.mark.parametrize(
    "host", ["localhost", "example.com", "0a.de", "8.8.8.8", "::ffff:808:808", "1e100.net"]
)
def test_names_and_public_literals_are_left_to_the_resolver(host: str) -> None:
    assert REFUSING.refused_host(host) is None


def test_allow_list_opens_networks_and_names() -> None:
    networks, hosts = parse_allow(" 10.0.0.0/8, 127.0.0.1 ,[::1],Intranet.Example.,,fd00::/8")
    assert [str(n) for n in networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"]
    assert hosts == {"intranet.example"}
    policy = FetchPolicy.refusing(["10.0.0.0/8", "127.0.0.1", "::1", "intranet.example", "fd00::/8"])
    assert policy.refused_address("10.20.30.40") is None
    assert policy.refused_address("::ffff:10.0.0.5") is None  # the embedded address is what is allowed
    assert policy.refused_address("127.0.0.1") is None
    assert policy.refused_address("127.0.0.2") == "loopback"
    assert policy.refused_address("::1") is None
    assert policy.refused_address("fd00::1") is None
    assert policy.refused_address("192.168.1.1") == "private"
    assert policy.refused_host("INTRANET.example.") is None
    assert policy.allows_name("intranet.example") and not policy.allows_name("other.example")
    assert policy.refused_host("127.1") is None  # spells 127.0.0.1, which is allowed


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.0/33", "300.1.1.1", "http://intranet", "*.example.com", "127.1", "1.2.3.4.5", "two words"],
)
def test_bad_allow_list_entries_are_named(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="fetch allow-list entry") as info:
        FetchPolicy.server(f"10.0.0.0/8,{entry}")
    assert repr(entry.strip()) in str(info.value)


def test_presets() -> None:
    server = FetchPolicy.server("10.0.0.0/8")
    assert server.refuse_private and server.hint == SERVER_HINT and server.max_redirects == 5
    assert (
        not FetchPolicy.permissive().refuse_private
        and FetchPolicy.permissive(max_redirects=0).max_redirects == 0
    )
    with pytest.raises(InvalidInputError):
        FetchPolicy.refusing(max_redirects=-1)


class _StubResolver:
    """Stands in for the system resolver (no DNS in tests): answers every name with `addresses`."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        family = socket.AF_INET
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_only_allowed_addresses() -> None:
    guard = GuardedResolver(REFUSING)
    guard._inner = _StubResolver("127.0.0.1", "93.184.216.34", "10.0.0.1")  # type: ignore[assignment]
    assert [r["host"] for r in await guard.resolve("mixed.example", 80)] == ["93.184.216.34"]

    guard._inner = _StubResolver("127.0.0.1", "::1")  # type: ignore[assignment]
    with pytest.raises(FetchRefused) as info:
        await guard.resolve("rebind.example", 80)
    assert info.value.reason == "rebind.example resolves to a non-public address"  # no address revealed

    named = GuardedResolver(FetchPolicy.refusing("rebind.example"))
    named._inner = _StubResolver("127.0.0.1")  # type: ignore[assignment]
    assert [r["host"] for r in await named.resolve("rebind.example", 80)] == ["127.0.0.1"]


# --- UrlFetcher against loopback servers --------------------------------------------------------------------------


def _no_retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every retry the fetcher would wait for (a refusal must have none)."""
    retries: list[int] = []
    choose = UrlFetcher._retry_delay

    def recording(self: UrlFetcher, retry: int, retry_after: float | None = None) -> float:
        retries.append(retry)
        return choose(self, retry, retry_after)

    monkeypatch.setattr(UrlFetcher, "_retry_delay", recording)
    return retries


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("127.0.0.2", "127.0.0.2 is a loopback address"),
        ("[::1]", "::1 is a loopback address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("0", "0 is an unspecified address (0.0.0.0)"),
        ("10.0.0.1", "10.0.0.1 is a private address"),
        ("192.168.1.1", "192.168.1.1 is a private address"),
        ("172.16.0.1", "172.16.0.1 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1 is a loopback address (127.0.0.1)"),
        ("[fd00::1]", "fd00::1 is a private address"),
        ("2130706433", "2130706433 is a loopback address (127.0.0.1)"),
        ("127.1", "127.1 is a loopback address (127.0.0.1)"),
        ("0x7f.1", "0x7f.1 is a loopback address (127.0.0.1)"),
        ("0177.0.0.1", "0177.0.0.1 is a loopback address (127.0.0.1)"),
        ("localhost", "localhost resolves to a non-public address"),
    ],
)
async def test_refusing_policy_refuses_before_connecting(
    site: Site, monkeypatch: pytest.MonkeyPatch, host: str, shown: str
) -> None:
    retries = _no_retries(monkeypatch)
    url = f"http://alice:s3cret@{host}:{site.port}/page.html"
    async with UrlFetcher(policy=FetchPolicy.server(), max_retries=2) as fetcher:
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(url)
    assert info.value.reason == f"refused: {shown}; {SERVER_HINT}"
    assert info.value.path == f"http://{host}:{site.port}/page.html"  # credentials stripped
    assert "s3cret" not in str(info.value)
    assert site.hits["/page.html"] == 0  # the loopback site was never asked
    assert retries == []


async def test_the_same_loopback_urls_are_fetched_when_allowed(site: Site) -> None:
    # The control for the test above: the site is reachable under these names, so the refusals were the policy.
    by_network = FetchPolicy.refusing("127.0.0.0/8")
    async with UrlFetcher(policy=by_network) as fetcher:
        assert (await fetcher.fetch(f"http://127.0.0.1:{site.port}/page.html")).data == HTML
        assert (await fetcher.fetch(f"http://[::ffff:127.0.0.1]:{site.port}/page.html")).data == HTML
        assert (await fetcher.fetch(f"http://0x7f.1:{site.port}/page.html")).data == HTML
        assert (await fetcher.fetch(f"http://localhost:{site.port}/page.html")).data == HTML
    async with UrlFetcher(policy=FetchPolicy.refusing("localhost")) as fetcher:
        assert (await fetcher.fetch(f"http://localhost:{site.port}/page.html")).data == HTML
    async with UrlFetcher() as fetcher:  # the default is permissive: a user's own intranet
        assert (await fetcher.fetch(f"http://127.0.0.1:{site.port}/page.html")).data == HTML
    assert site.hits["/page.html"] == 6


@pytest.mark.skipif(not _can_bind(socket.AF_INET6, "::1"), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback_is_refused_and_fetched_when_allowed() -> None:
    async with running_site("::1") as site:
        url = f"http://[::1]:{site.port}/page.html"
        async with UrlFetcher(policy=REFUSING) as fetcher:
            with pytest.raises(DocumentParseError, match=r"refused: ::1 is a loopback address"):
                await fetcher.fetch(url)
        async with UrlFetcher(policy=FetchPolicy.refusing("::1")) as fetcher:
            assert (await fetcher.fetch(url)).data == HTML
    assert site.hits["/page.html"] == 1


def _targets(port: int) -> list[tuple[str, str]]:
    """Redirect targets (a Location) that a policy allowing only the name `localhost` must refuse."""
    return [
        (f"http://127.0.0.1:{port}/page.html", "127.0.0.1 is a loopback address"),
        (f"http://127.0.0.2:{port}/page.html", "127.0.0.2 is a loopback address"),
        (f"http://[::1]:{port}/page.html", "::1 is a loopback address"),
        (f"http://0.0.0.0:{port}/page.html", "0.0.0.0 is an unspecified address"),
        ("http://10.0.0.1/page.html", "10.0.0.1 is a private address"),
        ("http://192.168.1.1/page.html", "192.168.1.1 is a private address"),
        ("http://172.16.0.1/page.html", "172.16.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        (f"http://[::ffff:127.0.0.1]:{port}/page.html", "::ffff:7f00:1 is a loopback address (127.0.0.1)"),
        (f"http://2130706433:{port}/page.html", "2130706433 is a loopback address (127.0.0.1)"),
        (f"http://127.1:{port}/page.html", "127.1 is a loopback address (127.0.0.1)"),
        (f"http://0x7f.1:{port}/page.html", "0x7f.1 is a loopback address (127.0.0.1)"),
    ]


async def test_every_redirect_hop_is_checked(site: Site) -> None:
    # The first hop is allowed by name (localhost); the Location then points at the same loopback site by
    # address, which is not on the allow-list. aiohttp's own redirect following would connect to it.
    from urllib.parse import quote

    targets = _targets(site.port)
    async with UrlFetcher(policy=FetchPolicy.server("localhost"), max_retries=0) as fetcher:
        for target, shown in targets:
            start = f"http://localhost:{site.port}/redirect?to={quote(target, safe='')}"
            with pytest.raises(DocumentParseError) as info:
                await fetcher.fetch(start)
            assert info.value.reason == f"refused: {shown}; {SERVER_HINT}", target
            assert info.value.path == start
    assert site.hits["/redirect"] == len(targets)  # the allowed hop was fetched every time...
    assert site.hits["/page.html"] == 0  # ...and the refused one never

    # The control: with the target's address allowed too, the same chain reaches the page.
    start = f"http://localhost:{site.port}/redirect?to={quote(targets[0][0], safe='')}"
    async with UrlFetcher(policy=FetchPolicy.server("localhost,127.0.0.1")) as fetcher:
        got = await fetcher.fetch(start)
    assert got.data == HTML and got.url == start and got.final_url == targets[0][0]


@pytest.mark.skipif(
    not _can_bind(socket.AF_INET, "127.0.0.2"), reason="127.0.0.2 is not a local address here"
)
async def test_a_redirect_to_a_name_that_resolves_to_loopback_is_refused(site: Site) -> None:
    # Started from a site on 127.0.0.2 (allowed by address), redirected to `localhost` (127.0.0.1: not allowed).
    async with running_site("127.0.0.2") as start_site:
        target = f"http://localhost:{site.port}/page.html"
        start = start_site.url(f"/redirect?to={target}")
        async with UrlFetcher(policy=FetchPolicy.server("127.0.0.2")) as fetcher:
            with pytest.raises(DocumentParseError) as info:
                await fetcher.fetch(start)
        async with UrlFetcher(policy=FetchPolicy.server("127.0.0.2,localhost")) as fetcher:
            assert (
                await fetcher.fetch(start)
            ).data == HTML  # the control: the name alone made the difference
    assert info.value.reason == f"refused: localhost resolves to a non-public address; {SERVER_HINT}"
    assert start_site.hits["/redirect"] == 2
    assert site.hits["/page.html"] == 1


async def test_redirects_are_capped(site: Site) -> None:
    async with UrlFetcher(policy=FetchPolicy.permissive(max_redirects=2)) as fetcher:
        got = await fetcher.fetch(site.url("/hops/2"))
        assert got.final_url == site.url("/page.html")
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(site.url("/hops/3"))
    assert info.value.reason == "too many redirects (more than 2)"
    assert site.hits["/hops/3"] == 1 and site.hits["/hops/1"] == 2  # followed to the cap, then stopped
    async with UrlFetcher(policy=FetchPolicy.refusing("127.0.0.1", max_redirects=0)) as fetcher:
        with pytest.raises(DocumentParseError, match=r"too many redirects \(more than 0\)"):
            await fetcher.fetch(site.url("/hops/1"))


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("file:///etc/passwd", "redirected to a non-http(s) URL (file scheme)"),
        ("gopher://127.0.0.1:70/x", "redirected to a non-http(s) URL (gopher scheme)"),
    ],
)
async def test_a_redirect_to_another_scheme_is_refused(site: Site, location: str, reason: str) -> None:
    async with UrlFetcher() as fetcher:  # even the permissive policy fetches only http(s)
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(site.url(f"/redirect?to={location}"))
    assert info.value.reason == reason


# --- the ingestor and the CLI -------------------------------------------------------------------------------------


async def test_ingest_reports_a_refused_url_and_indexes_the_rest(
    sim: Any, site: Site, tmp_path: Path
) -> None:
    model = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key="sim", dimension=384)
    store = VectorStore(str(tmp_path / "store"), collection_name="t")
    refused = f"http://127.0.0.1:{site.port}/page.html"
    note = tmp_path / "note.txt"
    note.write_text("The ferry leaves at noon.")
    ingestor = Ingestor(store, model, fetch_policy=FetchPolicy.server())
    report = await ingestor.run([refused, note, Document("Buses run hourly.", "buses")])
    assert (report.files_added, report.files_failed) == (2, 1)
    [failure] = report.failures
    assert failure.path == refused
    assert failure.reason == f"refused: 127.0.0.1 is a loopback address; {SERVER_HINT}"
    assert failure.error_type == "DocumentParseError"
    assert {r.metadata["source"] for r in await store.get_async()} == {str(note), "buses"}
    assert site.hits["/page.html"] == 0


def test_an_ingestor_takes_a_fetcher_or_a_policy_not_both(tmp_path: Path) -> None:
    model = EmbeddingModel("openai:sim-embed", base_url="http://127.0.0.1:9", api_key="sim", dimension=384)
    with pytest.raises(ConfigurationError, match="not both"):
        Ingestor(VectorStore(str(tmp_path)), model, url_fetcher=UrlFetcher(), fetch_policy=REFUSING)


def test_cli_ingest_refuses_private_urls_only_with_the_flag(tmp_path: Path) -> None:
    from mini.cli.main import app

    # Nothing listens on the port: without the flag the fetch is tried (and cannot connect); with it, refused
    # before any connection.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/secret.txt"
    args = ["ingest", url, "--uri", str(tmp_path / "s"), "--json", "--no-progress"]
    refused = CliRunner().invoke(app, [*args, "--refuse-private-urls"], catch_exceptions=False)
    tried = CliRunner().invoke(app, args, catch_exceptions=False)
    assert refused.exit_code == tried.exit_code == 1
    assert "refused: 127.0.0.1 is a loopback address; --refuse-private-urls is on" in refused.stdout
    assert "cannot connect" in tried.stdout and "refused:" not in tried.stdout
