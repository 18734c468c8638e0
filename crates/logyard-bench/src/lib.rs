//! Benchmark tools for logyard: the storefront log generator (also the source of demo data)
//! and an HTTP load client.

pub mod protocols;
pub mod storefront;
