//! The client's address: the peer's, or, behind trusted proxies (the ALB's subnets), the
//! last address in `X-Forwarded-For` that is not one of them.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address of a request, put in its extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Finds the client of a request that came from `peer`.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    // Right to left: each trusted proxy appended the address it saw.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
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

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let alb: Vec<IpNet> = vec!["10.0.0.0/16".parse().unwrap()];
        let from_alb: SocketAddr = "10.0.1.5:40000".parse().unwrap();
        let outside: SocketAddr = "198.51.100.9:40000".parse().unwrap();
        assert_eq!(client_ip(from_alb, &headers("203.0.113.7"), &alb).to_string(), "203.0.113.7");
        // A client that sends its own X-Forwarded-For cannot hide behind it.
        assert_eq!(client_ip(from_alb, &headers("1.2.3.4, 203.0.113.7"), &alb).to_string(), "203.0.113.7");
        assert_eq!(client_ip(from_alb, &headers("203.0.113.7, 10.0.2.9"), &alb).to_string(), "203.0.113.7");
        assert_eq!(client_ip(outside, &headers("203.0.113.7"), &alb).to_string(), "198.51.100.9");
        assert_eq!(client_ip(from_alb, &HeaderMap::new(), &alb).to_string(), "10.0.1.5");
        assert_eq!(client_ip(from_alb, &headers("203.0.113.7"), &[]).to_string(), "10.0.1.5");
    }
}
