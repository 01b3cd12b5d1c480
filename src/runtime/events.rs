//! Kubernetes Events on our objects, as `kubectl describe` shows them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes one event about `object` as `controller`.
pub async fn publish(
    client: &kube::Client,
    controller: &str,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<(), kube::Error> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: controller.to_string(),
            instance: None,
        },
    );
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    };
    recorder.publish(&event, object).await
}
