//! HTTP-01 presentation: the token server. Solver resource builders and the
//! self-check join it with the solver modes.

pub mod server;
