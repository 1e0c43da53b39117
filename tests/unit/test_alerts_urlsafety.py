"""Webhook URLs that would reach into the private network are refused."""

import socket

import pytest

from lyssna.common.urlsafety import (
    UnsafeWebhookURL, WebhookURLResolutionError, check_webhook_url, pinned_request,
)


def resolver_for(*addrs):
    calls = []

    def resolve(host, port, type=0):
        calls.append((host, port))
        out = []
        for a in addrs:
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            sockaddr = (a, port, 0, 0) if fam == socket.AF_INET6 else (a, port)
            out.append((fam, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    resolve.calls = calls
    return resolve


def test_loopback_is_refused_with_a_clear_message():
    with pytest.raises(UnsafeWebhookURL) as e:
        check_webhook_url("http://127.0.0.1:9000/hook", False)
    msg = str(e.value)
    assert "'127.0.0.1'" in msg and "loopback" in msg and "allow_private_network: true" in msg


def test_allow_private_network_skips_the_address_check():
    resolver = resolver_for("10.0.0.5")
    assert check_webhook_url("http://hooks.internal/x", True, resolver=resolver) == []
    assert resolver.calls == []


@pytest.mark.parametrize("addr,why", [
    ("127.0.0.2", "loopback"), ("::1", "loopback"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "not globally routable"),
    ("::ffff:127.0.0.1", "loopback (embedded in ::ffff:7f00:1)"),
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:a00:1::", "private (embedded in 2002:a00:1::)"),  # 6to4 of 10.0.0.1
    ("64:ff9b::c0a8:101", "private"),  # NAT64 of 192.168.1.1
])
def test_non_public_addresses_are_refused(addr, why):
    with pytest.raises(UnsafeWebhookURL) as e:
        check_webhook_url("https://hooks.example.com/x", False, resolver=resolver_for(addr))
    msg = str(e.value)
    assert "'hooks.example.com'" in msg and addr.split("%")[0] in msg and why in msg
    assert "allow_private_network: true" in msg


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(UnsafeWebhookURL, match="10.0.0.9"):
        check_webhook_url("https://mixed.example.com", False, resolver=resolver_for("93.184.216.34", "10.0.0.9"))


def test_public_addresses_pass_and_are_returned_for_pinning():
    resolver = resolver_for("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34")
    assert check_webhook_url("https://example.com:8443/hook", False, resolver=resolver) == [
        "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    assert resolver.calls == [("example.com", 8443)]
    check_webhook_url("http://example.com/", False, resolver=resolver)
    assert resolver.calls[-1] == ("example.com", 80)


def test_scoped_ipv6_is_judged_without_its_scope():
    with pytest.raises(UnsafeWebhookURL, match="link-local"):
        check_webhook_url("http://h.example/", False, resolver=resolver_for("fe80::1%eth0"))


@pytest.mark.parametrize("url,msg", [
    ("ftp://example.com/x", "scheme 'ftp'"), ("file:///etc/passwd", "scheme 'file'"),
    ("example.com/hook", "scheme '(none)'"), ("https:///nohost", "no host"),
    ("http://example.com:99999/", "malformed"),
])
def test_bad_urls_are_refused_even_when_private_networks_are_allowed(url, msg):
    for allow in (False, True):
        with pytest.raises(UnsafeWebhookURL) as e:
            check_webhook_url(url, allow, resolver=resolver_for("93.184.216.34"))
        assert msg in str(e.value)


def test_resolution_failure_is_a_separate_retryable_error():
    def broken(host, port, type=0):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(WebhookURLResolutionError, match="does not resolve") as e:
        check_webhook_url("https://nowhere.invalid/", False, resolver=broken)
    assert not isinstance(e.value, UnsafeWebhookURL)


@pytest.mark.parametrize("url, address, expected_url, host, sni", [
    ("https://hooks.example.com/services/T0KEN?x=1", "93.184.216.34",
     "https://93.184.216.34/services/T0KEN?x=1", "hooks.example.com", "hooks.example.com"),
    ("http://hooks.example.com:8080/hook", "93.184.216.34",
     "http://93.184.216.34:8080/hook", "hooks.example.com:8080", None),
    ("https://hooks.example.com:8443/h", "2606:2800:220:1:248:1893:25c8:1946",
     "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/h", "hooks.example.com:8443", "hooks.example.com"),
    ("https://bücher.example/h", "93.184.216.34",
     "https://93.184.216.34/h", "xn--bcher-kva.example", "xn--bcher-kva.example"),
])
def test_pinned_request_connects_to_the_address_and_speaks_to_the_host(url, address, expected_url, host, sni):
    target, headers, extensions = pinned_request(url, address)
    assert target == expected_url
    assert headers == {"host": host}
    assert extensions == ({"sni_hostname": sni} if sni else {})
