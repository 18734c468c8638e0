//! The client's address, from the peer and `X-Forwarded-For` (see
//! [`logyard_auth::forwarded`]).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address of a request, put in its extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Finds the client of a request that came from `peer`.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let values = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    logyard_auth::forwarded::client_address(peer.ip(), values, trusted)
}
