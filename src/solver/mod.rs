//! HTTP-01 presentation: the token server, the shared solver mode (one
//! Ingress per Challenge, tokens served by every replica) and the
//! self-check run before the CA is asked to validate.

pub mod check;
pub mod server;
pub mod shared;
