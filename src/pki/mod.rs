//! Keys, CSRs and certificate parsing.

pub mod der;
pub mod keys;
