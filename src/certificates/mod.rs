//! The Certificate controllers, split by role as cert-manager's: trigger
//! (decides when to issue), key manager, request manager, issuing,
//! readiness. Decisions are pure functions over plain data.

pub mod backoff;
pub mod controllers;
pub mod issuing;
pub mod readiness;
pub mod renewal;
pub mod request_manager;
pub mod secret;
pub mod trigger;
