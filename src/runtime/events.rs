//! Kubernetes Events on our objects, as `kubectl describe` shows them.
//!
//! A reconcile hands its event to [`Events::publish`] and goes on: one
//! task publishes them all, off the reconcile path. Its kube `Recorder`s
//! are kept, so kube's series cache counts a repeated event on the first
//! one instead of creating another; one per controller, reason and note,
//! as that cache tells events apart by reason alone and would keep the
//! first note of a reason for every later one (a renewal's "why" would
//! read as the first issuance's).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

/// Events waiting to be published at most; more are dropped (and logged),
/// as client-go's broadcaster drops them past its queue of 1000.
const QUEUE: usize = 1000;
/// Recorders kept at most; past it they start over (a repeat then makes a
/// new Event instead of counting on the last one).
const RECORDERS: usize = 512;

/// One event, as a reconcile asked for it.
struct Note {
    controller: &'static str,
    object: ObjectReference,
    type_: EventType,
    reason: String,
    note: String,
}

/// Where the controllers' events go.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<Note>,
}

impl Events {
    /// The queue, and the task that publishes what it receives until every
    /// [`Events`] is dropped. [`Events::new`] spawns it.
    fn channel(client: kube::Client) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (queue, mut received) = mpsc::channel::<Note>(QUEUE);
        let publishing = async move {
            let mut recorders: HashMap<(&'static str, String, String), Recorder> = HashMap::new();
            while let Some(n) = received.recv().await {
                if recorders.len() >= RECORDERS {
                    recorders.clear();
                }
                let key = (n.controller, n.reason.clone(), n.note.clone());
                let recorder = recorders.entry(key).or_insert_with(|| {
                    Recorder::new(
                        client.clone(),
                        Reporter {
                            controller: n.controller.to_string(),
                            instance: None,
                        },
                    )
                });
                let event = Event {
                    type_: n.type_,
                    reason: n.reason.clone(),
                    note: Some(n.note),
                    action: n.reason,
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &n.object).await {
                    tracing::warn!(error = %e, reason = event.reason,
                        object = n.object.name.as_deref().unwrap_or_default(),
                        "publishing an event failed");
                }
            }
        };
        (Self { queue }, publishing)
    }

    /// A queue whose publisher runs on the current tokio runtime until the
    /// last clone is dropped.
    pub fn new(client: kube::Client) -> Self {
        let (events, publishing) = Self::channel(client);
        tokio::spawn(publishing);
        events
    }

    /// Queues one event about `object` as `controller`; never waits.
    pub fn publish(
        &self,
        controller: &'static str,
        object: ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let note = Note {
            controller,
            object,
            type_,
            reason: reason.to_string(),
            note,
        };
        if let Err(e) = self.queue.try_send(note) {
            let n = match &e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            tracing::warn!(reason = %n.reason, full = matches!(e, mpsc::error::TrySendError::Full(_)),
                "an event was dropped: the queue is full or closed");
        }
    }
}
