//! The ACME side: accounts, the HTTP client instant-acme talks through, and
//! what its errors mean for an Order.

pub mod account;
pub mod budgets;
pub mod ceiling;
pub mod direct;
pub mod errors;
#[cfg(test)]
mod hostile;
pub mod http;
pub mod kept;
pub mod limits;
pub mod retries;
pub mod retry;
pub mod rollover;
pub mod session;
pub mod tls;
