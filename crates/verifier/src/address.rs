//! Which IP addresses an identity provider can be at. Verifier URLs are
//! registered by anyone, and every node fetches them: a URL that pointed a
//! node at its own machine, its private network or its cloud's metadata
//! service (169.254.169.254) would let anyone make every node send requests
//! there (server-side request forgery). So the ledger refuses such IP
//! literals in a configuration ([`crate::config::check_url`]), and a node
//! checks every address it connects to, after DNS resolution, with the same
//! rule ([`address_scope`]).
//!
//! Public means globally reachable unicast: everything in IPv4 but the
//! special-purpose ranges below, and in IPv6 only global unicast
//! (2000::/3) minus its special-purpose ranges. An IPv6 address that embeds
//! an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)
//! is judged by that IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where an address is, as far as a provider connection is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressScope {
    /// Globally reachable unicast: where identity providers are.
    Public,
    /// This machine: 127.0.0.0/8, ::1, and their IPv4-mapped and NAT64
    /// forms. Only for development (a node connects to it only when its
    /// operator says so).
    Loopback,
    /// Never a provider's address.
    NonPublic(NonPublicRange),
}

/// The special-purpose ranges no node connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonPublicRange {
    /// 0.0.0.0/8 ("this network") and `::`.
    Unspecified,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918).
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// 169.254.0.0/16 (cloud metadata services live here) and fe80::/10.
    LinkLocal,
    /// fc00::/7 (RFC 4193).
    UniqueLocal,
    /// fec0::/10, deprecated.
    SiteLocal,
    /// 192.0.0.0/24 and 2001::/23 (RFC 6890; includes Teredo).
    ProtocolAssignments,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 and
    /// 3fff::/20.
    Documentation,
    /// 198.18.0.0/15 (RFC 2544).
    Benchmarking,
    /// 192.88.99.0/24 and 2002::/16 (6to4, deprecated; they embed other
    /// addresses).
    SixToFour,
    /// 224.0.0.0/4 and ff00::/8.
    Multicast,
    /// 240.0.0.0/4 (with 255.255.255.255) and IPv6 outside global
    /// unicast (IPv4-compatible `::a.b.c.d`, discard-only 100::/64, local
    /// NAT64 64:ff9b:1::/48, SRv6 5f00::/16, ...).
    Reserved,
}

impl fmt::Display for NonPublicRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified (\"this network\") address",
            Self::Private => "a private address (RFC 1918)",
            Self::SharedAddressSpace => "a carrier-grade NAT address (100.64.0.0/10)",
            Self::LinkLocal => "a link-local address (169.254.0.0/16 or fe80::/10, where cloud metadata services are)",
            Self::UniqueLocal => "a unique-local IPv6 address (fc00::/7)",
            Self::SiteLocal => "a site-local IPv6 address (fec0::/10)",
            Self::ProtocolAssignments => "an IETF protocol assignment address (192.0.0.0/24, 2001::/23)",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address (198.18.0.0/15)",
            Self::SixToFour => "a 6to4 address",
            Self::Multicast => "a multicast address",
            Self::Reserved => "a reserved address",
        })
    }
}

impl AddressScope {
    /// Whether a node may connect to an address of this scope: public
    /// addresses always, any other only when its operator allows
    /// non-public addresses (development: a provider on the node's own
    /// machine or network).
    pub fn permitted(self, allow_non_public: bool) -> bool {
        match self {
            Self::Public => true,
            Self::Loopback | Self::NonPublic(_) => allow_non_public,
        }
    }
}

/// The scope of `address`.
pub fn address_scope(address: IpAddr) -> AddressScope {
    match address {
        IpAddr::V4(v4) => ipv4_scope(v4),
        IpAddr::V6(v6) => ipv6_scope(v6),
    }
}

fn ipv4_scope(address: Ipv4Addr) -> AddressScope {
    let [a, b, c, _] = address.octets();
    let range = match (a, b, c) {
        (127, _, _) => return AddressScope::Loopback,
        (0, _, _) => NonPublicRange::Unspecified,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => NonPublicRange::Private,
        (100, 64..=127, _) => NonPublicRange::SharedAddressSpace,
        (169, 254, _) => NonPublicRange::LinkLocal,
        (192, 0, 0) => NonPublicRange::ProtocolAssignments,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => NonPublicRange::Documentation,
        (192, 88, 99) => NonPublicRange::SixToFour,
        (198, 18..=19, _) => NonPublicRange::Benchmarking,
        (224..=239, _, _) => NonPublicRange::Multicast,
        (240..=255, _, _) => NonPublicRange::Reserved,
        _ => return AddressScope::Public,
    };
    AddressScope::NonPublic(range)
}

fn ipv6_scope(address: Ipv6Addr) -> AddressScope {
    if address.is_loopback() {
        return AddressScope::Loopback;
    }
    if address.is_unspecified() {
        return AddressScope::NonPublic(NonPublicRange::Unspecified);
    }
    if let Some(v4) = address.to_ipv4_mapped() {
        return ipv4_scope(v4);
    }
    let segments = address.segments();
    let octets = address.octets();
    // NAT64's well-known prefix reaches the embedded IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return ipv4_scope(Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]));
    }
    let first = segments[0];
    let range = if first & 0xfe00 == 0xfc00 {
        NonPublicRange::UniqueLocal
    } else if first & 0xffc0 == 0xfe80 {
        NonPublicRange::LinkLocal
    } else if first & 0xffc0 == 0xfec0 {
        NonPublicRange::SiteLocal
    } else if first & 0xff00 == 0xff00 {
        NonPublicRange::Multicast
    } else if first & 0xe000 != 0x2000 {
        // Outside global unicast 2000::/3.
        NonPublicRange::Reserved
    } else if first == 0x2001 && segments[1] == 0x0db8 || first == 0x3fff && segments[1] & 0xf000 == 0 {
        NonPublicRange::Documentation
    } else if first == 0x2001 && segments[1] < 0x0200 {
        NonPublicRange::ProtocolAssignments
    } else if first == 0x2002 {
        NonPublicRange::SixToFour
    } else {
        return AddressScope::Public;
    };
    AddressScope::NonPublic(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> AddressScope {
        address_scope(text.parse().unwrap_or_else(|_| unreachable!("{text}")))
    }

    #[test]
    fn every_special_range_is_classified() {
        use NonPublicRange::*;
        let cases = [
            ("127.0.0.1", AddressScope::Loopback),
            ("127.255.255.254", AddressScope::Loopback),
            ("::1", AddressScope::Loopback),
            ("::ffff:127.0.0.1", AddressScope::Loopback),
            ("64:ff9b::127.0.0.1", AddressScope::Loopback),
            ("0.0.0.0", AddressScope::NonPublic(Unspecified)),
            ("0.1.2.3", AddressScope::NonPublic(Unspecified)),
            ("::", AddressScope::NonPublic(Unspecified)),
            ("10.0.0.1", AddressScope::NonPublic(Private)),
            ("172.16.0.1", AddressScope::NonPublic(Private)),
            ("172.31.255.255", AddressScope::NonPublic(Private)),
            ("192.168.1.1", AddressScope::NonPublic(Private)),
            ("100.64.0.1", AddressScope::NonPublic(SharedAddressSpace)),
            ("100.127.255.255", AddressScope::NonPublic(SharedAddressSpace)),
            ("169.254.169.254", AddressScope::NonPublic(LinkLocal)),
            ("192.0.0.8", AddressScope::NonPublic(ProtocolAssignments)),
            ("192.0.2.1", AddressScope::NonPublic(Documentation)),
            ("198.51.100.7", AddressScope::NonPublic(Documentation)),
            ("203.0.113.9", AddressScope::NonPublic(Documentation)),
            ("192.88.99.1", AddressScope::NonPublic(SixToFour)),
            ("198.18.0.1", AddressScope::NonPublic(Benchmarking)),
            ("198.19.255.255", AddressScope::NonPublic(Benchmarking)),
            ("224.0.0.1", AddressScope::NonPublic(Multicast)),
            ("239.255.255.250", AddressScope::NonPublic(Multicast)),
            ("240.0.0.1", AddressScope::NonPublic(Reserved)),
            ("255.255.255.255", AddressScope::NonPublic(Reserved)),
            ("::ffff:10.1.2.3", AddressScope::NonPublic(Private)),
            ("::ffff:169.254.169.254", AddressScope::NonPublic(LinkLocal)),
            ("64:ff9b::192.168.0.1", AddressScope::NonPublic(Private)),
            ("::10.0.0.1", AddressScope::NonPublic(Reserved)),
            ("::8.8.8.8", AddressScope::NonPublic(Reserved)),
            ("64:ff9b:1::1", AddressScope::NonPublic(Reserved)),
            ("100::1", AddressScope::NonPublic(Reserved)),
            ("5f00::1", AddressScope::NonPublic(Reserved)),
            ("fc00::1", AddressScope::NonPublic(UniqueLocal)),
            ("fd12:3456::1", AddressScope::NonPublic(UniqueLocal)),
            ("fe80::1", AddressScope::NonPublic(LinkLocal)),
            ("febf::1", AddressScope::NonPublic(LinkLocal)),
            ("fec0::1", AddressScope::NonPublic(SiteLocal)),
            ("ff02::1", AddressScope::NonPublic(Multicast)),
            ("2001::1", AddressScope::NonPublic(ProtocolAssignments)),
            ("2001:2::1", AddressScope::NonPublic(ProtocolAssignments)),
            ("2001:db8::1", AddressScope::NonPublic(Documentation)),
            ("3fff::1", AddressScope::NonPublic(Documentation)),
            ("2002:a00:1::1", AddressScope::NonPublic(SixToFour)),
            ("8.8.8.8", AddressScope::Public),
            ("1.1.1.1", AddressScope::Public),
            ("100.63.255.255", AddressScope::Public),
            ("100.128.0.0", AddressScope::Public),
            ("172.15.255.255", AddressScope::Public),
            ("172.32.0.0", AddressScope::Public),
            ("169.253.255.255", AddressScope::Public),
            ("198.17.255.255", AddressScope::Public),
            ("198.20.0.0", AddressScope::Public),
            ("223.255.255.255", AddressScope::Public),
            ("::ffff:8.8.8.8", AddressScope::Public),
            ("64:ff9b::8.8.8.8", AddressScope::Public),
            ("2001:4860:4860::8888", AddressScope::Public),
            ("2606:4700::1111", AddressScope::Public),
            ("2001:200::1", AddressScope::Public),
            ("3ffe::1", AddressScope::Public),
            ("3fff:1000::1", AddressScope::Public),
        ];
        for (text, expected) in cases {
            assert_eq!(scope(text), expected, "{text}");
        }
    }

    #[test]
    fn only_public_addresses_are_permitted_unless_allowed() {
        for text in ["127.0.0.1", "::1", "10.0.0.1", "192.168.0.1", "169.254.169.254", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(!scope(text).permitted(false), "{text}");
            assert!(scope(text).permitted(true), "{text}");
        }
        assert!(scope("8.8.8.8").permitted(false));
        assert!(scope("2606:4700::1111").permitted(false));
    }

    /// An independent statement of the IPv4 special-purpose registry
    /// (RFC 6890 and its updates): network, prefix length, scope.
    const IPV4_TABLE: &[([u8; 4], u32, AddressScope)] = {
        use AddressScope::{Loopback, NonPublic};
        use NonPublicRange::*;
        &[
            ([0, 0, 0, 0], 8, NonPublic(Unspecified)),
            ([10, 0, 0, 0], 8, NonPublic(Private)),
            ([100, 64, 0, 0], 10, NonPublic(SharedAddressSpace)),
            ([127, 0, 0, 0], 8, Loopback),
            ([169, 254, 0, 0], 16, NonPublic(LinkLocal)),
            ([172, 16, 0, 0], 12, NonPublic(Private)),
            ([192, 0, 0, 0], 24, NonPublic(ProtocolAssignments)),
            ([192, 0, 2, 0], 24, NonPublic(Documentation)),
            ([192, 88, 99, 0], 24, NonPublic(SixToFour)),
            ([192, 168, 0, 0], 16, NonPublic(Private)),
            ([198, 18, 0, 0], 15, NonPublic(Benchmarking)),
            ([198, 51, 100, 0], 24, NonPublic(Documentation)),
            ([203, 0, 113, 0], 24, NonPublic(Documentation)),
            ([224, 0, 0, 0], 4, NonPublic(Multicast)),
            ([240, 0, 0, 0], 4, NonPublic(Reserved)),
        ]
    };

    fn ipv4_oracle(address: Ipv4Addr) -> AddressScope {
        let bits = u32::from(address);
        IPV4_TABLE
            .iter()
            .find(|(network, prefix, _)| bits >> (32 - prefix) == u32::from_be_bytes(*network) >> (32 - prefix))
            .map_or(AddressScope::Public, |(_, _, scope)| *scope)
    }

    /// An address inside `network/prefix`, the rest of its bits from `noise`.
    fn inside(network: [u8; 4], prefix: u32, noise: u32) -> Ipv4Addr {
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        Ipv4Addr::from((u32::from_be_bytes(network) & mask) | (noise & !mask))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        /// Every IPv4 address is classified as the registry table says.
        #[test]
        fn ipv4_agrees_with_the_registry(bits in proptest::prelude::any::<u32>()) {
            let address = Ipv4Addr::from(bits);
            proptest::prop_assert_eq!(address_scope(IpAddr::V4(address)), ipv4_oracle(address), "{}", address);
        }

        /// Every address inside a special range is in it, wherever in the
        /// range (uniform addresses rarely land in the small ranges).
        #[test]
        fn every_address_of_a_special_range_is_caught(entry in 0..IPV4_TABLE.len(), noise in proptest::prelude::any::<u32>()) {
            let (network, prefix, expected) = IPV4_TABLE[entry];
            let address = inside(network, prefix, noise);
            proptest::prop_assert_eq!(address_scope(IpAddr::V4(address)), expected, "{}", address);
            proptest::prop_assert!(!address_scope(IpAddr::V4(address)).permitted(false));
        }

        /// An IPv6 address that embeds an IPv4 address (IPv4-mapped,
        /// NAT64) is exactly as public as the IPv4 address; one that is
        /// IPv4-compatible (deprecated) is never public.
        #[test]
        fn embedded_ipv4_is_judged_as_ipv4(bits in proptest::prelude::any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let expected = ipv4_oracle(v4);
            let mapped = v4.to_ipv6_mapped();
            let [a, b, c, d] = v4.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            proptest::prop_assert_eq!(address_scope(IpAddr::V6(mapped)), expected, "{}", mapped);
            proptest::prop_assert_eq!(address_scope(IpAddr::V6(nat64)), expected, "{}", nat64);
            let compatible = v4.to_ipv6_compatible();
            proptest::prop_assert!(!address_scope(IpAddr::V6(compatible)).permitted(false), "{}", compatible);
        }

        /// Only global unicast (2000::/3) can be public in IPv6, and
        /// unique-local and link-local addresses never are.
        #[test]
        fn ipv6_public_only_in_global_unicast(bits in proptest::prelude::any::<u128>()) {
            let address = Ipv6Addr::from(bits);
            let scope = address_scope(IpAddr::V6(address));
            let embeds_v4 = address.to_ipv4_mapped().is_some() || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000;
            if scope == AddressScope::Public && !embeds_v4 {
                proptest::prop_assert_eq!(bits >> 125, 1, "{} is public outside 2000::/3", address);
            }
            let unique_local = Ipv6Addr::from((bits & !(u128::MAX << 121)) | (0xfc00_u128 << 112));
            let link_local = Ipv6Addr::from((bits & !(u128::MAX << 118)) | (0xfe80_u128 << 112));
            proptest::prop_assert_eq!(address_scope(IpAddr::V6(unique_local)), AddressScope::NonPublic(NonPublicRange::UniqueLocal));
            proptest::prop_assert_eq!(address_scope(IpAddr::V6(link_local)), AddressScope::NonPublic(NonPublicRange::LinkLocal));
        }
    }
}
