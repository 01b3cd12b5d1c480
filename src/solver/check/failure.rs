//! Why a self-check failed, by kind: the kind is what metric labels and
//! control flow read, the message ([`std::fmt::Display`]) what a user
//! reads in the Challenge's reason. Nothing reads the message to decide.

use std::fmt;

/// A failed self-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelfCheckFailure {
    /// The solver (its Pod, or the namespace's solver Service) does not
    /// exist: it is presented again after a few of these.
    SolverMissing(String),
    /// The solver Pod exists but is not ready.
    SolverNotReady(String),
    /// The solver does not answer in-cluster, or answers wrong.
    SolverUnreachable(String),
    /// The name does not resolve, or has no address.
    Dns(String),
    /// A redirect the CA will not follow, a loop, or too many.
    Redirect(String),
    /// 404: nothing routes the token's path for the name to the solver.
    NotRouted(String),
    /// Another status than 200.
    WrongStatus(String),
    /// A body that is not the key authorization.
    WrongAnswer(String),
    /// No connection, a timeout, a TLS or protocol failure.
    Unreachable(String),
    /// DNS-01: the TXT record is not (yet) where the CA will look.
    NotPropagated(String),
}

use SelfCheckFailure::*;

impl SelfCheckFailure {
    /// The failure's cause, as a bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            SolverMissing(_) | SolverNotReady(_) => "solver_not_ready",
            SolverUnreachable(_) => "solver_unreachable",
            Dns(_) => "dns",
            Redirect(_) => "redirect",
            NotRouted(_) => "not_routed",
            WrongStatus(_) => "wrong_status",
            WrongAnswer(_) => "wrong_answer",
            Unreachable(_) => "unreachable",
            NotPropagated(_) => "not_propagated",
        }
    }

    /// The same failure with its message rewritten by `f` (context added).
    pub fn map(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            SolverMissing(m) => SolverMissing(f(m)),
            SolverNotReady(m) => SolverNotReady(f(m)),
            SolverUnreachable(m) => SolverUnreachable(f(m)),
            Dns(m) => Dns(f(m)),
            Redirect(m) => Redirect(f(m)),
            NotRouted(m) => NotRouted(f(m)),
            WrongStatus(m) => WrongStatus(f(m)),
            WrongAnswer(m) => WrongAnswer(f(m)),
            Unreachable(m) => Unreachable(f(m)),
            NotPropagated(m) => NotPropagated(f(m)),
        }
    }
}

impl fmt::Display for SelfCheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (SolverMissing(m) | SolverNotReady(m) | SolverUnreachable(m) | Dns(m) | Redirect(m)
        | NotRouted(m) | WrongStatus(m) | WrongAnswer(m) | Unreachable(m) | NotPropagated(m)) =
            self;
        f.write_str(m)
    }
}

impl std::error::Error for SelfCheckFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_the_label() {
        let f = NotRouted("404".into()).map(|m| format!("GET x: {m}"));
        assert_eq!(f, NotRouted("GET x: 404".into()));
        assert_eq!(f.to_string(), "GET x: 404");
        assert_eq!(f.label(), "not_routed");
        assert_eq!(SolverMissing(String::new()).label(), "solver_not_ready");
    }
}
