//! The client's address: the peer's, or, behind trusted proxies (the ALB's subnets), the
//! last address in `X-Forwarded-For` that is not one of them.

use std::net::IpAddr;

use ipnet::IpNet;

/// Finds the client of a request that came from `peer`, given its `X-Forwarded-For` header
/// values in order.
pub fn client_address<'a>(peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    // Right to left: each trusted proxy appended the address it saw.
    let forwarded: Vec<IpAddr> =
        forwarded_for.into_iter().flat_map(|v| v.split(',')).filter_map(|s| s.trim().parse::<IpAddr>().ok()).collect();
    let mut client = peer;
    for ip in forwarded.iter().rev() {
        let ip = ip.to_canonical();
        client = ip;
        if !trusted.iter().any(|n| n.contains(&ip)) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let alb: Vec<IpNet> = vec!["10.0.0.0/16".parse().unwrap()];
        let from_alb: IpAddr = "10.0.1.5".parse().unwrap();
        let outside: IpAddr = "198.51.100.9".parse().unwrap();
        let client =
            |peer, xff: &[&str], trusted: &[IpNet]| client_address(peer, xff.iter().copied(), trusted).to_string();
        assert_eq!(client(from_alb, &["203.0.113.7"], &alb), "203.0.113.7");
        // A client that sends its own X-Forwarded-For cannot hide behind it.
        assert_eq!(client(from_alb, &["1.2.3.4, 203.0.113.7"], &alb), "203.0.113.7");
        assert_eq!(client(from_alb, &["1.2.3.4", "203.0.113.7"], &alb), "203.0.113.7");
        assert_eq!(client(from_alb, &["203.0.113.7, 10.0.2.9"], &alb), "203.0.113.7");
        assert_eq!(client(outside, &["203.0.113.7"], &alb), "198.51.100.9");
        assert_eq!(client(from_alb, &[], &alb), "10.0.1.5");
        assert_eq!(client(from_alb, &["203.0.113.7"], &[]), "10.0.1.5");
        // Garbage is skipped; an IPv4-mapped IPv6 peer is the IPv4 address it maps.
        assert_eq!(client(from_alb, &["nonsense, 203.0.113.7"], &alb), "203.0.113.7");
        assert_eq!(client("::ffff:10.0.1.5".parse().unwrap(), &["203.0.113.7"], &alb), "203.0.113.7");
    }
}
