//! Watch streams: newline-delimited events replayed from the history or the
//! current state, then followed live, with bookmarks, timeouts, the
//! initial-events-end bookmark of streaming lists and 410 Gone.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::http::{Shared, Target, error_response, filter, is_true};
use super::store::{EventType, Filter, WatchEvent};

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

struct WatchState {
    pending: VecDeque<Bytes>,
    rx: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    closer: tokio::sync::watch::Receiver<u64>,
    events_v1: bool,
    target_group: String,
    target_plural: String,
    api_version: String,
    filter: Filter,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    last_rv: u64,
}

pub(super) fn watch(shared: &Shared, target: &Target, query: &HashMap<String, String>) -> Response {
    let filter = match filter(target, query) {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let rv_param = query.get("resourceVersion").cloned().unwrap_or_default();
    let initial = is_true(query.get("sendInitialEvents"));
    let mut pending = VecDeque::new();
    let api_version = if target.events_v1 {
        "events.k8s.io/v1".to_string()
    } else {
        target.rt.api_version()
    };
    let (backlog, rx, start_rv) = if rv_param.is_empty() || rv_param == "0" || initial {
        // Start with the current state as ADDED events, then follow changes.
        let rx = shared.store.subscribe();
        let (items, rv) = shared.store.list(&target.rt, &filter);
        for item in &items {
            pending.push_back(event_line("ADDED", &target.outbound(item.clone())));
        }
        if initial {
            let bookmark = json!({"apiVersion": api_version, "kind": target.rt.kind,
                "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            pending.push_back(event_line("BOOKMARK", &bookmark));
        }
        (Vec::new(), rx, rv)
    } else {
        let rv: u64 = match rv_param.parse() {
            Ok(rv) => rv,
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resourceVersion {rv_param:?}"
                )));
            }
        };
        match shared.store.watch_from(rv) {
            Ok((backlog, rx)) => (backlog, rx, rv),
            Err(gone) => {
                let line = event_line("ERROR", &gone.status_body());
                return stream_response(futures_util::stream::iter([Ok::<_, Infallible>(line)]));
            }
        }
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let mut state = WatchState {
        pending,
        rx: Some(rx),
        closer: shared.store.watch_closer(),
        events_v1: target.events_v1,
        target_group: target.rt.group.clone(),
        target_plural: target.rt.plural.clone(),
        api_version,
        filter,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks: is_true(query.get("allowWatchBookmarks")),
        last_rv: start_rv,
    };
    for event in backlog {
        state.offer(&event);
    }
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(line) = state.pending.pop_front() {
                return Some((Ok::<_, Infallible>(line), state));
            }
            let rx = state.rx.as_mut()?;
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(event) => state.offer(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                        // Too slow or shut down: end the watch; the client re-lists.
                        state.rx = None;
                    }
                },
                _ = tokio::time::sleep_until(state.deadline) => state.rx = None,
                _ = state.closer.changed() => state.rx = None,
                _ = tick => {
                    if state.bookmarks {
                        let bookmark = json!({"apiVersion": state.api_version, "kind": "",
                            "metadata": {"resourceVersion": state.last_rv.to_string()}});
                        state.pending.push_back(event_line("BOOKMARK", &bookmark));
                    }
                }
            }
        }
    });
    stream_response(stream)
}

impl WatchState {
    fn offer(&mut self, event: &WatchEvent) {
        if event.group != self.target_group || event.plural != self.target_plural {
            return;
        }
        self.last_rv = self.last_rv.max(event.rv);
        // A change that moves an object into or out of a filtered watch is
        // an ADDED or DELETED for that watch, as with kube-apiserver.
        let now = self.filter.matches(&event.namespace, &event.object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.filter.matches(&event.namespace, p));
        let event_type = match (event.event_type, before, now) {
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (_, _, true) => event.event_type,
            (EventType::Deleted, _, false)
            | (EventType::Added, _, false)
            | (EventType::Modified, false, false) => return,
        };
        let mut object = if self.events_v1 {
            super::events::from_core(&event.object)
        } else {
            event.object.clone()
        };
        object["apiVersion"] = json!(self.api_version);
        self.pending
            .push_back(event_line(event_type.as_str(), &object));
    }
}

fn stream_response<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
