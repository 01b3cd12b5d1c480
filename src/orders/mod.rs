//! The Order controller's decisions: which solver proves which name, and
//! the deterministic names of Orders and Challenges.

pub mod controller;
pub mod naming;
pub mod select;
