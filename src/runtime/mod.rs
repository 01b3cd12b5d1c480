//! The plumbing every controller shares, knowing none of them: the
//! context, status writes and condition rules, events, the watches behind
//! the controllers, leader election and the probes.

pub mod conditions;
pub mod context;
pub mod counts;
pub mod events;
pub mod latest;
pub mod leader;
pub mod probes;
pub mod reconcile_error;
pub mod settings;
pub mod status;
pub mod stores;
pub mod watch;
