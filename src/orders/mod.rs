//! Orders: the controller (`controller`), its Challenges (`challenges`),
//! failure handling (`failures`), and the pure parts: ACME states and
//! identifiers (`decide`), solver selection (`select`), deterministic
//! names (`naming`).

pub mod challenges;
pub mod controller;
pub mod decide;
mod failures;
pub mod naming;
pub mod select;
