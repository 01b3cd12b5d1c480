//! The REST layer: Kubernetes paths, verbs, content types and watch streams
//! on top of the store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::patch::{json_patch, merge_patch, strategic_merge_patch};
use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Filter, Propagation, Store};

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

pub(super) fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status_body(),
    )
}

/// A parsed resource path.
pub(super) struct Target {
    pub(super) rt: ResourceType,
    pub(super) namespace: String,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
    /// Served as events.k8s.io/v1 while stored as core/v1 Events.
    pub(super) events_v1: bool,
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
    pub(super) fn outbound(&self, mut body: Value) -> Value {
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
    match super::discovery::discovery(&shared, &segments) {
        Some(body) if method == Method::GET => return json_response(StatusCode::OK, &body),
        _ => {}
    }
    let target = match resolve(&shared.store, &segments) {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let manager = field_manager(&query, &headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return error_response(&ApiError::unsupported_media_type(format!(
            "the emulator speaks JSON only, not {content_type}"
        )));
    }
    let result = match (&method, &target.name) {
        (&Method::GET, None) if is_true(query.get("watch")) => {
            return super::watch::watch(&shared, &target, &query);
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

pub(super) fn is_true(v: Option<&String>) -> bool {
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

pub(super) fn filter(target: &Target, query: &HashMap<String, String>) -> Result<Filter, ApiError> {
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
