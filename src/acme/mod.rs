//! The ACME side: accounts, the HTTP client instant-acme talks through, and
//! what its errors mean for an Order.

pub mod account;
pub mod direct;
pub mod errors;
pub mod http;
pub mod rollover;
pub mod session;
