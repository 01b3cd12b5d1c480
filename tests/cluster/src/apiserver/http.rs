//! The REST layer: Kubernetes paths, verbs, content types and watch streams
//! on top of the store.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::patch::{json_patch, merge_patch, strategic_merge_patch};
use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Filter, Propagation, Store, WatchEvent};

/// What every request handler shares.
pub struct Shared {
    pub store: Store,
    pub hooks: super::hooks::Hooks,
    /// `host:port` the server listens on, reported in discovery.
    pub address: String,
}

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status_body(),
    )
}

/// A parsed resource path.
struct Target {
    rt: ResourceType,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
    /// Served as events.k8s.io/v1 while stored as core/v1 Events.
    events_v1: bool,
}

impl Target {
    /// A request body in storage form.
    fn inbound(&self, object: Value) -> Value {
        if self.events_v1 {
            super::events::to_core(&object)
        } else {
            object
        }
    }

    /// A stored object or list in the form the client asked for.
    fn outbound(&self, mut body: Value) -> Value {
        if !self.events_v1 {
            return body;
        }
        if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
            for item in items.iter_mut() {
                *item = super::events::from_core(item);
            }
            body["apiVersion"] = json!("events.k8s.io/v1");
            return body;
        }
        if body["kind"] == "Event" {
            super::events::from_core(&body)
        } else {
            body
        }
    }
}

/// Latency, faults and the request log around every request.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = shared.hooks.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let record = describe(&method, &uri, &headers);
    let response = match shared.hooks.take_fault(method.as_str(), uri.path()) {
        Some(fault) => {
            let e = ApiError::injected(
                fault.status,
                format!("injected fault for {} {}", method, uri.path()),
            );
            let mut response = error_response(&e);
            if let Some(secs) = fault.retry_after
                && let Ok(value) = header::HeaderValue::from_str(&secs.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        None => serve(State(shared.clone()), method, uri, headers, body).await,
    };
    if let Some(mut record) = record {
        record.status = response.status().as_u16();
        shared.hooks.record(record);
    }
    response
}

/// The request log entry of a resource request (None for discovery).
fn describe(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<super::hooks::RequestRecord> {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let group = if segments[0] == "apis" {
        segments[1].to_string()
    } else {
        String::new()
    };
    let (namespace, rest): (String, Vec<&str>) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (ns.to_string(), tail.to_vec()),
        other => (String::new(), other.to_vec()),
    };
    let resource = rest.first()?.to_string();
    let name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (method.as_str(), name.is_empty()) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (other, _) => other,
    };
    Some(super::hooks::RequestRecord {
        time: std::time::SystemTime::now(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        verb: verb.to_string(),
        group,
        resource,
        subresource: rest.get(2).map(|s| s.to_string()).unwrap_or_default(),
        namespace,
        name,
        status: 0,
    })
}

async fn serve(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match discovery(&shared, &segments) {
        Some(body) if method == Method::GET => return json_response(StatusCode::OK, &body),
        _ => {}
    }
    let target = match resolve(&shared.store, &segments) {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let manager = field_manager(&query, &headers);
    let result = match (&method, &target.name) {
        (&Method::GET, None) if is_true(query.get("watch")) => {
            return watch(&shared, &target, &query);
        }
        (&Method::GET, None) if wants_table(&headers) => {
            let (items, rv) = match filter(&target, &query) {
                Ok(f) => shared.store.list(&target.rt, &f),
                Err(e) => return error_response(&e),
            };
            let include = query
                .get("includeObject")
                .map(String::as_str)
                .unwrap_or("Metadata");
            Ok((
                StatusCode::OK,
                super::table::table(&target.rt, &items, Some(rv.to_string()), include),
            ))
        }
        (&Method::GET, Some(name)) if wants_table(&headers) && target.subresource.is_none() => {
            let include = query
                .get("includeObject")
                .map(String::as_str)
                .unwrap_or("Metadata");
            shared
                .store
                .get(&target.rt, &target.namespace, name)
                .map(|o| {
                    (
                        StatusCode::OK,
                        super::table::table(&target.rt, &[o], None, include),
                    )
                })
        }
        (&Method::GET, None) => list(&shared.store, &target, &query),
        (&Method::GET, Some(name)) => shared
            .store
            .get(&target.rt, &target.namespace, name)
            .map(|o| (StatusCode::OK, o)),
        (&Method::POST, None) => parse_body(&body)
            .and_then(|o| {
                shared
                    .store
                    .create(&target.rt, &target.namespace, target.inbound(o), &manager)
            })
            .map(|o| (StatusCode::CREATED, o)),
        (&Method::PUT, Some(name)) => parse_body(&body)
            .and_then(|o| {
                shared.store.update(
                    &target.rt,
                    &target.namespace,
                    name,
                    target.inbound(o),
                    target.subresource.as_deref(),
                    &manager,
                )
            })
            .map(|o| (StatusCode::OK, o)),
        (&Method::PATCH, Some(name)) => patch(
            &shared.store,
            &target,
            name,
            &headers,
            &body,
            &query,
            &manager,
        )
        .map(|o| (StatusCode::OK, o)),
        (&Method::DELETE, Some(name)) => delete_options(&query, &body)
            .and_then(|p| shared.store.delete(&target.rt, &target.namespace, name, p))
            .map(|o| (StatusCode::OK, o)),
        (&Method::DELETE, None) => delete_collection(&shared.store, &target, &query, &body),
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {path}"
        ))),
    };
    match result {
        Ok((code, body)) => json_response(code, &target.outbound(body)),
        Err(e) => error_response(&e),
    }
}

/// `kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io`.
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1"))
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// `/api/v1/[namespaces/{ns}/]{plural}[/{name}[/{subresource}]]` and the same under `/apis/{group}/{version}`.
fn resolve(store: &Store, segments: &[&str]) -> Result<Target, ApiError> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::not_found("", "paths", &segments.join("/"))),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && rest.len() == 3 && *plural == "status") =>
        {
            (ns.to_string(), [&[*plural][..], tail].concat())
        }
        other => (String::new(), other.to_vec()),
    };
    let plural = rest
        .first()
        .ok_or_else(|| ApiError::not_found(group, "resources", ""))?;
    let rt = store.resource(group, version, plural).ok_or_else(|| {
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        ApiError::not_found(
            group,
            plural,
            &format!("the server could not find the requested resource ({gv} {plural})"),
        )
    })?;
    if rt.namespaced == namespace.is_empty() && rest.len() > 1 {
        return Err(ApiError::not_found(
            group,
            plural,
            rest.get(1).copied().unwrap_or(""),
        ));
    }
    let events_v1 = group == "events.k8s.io" && *plural == "events";
    let rt = if events_v1 {
        store
            .resource("", "v1", "events")
            .ok_or_else(|| ApiError::not_found("", "events", ""))?
    } else {
        rt
    };
    Ok(Target {
        rt,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        events_v1,
    })
}

fn filter(target: &Target, query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    Ok(Filter {
        namespace: if target.rt.namespaced && !target.namespace.is_empty() {
            Some(target.namespace.clone())
        } else {
            None
        },
        labels: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
            .map_err(ApiError::bad_request)?,
    })
}

fn list(
    store: &Store,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<(StatusCode, Value), ApiError> {
    let (items, rv) = store.list(&target.rt, &filter(target, query)?);
    let offset: usize = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid continue token {token:?}")))?,
        None => 0,
    };
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(items.len());
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    let page: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(end.saturating_sub(offset))
        .collect();
    Ok((
        StatusCode::OK,
        json!({"apiVersion": target.rt.api_version(), "kind": format!("{}List", target.rt.kind), "metadata": metadata, "items": page}),
    ))
}

/// The field manager of a write: `?fieldManager=`, else the client's
/// User-Agent up to its first `/`, as kube-apiserver derives it.
fn field_manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    agent.split('/').next().unwrap_or("unknown").to_string()
}

fn patch(
    store: &Store,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    query: &HashMap<String, String>,
    manager: &str,
) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let sub = target.subresource.as_deref();
    if media == "application/apply-patch+yaml" {
        if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(ApiError::invalid(
                "PatchOptions",
                "",
                "meta.k8s.io",
                vec![(
                    "FieldValueRequired".into(),
                    "fieldManager".into(),
                    "fieldManager: Required value: is required for apply patch".into(),
                )],
            ));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
        let applied: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the apply body is not valid YAML: {e}")))?;
        return store.apply(
            &target.rt,
            &target.namespace,
            name,
            sub,
            target.inbound(applied),
            manager,
            is_true(query.get("force")),
        );
    }
    let doc = parse_body(body)?;
    let apply_in_view = |o: &mut Value, change: &dyn Fn(&mut Value) -> Result<(), ApiError>| {
        let mut view = target.outbound(o.clone());
        change(&mut view)?;
        *o = target.inbound(view);
        Ok(())
    };
    match media {
        "application/merge-patch+json" => {
            store.patch(&target.rt, &target.namespace, name, sub, manager, |o| {
                apply_in_view(o, &|v| {
                    merge_patch(v, &doc);
                    Ok(())
                })
            })
        }
        "application/json-patch+json" => {
            store.patch(&target.rt, &target.namespace, name, sub, manager, |o| {
                apply_in_view(o, &|v| {
                    json_patch(v, &doc).map_err(|e| ApiError {
                        code: 422,
                        ..ApiError::bad_request(e)
                    })
                })
            })
        }
        "application/strategic-merge-patch+json" if target.rt.validator.is_none() => {
            store.patch(&target.rt, &target.namespace, name, sub, manager, |o| {
                apply_in_view(o, &|v| {
                    strategic_merge_patch(v, &doc);
                    Ok(())
                })
            })
        }
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
            if target.rt.validator.is_none() {
                ", application/strategic-merge-patch+json"
            } else {
                ""
            }
        ))),
    }
}

fn delete_options(query: &HashMap<String, String>, body: &[u8]) -> Result<Propagation, ApiError> {
    let from_body: Option<String> = if body.is_empty() {
        None
    } else {
        parse_body(body)?
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from)
    };
    match from_body
        .or_else(|| query.get("propagationPolicy").cloned())
        .as_deref()
    {
        None | Some("Background") => Ok(Propagation::Background),
        Some("Foreground") => Ok(Propagation::Foreground),
        Some("Orphan") => Ok(Propagation::Orphan),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown propagationPolicy {other:?}"
        ))),
    }
}

fn delete_collection(
    store: &Store,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let propagation = delete_options(query, body)?;
    let (items, _) = store.list(&target.rt, &filter(target, query)?);
    let mut deleted = Vec::new();
    for item in items {
        let ns = item["metadata"]["namespace"].as_str().unwrap_or("");
        let name = item["metadata"]["name"].as_str().unwrap_or("");
        deleted.push(store.delete(&target.rt, ns, name, propagation)?);
    }
    Ok((
        StatusCode::OK,
        json!({"apiVersion": target.rt.api_version(), "kind": format!("{}List", target.rt.kind), "metadata": {}, "items": deleted}),
    ))
}

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

fn watch(shared: &Shared, target: &Target, query: &HashMap<String, String>) -> Response {
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
        if !self.filter.matches(&event.namespace, &event.object) {
            return;
        }
        let mut object = if self.events_v1 {
            super::events::from_core(&event.object)
        } else {
            event.object.clone()
        };
        object["apiVersion"] = json!(self.api_version);
        self.pending
            .push_back(event_line(event.event_type.as_str(), &object));
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

/// Version and discovery documents, or None for resource paths.
fn discovery(shared: &Shared, segments: &[&str]) -> Option<Value> {
    let registry = shared.store.registry();
    match segments {
        ["version"] => Some(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "certwright-testcluster",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"
        })),
        ["healthz"] | ["livez"] | ["readyz"] => Some(json!("ok")),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.address}]
        })),
        ["apis"] => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for t in registry.all().filter(|t| !t.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == t.group) {
                    Some((_, versions)) if !versions.contains(&t.version) => {
                        versions.push(t.version.clone())
                    }
                    Some(_) => {}
                    None => groups.push((t.group.clone(), vec![t.version.clone()])),
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, versions)| {
                    let list: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": list, "preferredVersion": list[0]})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", version] => Some(resource_list(&registry, "", version)),
        ["apis", group, version] => {
            let list = resource_list(&registry, group, version);
            if list["resources"].as_array().is_some_and(|r| r.is_empty()) {
                None
            } else {
                Some(list)
            }
        }
        _ => None,
    }
}

fn resource_list(registry: &super::registry::Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for t in registry
        .all()
        .filter(|t| t.group == group && t.version == version)
    {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}
