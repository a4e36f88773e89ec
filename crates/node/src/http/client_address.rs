//! Who a request comes from, for per-address limits: the client's address
//! grouped the way one client holds addresses (an IPv4 address; an IPv6
//! /64, which one host or one home gets whole), and, behind a reverse
//! proxy the operator trusts, the address that proxy forwarded.
//!
//! - [`ClientAddress`]: an IPv4 address (IPv4-mapped IPv6 addresses are
//!   their IPv4 address) or an IPv6 /64 prefix.
//! - [`TrustedProxies`]: the operator's proxies (`[http] trusted_proxies`
//!   in `node.toml`, addresses or CIDR blocks). Only when the TCP peer is
//!   one of them does the node read `X-Forwarded-For`, and then it takes
//!   the rightmost hop that is not a trusted proxy: the address the
//!   operator's outermost proxy saw (anything to its left was written by
//!   the client and proves nothing).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// Most `X-Forwarded-For` hops looked at, from the right.
pub(crate) const MAX_FORWARDED_HOPS: usize = 32;

/// A client's address as the per-address limits count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientAddress {
    /// An IPv4 address (also an IPv4-mapped IPv6 address).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl ClientAddress {
    /// The group of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => {
                    let octets = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&octets[..8]);
                    Self::V6Prefix(prefix)
                }
            },
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Prefix(prefix) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(prefix);
                write!(f, "{}/64", Ipv6Addr::from(octets))
            }
        }
    }
}

/// The reverse proxies whose `X-Forwarded-For` the node believes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `entries`: each an address (`192.0.2.1`, `2001:db8::1`) or a
    /// CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("{entry:?} is neither an IP address nor a CIDR block (e.g. 10.0.0.0/8)"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is one of the proxies (an IPv4-mapped IPv6 address is
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`: the
    /// peer itself, unless it is a trusted proxy; then the rightmost
    /// `X-Forwarded-For` hop that is not a trusted proxy (the leftmost
    /// hop if all are; the peer if the header is absent). An unparsable
    /// hop ends the walk at the trusted hop to its right, which wrote it.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddress {
        ClientAddress::of(self.client_ip(peer, headers))
    }

    /// [`Self::client_of`] before grouping.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Several header lines are one list, in order.
        let lines: Vec<&str> =
            headers.get_all("x-forwarded-for").iter().map(|value| value.to_str().unwrap_or("")).collect();
        let mut client = peer;
        for hop in lines.iter().rev().flat_map(|line| line.rsplit(',')).take(MAX_FORWARDED_HOPS) {
            let Some(ip) = parse_hop(hop) else { return client };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One `X-Forwarded-For` hop: an address, possibly with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|port| port.parse::<u16>().is_ok())) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(|v6| canonical(IpAddr::V6(v6)));
    }
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client address of a request: what the node's HTTP server put in its
/// extensions, else the TCP peer's (`ConnectInfo`), else 0.0.0.0.
pub(crate) fn client_address_of(extensions: &axum::http::Extensions) -> ClientAddress {
    extensions.get::<ClientAddress>().copied().unwrap_or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(ClientAddress::V4(Ipv4Addr::UNSPECIFIED), |info| ClientAddress::of(info.0.ip()))
    })
}

/// `rate` per second (at least one) with bursts of `burst` (`rate` if 0).
pub(crate) fn per_second(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

/// One token bucket per client address, shared by `/jrpc` and `/v1`
/// (`[rpc] requests_per_second_per_ip` and `burst_per_ip`).
#[derive(Clone, Debug)]
pub struct AddressLimiter(Arc<DefaultKeyedRateLimiter<ClientAddress>>);

impl AddressLimiter {
    /// `rate` requests per second with bursts of `burst`, per address.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self(Arc::new(RateLimiter::keyed(per_second(rate, burst))))
    }

    /// Takes one request of `client` from its bucket, or says why not.
    pub fn check(&self, client: ClientAddress) -> Result<(), String> {
        self.0.check_key(&client).map_err(|_| format!("too many requests from {client}; retry in a second"))
    }

    /// Forgets idle addresses (bounded memory).
    pub(crate) fn shrink(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

/// Middleware: refuses a request over its address's rate limit with 429,
/// `Retry-After: 1` and `{"error": "too many requests from …"}`.
pub(crate) async fn limit_by_address(
    axum::extract::State(limiter): axum::extract::State<AddressLimiter>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match limiter.check(client_address_of(request.extensions())) {
        Ok(()) => next.run(request).await,
        Err(error) => (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "1")],
            axum::Json(serde_json::json!({ "error": error })),
        )
            .into_response(),
    }
}
