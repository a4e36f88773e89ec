//! Client addresses for the per-address limits: IPv6 by /64, IPv4-mapped
//! IPv6 as IPv4, `X-Forwarded-For` believed only from trusted proxies and
//! read from the right.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use quorumkey_node::config::HttpSettings;
use quorumkey_node::http::client_address::{AddressLimiter, ClientAddress, TrustedProxies};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn forwarded(lines: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
    }
    headers
}

#[test]
fn ipv6_clients_are_grouped_by_64_and_mapped_ipv4_is_ipv4() {
    let a = ClientAddress::of(ip("2001:db8:1:2::1"));
    assert_eq!(a, ClientAddress::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), "one /64, one client");
    assert_ne!(a, ClientAddress::of(ip("2001:db8:1:3::1")), "another /64");
    assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    let v4 = ClientAddress::of(ip("192.0.2.7"));
    assert_eq!(v4, ClientAddress::of(ip("::ffff:192.0.2.7")), "an IPv4-mapped address is its IPv4 address");
    assert_ne!(v4, ClientAddress::of(ip("192.0.2.8")), "IPv4 addresses are not grouped");
    assert_eq!(v4.to_string(), "192.0.2.7");
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let proxies = TrustedProxies::parse(&["10.0.0.0/8", "2001:db8:ffff::1"]).unwrap();
    let headers = forwarded(&["198.51.100.9"]);
    // An untrusted peer's header is the client's own writing.
    assert_eq!(proxies.client_ip(ip("203.0.113.5"), &headers), ip("203.0.113.5"));
    // From a proxy, the forwarded address.
    assert_eq!(proxies.client_ip(ip("10.1.2.3"), &headers), ip("198.51.100.9"));
    assert_eq!(proxies.client_ip(ip("::ffff:10.1.2.3"), &headers), ip("198.51.100.9"), "a mapped proxy address");
    assert_eq!(proxies.client_ip(ip("2001:db8:ffff::1"), &headers), ip("198.51.100.9"));
    // No header: the proxy itself.
    assert_eq!(proxies.client_ip(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
}

#[test]
fn the_rightmost_untrusted_hop_is_the_client() {
    let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
    let peer = ip("10.0.0.1");
    // The client wrote the leftmost entry itself: it proves nothing.
    let headers = forwarded(&["1.1.1.1, 198.51.100.9, 10.0.0.7"]);
    assert_eq!(proxies.client_ip(peer, &headers), ip("198.51.100.9"));
    // Several header lines are one list, in order.
    let headers = forwarded(&["1.1.1.1", "198.51.100.9, 10.0.0.7"]);
    assert_eq!(proxies.client_ip(peer, &headers), ip("198.51.100.9"));
    // Ports and brackets, as some proxies write them.
    assert_eq!(proxies.client_ip(peer, &forwarded(&["198.51.100.9:4711"])), ip("198.51.100.9"));
    assert_eq!(proxies.client_ip(peer, &forwarded(&["[2001:db8::5]:4711"])), ip("2001:db8::5"));
    assert_eq!(proxies.client_ip(peer, &forwarded(&["[2001:db8::5]"])), ip("2001:db8::5"));
    assert_eq!(proxies.client_ip(peer, &forwarded(&["2001:db8::5"])), ip("2001:db8::5"));
    // Every hop a proxy: the leftmost.
    assert_eq!(proxies.client_ip(peer, &forwarded(&["10.0.0.9, 10.0.0.7"])), ip("10.0.0.9"));
    // An unparsable hop: the trusted hop to its right wrote it, and is
    // what the node can name.
    assert_eq!(proxies.client_ip(peer, &forwarded(&["198.51.100.9, junk, 10.0.0.7"])), ip("10.0.0.7"));
    assert_eq!(proxies.client_ip(peer, &forwarded(&["junk"])), peer);
    assert_eq!(proxies.client_of(peer, &forwarded(&["2001:db8:1:2::9"])), ClientAddress::of(ip("2001:db8:1:2::1")));
}

#[test]
fn trusted_proxies_and_http_settings_are_checked() {
    let error = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
    assert!(error.contains("neither an IP address nor a CIDR block"), "{error}");
    assert!(TrustedProxies::parse(&["localhost"]).is_err());
    assert_eq!(TrustedProxies::parse::<&str>(&[]).unwrap(), TrustedProxies::default());
    // A block written with host bits counts as its network.
    let proxies = TrustedProxies::parse(&["192.0.2.77/24"]).unwrap();
    assert!(proxies.contains(ip("192.0.2.1")));
    assert!(!proxies.contains(ip("192.0.3.1")));

    HttpSettings::default().validate().unwrap();
    let bad = HttpSettings { trusted_proxies: vec!["nope".into()], ..HttpSettings::default() };
    assert!(bad.validate().unwrap_err().starts_with("http.trusted_proxies: "));
    let zero = HttpSettings { max_connections_per_address: 0, ..HttpSettings::default() };
    assert_eq!(zero.validate().unwrap_err(), "http.max_connections_per_address must be at least 1");
    let long = HttpSettings { header_timeout_secs: 7200, ..HttpSettings::default() };
    assert!(long.validate().unwrap_err().contains("at most 3600"));
}

#[test]
fn the_rate_limit_is_per_address_group() {
    let limiter = AddressLimiter::new(1, 3);
    let flooding = ClientAddress::of(ip("2001:db8:1:2::1"));
    for _ in 0..3 {
        limiter.check(flooding).unwrap();
    }
    let refused = limiter.check(ClientAddress::of(ip("2001:db8:1:2::abcd"))).unwrap_err();
    assert_eq!(refused, "too many requests from 2001:db8:1:2::/64; retry in a second", "the same /64");
    limiter.check(ClientAddress::of(ip("2001:db8:1:3::1"))).unwrap();
    limiter.check(ClientAddress::of(ip("192.0.2.1"))).unwrap();
}
