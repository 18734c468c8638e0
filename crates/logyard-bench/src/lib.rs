//! Benchmark tools for logyard: the storefront and ALB log generators (also the source of
//! demo and test data) and an HTTP load client.

pub mod alb;
pub mod protocols;
pub mod storefront;
