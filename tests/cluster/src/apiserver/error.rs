//! Kubernetes-shaped errors: every failure becomes a `Status` body.

use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status (name, group, kind, causes).
    pub details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: Value::Null,
        }
    }

    /// An error about one named object, with Kubernetes' `details`.
    fn about(
        code: u16,
        reason: &'static str,
        group: &str,
        plural: &str,
        name: &str,
        what: impl FnOnce(&str) -> String,
    ) -> Self {
        let resource = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        Self {
            details: json!({"name": name, "group": group, "kind": plural}),
            ..Self::new(code, reason, what(&resource))
        }
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::about(404, "NotFound", group, plural, name, |r| {
            format!("{r} \"{name}\" not found")
        })
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::about(409, "AlreadyExists", group, plural, name, |r| {
            format!("{r} \"{name}\" already exists")
        })
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::about(409, "Conflict", group, plural, name, |r| {
            format!("Operation cannot be fulfilled on {r} \"{name}\": {why}")
        })
    }

    /// 422 with one cause per field error.
    pub fn invalid(
        kind: &str,
        name: &str,
        group: &str,
        causes: Vec<(String, String, String)>,
    ) -> Self {
        let list: Vec<String> = causes.iter().map(|(_, _, m)| m.clone()).collect();
        let detail = match list.len() {
            1 => list[0].clone(),
            _ => format!("[{}]", list.join(", ")),
        };
        let causes: Vec<Value> =
            causes.into_iter().map(|(reason, field, message)| json!({"reason": reason, "field": field, "message": message})).collect();
        Self {
            details: json!({"name": name, "group": group, "kind": kind, "causes": causes}),
            ..Self::new(
                422,
                "Invalid",
                format!("{kind}.{group} \"{name}\" is invalid: {detail}"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message.into())
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message.into())
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message.into())
    }

    /// An injected fault (see `Faults`).
    pub fn injected(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        Self::new(code, reason, message.into())
    }

    pub fn status_body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}
