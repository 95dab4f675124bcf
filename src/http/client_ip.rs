//! Who the client is, for rate limiting: the TCP peer, or the address a trusted proxy
//! reports in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The client's address as far as we can trust it. Proxies append the address they got
/// the request from, so the list is read from the right: each hop that is a trusted proxy
/// vouches for the one before it, and the first hop that is not is the client. Anything a
/// client wrote into the header itself sits to the left of that, and is never believed.
pub fn client_ip(parts: &Parts, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip())
        .to_canonical();
    from_forwarded_for(peer, &parts.headers, trusted_proxies)
}

pub fn from_forwarded_for(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop we cannot read ends the chain: the proxy that wrote it is the last
        // address we know.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// `203.0.113.7`, `2001:db8::1`, or either with a port (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key a client is counted under. An IPv6 client usually holds a whole /64, so one
/// key per address would let it take 2^64 fresh allowances; it is counted per /64.
pub fn rate_limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().expect("header value"));
        }
        map
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("a network")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = headers(&["1.1.1.1"]);
        assert_eq!(
            from_forwarded_for(ip("203.0.113.9"), &h, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
        assert_eq!(from_forwarded_for(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged 6.6.6.6; the gateway appended what it saw, 198.51.100.4.
        let h = headers(&["6.6.6.6, 198.51.100.4, 10.0.0.3"]);
        assert_eq!(
            from_forwarded_for(ip("10.0.0.2"), &h, &trusted),
            ip("198.51.100.4")
        );
        // Several headers count as one list, in order.
        let h = headers(&["6.6.6.6", "198.51.100.4:5555"]);
        assert_eq!(
            from_forwarded_for(ip("10.0.0.2"), &h, &trusted),
            ip("198.51.100.4")
        );
        // Only proxies: the leftmost address is the best we know.
        let h = headers(&["10.1.1.1, 10.0.0.3"]);
        assert_eq!(
            from_forwarded_for(ip("10.0.0.2"), &h, &trusted),
            ip("10.1.1.1")
        );
        // Garbage ends the chain at the proxy that reported it.
        let h = headers(&["198.51.100.4, unknown"]);
        assert_eq!(
            from_forwarded_for(ip("10.0.0.2"), &h, &trusted),
            ip("10.0.0.2")
        );
        // No header: the trusted peer itself.
        assert_eq!(
            from_forwarded_for(ip("10.0.0.2"), &headers(&[]), &trusted),
            ip("10.0.0.2")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever a client writes into X-Forwarded-For, the answer is the peer or an
        /// address the header named, and from an untrusted peer always the peer.
        #[test]
        fn any_forwarded_for_gives_the_peer_or_an_address_it_names(
            values in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..4),
            peer in proptest::prelude::any::<std::net::Ipv4Addr>(),
            trusted in proptest::prelude::any::<bool>(),
        ) {
            let mut map = HeaderMap::new();
            for value in &values {
                if let Ok(value) = axum::http::HeaderValue::from_bytes(value) {
                    map.append("x-forwarded-for", value);
                }
            }
            let peer = IpAddr::V4(peer);
            let nets = if trusted { nets(&["0.0.0.0/0"]) } else { Vec::new() };
            let client = from_forwarded_for(peer, &map, &nets);
            if !trusted {
                proptest::prop_assert_eq!(client, peer);
            } else if client != peer {
                let named = values.iter().any(|v| String::from_utf8_lossy(v).contains(&client.to_string()))
                    || values.iter().any(|v| String::from_utf8_lossy(v).split(',').filter_map(|h| parse_hop(h.trim())).any(|ip| ip == client));
                proptest::prop_assert!(named, "{client} is not in {values:?}");
            }
        }

        #[test]
        fn an_address_reads_back_as_a_hop_with_or_without_a_port(
            ip in proptest::prelude::any::<IpAddr>(),
            port in proptest::prelude::any::<u16>(),
        ) {
            let ip = ip.to_canonical();
            proptest::prop_assert_eq!(parse_hop(&ip.to_string()), Some(ip));
            proptest::prop_assert_eq!(parse_hop(&SocketAddr::new(ip, port).to_string()), Some(ip));
        }

    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            rate_limit_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            rate_limit_key(ip("2001:db8:1:2:bbbb::9")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(rate_limit_key(ip("198.51.100.4")), ip("198.51.100.4"));
        assert_eq!(parse_hop("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("::ffff:198.51.100.4"), Some(ip("198.51.100.4")));
    }
}
