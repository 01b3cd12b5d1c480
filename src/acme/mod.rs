//! The ACME side: the HTTP client instant-acme talks through. Error
//! classification and the order flow come with the issuance controllers.

pub mod account;
pub mod http;
