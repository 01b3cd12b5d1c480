//! What the Challenge controller remembers between reconciles: the
//! scheduler's places, the self-check's passes and failures, how long a
//! `waitInsteadOfSelfCheck` has waited, and the solver modes' memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::schedule::InFlight;
use crate::api::Challenge;
use crate::runtime::context::Scoped;
use crate::runtime::counts::Counts;
use crate::runtime::latest::Latest;
use crate::solver::state::Solvers;

/// The controller's context: the shared one and its own state.
pub type Ctx = Scoped<State>;

/// The Challenge controller's own memory.
pub struct State {
    /// Challenges being worked on, by DNS name.
    in_flight: Mutex<InFlight>,
    /// Challenges to reconcile now: they waited for a place or a name
    /// that has been released.
    wake: mpsc::UnboundedSender<ObjectRef<Challenge>>,
    woken: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<Challenge>>>>,
    /// Consecutive self-check passes per Challenge.
    pub passes: Counts,
    /// Consecutive self-check failures per Challenge.
    pub self_check_failures: Counts,
    /// When each Challenge waiting out `waitInsteadOfSelfCheck` was first
    /// seen presented (the wait starts over after a restart).
    presented: Mutex<HashMap<String, Instant>>,
    /// The solver modes' client, settings and memory.
    pub solvers: Arc<Solvers>,
    /// Challenges as our last writes returned them.
    pub latest: Latest<Challenge>,
}

impl State {
    pub fn new(solvers: Arc<Solvers>) -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        Self {
            in_flight: Mutex::default(),
            wake,
            woken: Mutex::new(Some(woken)),
            passes: Counts::default(),
            self_check_failures: Counts::default(),
            presented: Mutex::default(),
            solvers,
            latest: Latest::default(),
        }
    }

    /// The Challenges in flight.
    pub fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases what Challenge `uid` holds and wakes those waiting for it.
    pub fn release(&self, uid: &str) {
        for name in self.in_flight().release(uid) {
            if let Some((ns, name)) = name.split_once('/') {
                let _ = self.wake.send(ObjectRef::new(name).within(ns));
            }
        }
    }

    /// The Challenges to wake, as a stream (once: the receiver is taken).
    pub fn take_woken(
        &self,
    ) -> Option<impl futures_util::Stream<Item = ObjectRef<Challenge>> + Send + 'static> {
        let rx = self
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        }))
    }

    /// How much of `wait` is left since `uid` was first seen presented;
    /// None once it has passed (and the record is dropped).
    pub fn still_to_wait(&self, uid: &str, wait: Duration) -> Option<Duration> {
        let mut map = self.presented.lock().unwrap_or_else(|e| e.into_inner());
        let since = *map.entry(uid.to_string()).or_insert_with(Instant::now);
        let left = wait.checked_sub(since.elapsed()).filter(|d| !d.is_zero());
        if left.is_none() {
            map.remove(uid);
        }
        left
    }
}
