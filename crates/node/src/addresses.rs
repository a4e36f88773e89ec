//! What a node advertises and where it listens.
//!
//! `network.toml` holds what every node and client uses to reach a node:
//! its peers dial its `p2p_address`, and clients call its `rpc_url` (the
//! base of `/jrpc`, `/v1/...` and `/health`). Where the node binds is its
//! operator's choice, in its own `node.toml` (`p2p_listen`, `rpc_listen`):
//! every interface (`0.0.0.0:9000`, `[::]:8000`) behind an address the
//! others see, or a port a reverse proxy forwards to. Absent, a node binds
//! the address it advertises (an `https` URL is a TLS proxy's: the node
//! must be told where to bind).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The URL clients use to reach a node's API, in its one canonical
/// spelling: `http` or `https`, a host, an optional port and path prefix,
/// no trailing slash, no credentials, query or fragment. `IP:PORT` (the
/// older `rpc_address` form) reads as `http://IP:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RpcUrl(String);

impl RpcUrl {
    /// Parses and canonicalizes `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Self::parse(&format!("http://{address}"));
        }
        let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?}: the scheme must be http or https"));
        }
        if url.host().is_none() {
            return Err(format!("{text:?} names no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?}: a node URL carries no credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{text:?}: a node URL has no query or fragment"));
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The canonical spelling (the base of every route).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON-RPC endpoint (what a Torus client calls).
    pub fn endpoint(&self) -> String {
        format!("{}/jrpc", self.0)
    }

    /// Where a node advertising this URL listens when its `node.toml`
    /// does not say: the URL's own address, if it is `http` and its host is
    /// an IP address. None for a host name, or for `https` (the node serves
    /// plain HTTP, so an `https` URL is a TLS proxy's, which forwards to an
    /// address only the operator knows).
    pub fn listen_default(&self) -> Option<SocketAddr> {
        let url = Url::parse(&self.0).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        // An IPv6 host is spelled in brackets; a name does not parse.
        let ip: IpAddr = url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        Some(SocketAddr::new(ip, url.port_or_known_default()?))
    }
}

impl fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RpcUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl Serialize for RpcUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RpcUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a node binds, when its operator chose (`node.toml`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenOverrides {
    /// The p2p listener (default: the advertised `p2p_address`).
    pub p2p: Option<SocketAddr>,
    /// The API listener (default: the address of the advertised
    /// `rpc_url`, which must then name an IP address).
    pub rpc: Option<SocketAddr>,
}

/// Where a node binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddresses {
    /// The p2p listener.
    pub p2p: SocketAddr,
    /// The API listener.
    pub rpc: SocketAddr,
}

impl ListenOverrides {
    /// The addresses a node advertising `p2p_address` and `rpc_url` binds.
    ///
    /// The p2p listener must be of the advertised address's family: peers
    /// accept a node's connections only from the IP it advertises, and
    /// expect the same of it, so an IPv4 peer's connection that a `[::]`
    /// socket reports as `::ffff:a.b.c.d` would be refused as coming from
    /// an unknown address.
    pub fn resolve(&self, p2p_address: SocketAddr, rpc_url: &RpcUrl) -> Result<ListenAddresses, String> {
        let rpc = match self.rpc {
            Some(rpc) => rpc,
            None => rpc_url.listen_default().ok_or_else(|| {
                format!(
                    "rpc_url {rpc_url} names a host name or is https (the node serves plain HTTP, behind a TLS proxy for https): set rpc_listen (the address to bind, e.g. \"0.0.0.0:8000\") in node.toml"
                )
            })?,
        };
        let p2p = self.p2p.unwrap_or(p2p_address);
        if p2p.is_ipv4() != p2p_address.is_ipv4() {
            let any = if p2p_address.is_ipv4() { "0.0.0.0" } else { "[::]" };
            return Err(format!(
                "p2p_listen {p2p} and p2p_address {p2p_address} are of different IP families: peers connecting to {p2p_address} would arrive from addresses they are not known by; bind {any}:{} or {p2p_address}",
                p2p.port()
            ));
        }
        Ok(ListenAddresses { p2p, rpc })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_url() {
        for (text, canonical) in [
            ("127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
            ("HTTP://Node1.Example.ORG", "http://node1.example.org"),
            ("https://node1.example.org:443/", "https://node1.example.org"),
            ("https://proxy.example.org/node-1/", "https://proxy.example.org/node-1"),
            ("[fd51:7a3b::1]:8000", "http://[fd51:7a3b::1]:8000"),
            ("http://[FD51:7A3B:0::1]:8000", "http://[fd51:7a3b::1]:8000"),
        ] {
            assert_eq!(RpcUrl::parse(text).unwrap().as_str(), canonical, "{text}");
        }
        assert_eq!(RpcUrl::parse("http://10.0.0.1:8000").unwrap().endpoint(), "http://10.0.0.1:8000/jrpc");
    }

    #[test]
    fn refuses_what_is_not_a_node_url() {
        for text in
            ["ftp://10.0.0.1", "http://user:pw@10.0.0.1", "http://10.0.0.1/?a=1", "http://10.0.0.1/#x", "node1", ""]
        {
            assert!(RpcUrl::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn binds_the_advertised_ip_unless_told() {
        let p2p: SocketAddr = "10.231.0.1:9000".parse().unwrap();
        let ip = RpcUrl::parse("http://10.231.0.1:8000").unwrap();
        let named = RpcUrl::parse("https://node1.example.org").unwrap();
        let none = ListenOverrides::default();
        assert_eq!(none.resolve(p2p, &ip).unwrap(), ListenAddresses { p2p, rpc: "10.231.0.1:8000".parse().unwrap() });
        assert!(none.resolve(p2p, &named).unwrap_err().contains("rpc_listen"));
        let any =
            ListenOverrides { p2p: Some("0.0.0.0:9000".parse().unwrap()), rpc: Some("[::]:8000".parse().unwrap()) };
        assert_eq!(
            any.resolve(p2p, &named).unwrap(),
            ListenAddresses { p2p: "0.0.0.0:9000".parse().unwrap(), rpc: "[::]:8000".parse().unwrap() }
        );
        // https is a TLS proxy's URL: where the node binds is not in it.
        assert_eq!(RpcUrl::parse("https://10.0.0.1").unwrap().listen_default(), None);
        assert!(none.resolve(p2p, &RpcUrl::parse("https://10.0.0.1").unwrap()).unwrap_err().contains("rpc_listen"));
        // Every interface, of the advertised address's family only.
        let v6 = ListenOverrides { p2p: Some("[::]:9000".parse().unwrap()), rpc: None };
        assert!(v6.resolve(p2p, &ip).unwrap_err().contains("0.0.0.0:9000"));
        let v4 = ListenOverrides { p2p: Some("0.0.0.0:9000".parse().unwrap()), rpc: None };
        assert_eq!(v4.resolve(p2p, &ip).unwrap().p2p, "0.0.0.0:9000".parse().unwrap());
        let p2p6: SocketAddr = "[fd51:7a3b::1]:9000".parse().unwrap();
        assert!(v4.resolve(p2p6, &ip).unwrap_err().contains("[::]:9000"));
        assert_eq!(v6.resolve(p2p6, &ip).unwrap().p2p, "[::]:9000".parse().unwrap());
    }
}
