//! Orders: the controller (`controller`), its Challenges (`challenges`),
//! failure handling (`failures`), what they write (`status`), and the pure parts: ACME states and
//! identifiers (`decide`) and solver selection (`select`). The
//! deterministic names of requests, Orders and Challenges are in
//! `crate::naming`, shared with the Certificate controllers.

mod budget;
pub mod challenges;
pub mod controller;
pub mod decide;
mod failures;
pub mod select;
pub mod status;
