//! The API server's audit log (Metadata level, one JSON event a line),
//! read back as the requests each user made: the benchmark counts the
//! controller's API calls and writes per certificate from it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One request the API server completed.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub user: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub status: u16,
    /// The API server's reason for a refusal (empty when it succeeded).
    pub message: String,
    /// The caller's User-Agent (certwright's names its replica).
    pub user_agent: String,
    /// When the API server received it and when this stage was reached
    /// (RFC 3339, microseconds, UTC: they sort as text).
    pub received: String,
    pub completed: String,
}

impl Request {
    /// True for verbs that change state.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// The audit log file.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// A position to count from.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Every request completed since `mark` (watches once, when they started).
    pub fn since(&self, mark: u64) -> Vec<Request> {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            let _ = file.seek(SeekFrom::Start(mark));
            let _ = file.read_to_string(&mut text);
        }
        text.lines().filter_map(parse).collect()
    }

    /// The requests of `user` since `mark`.
    pub fn by_user(&self, mark: u64, user: &str) -> Vec<Request> {
        self.since(mark)
            .into_iter()
            .filter(|r| r.user == user)
            .collect()
    }
}

fn parse(line: &str) -> Option<Request> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let stage = event["stage"].as_str()?;
    let verb = event["verb"].as_str()?.to_string();
    // A watch logs ResponseStarted, then ResponseComplete when it ends; count it once.
    let counted = match verb.as_str() {
        "watch" => stage == "ResponseStarted",
        _ => stage == "ResponseComplete",
    };
    if !counted {
        return None;
    }
    let object = &event["objectRef"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    Some(Request {
        user: text(&event["user"]["username"]),
        verb,
        group: text(&object["apiGroup"]),
        resource: text(&object["resource"]),
        subresource: text(&object["subresource"]),
        namespace: text(&object["namespace"]),
        name: text(&object["name"]),
        status: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
        message: text(&event["responseStatus"]["message"]),
        user_agent: text(&event["userAgent"]),
        received: text(&event["requestReceivedTimestamp"]),
        completed: text(&event["stageTimestamp"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_completed_requests_and_watches_once() {
        let lines = [
            r#"{"stage":"ResponseComplete","verb":"get","user":{"username":"system:serviceaccount:certwright:certwright"},"objectRef":{"resource":"secrets","namespace":"a","name":"s","apiVersion":"v1"},"responseStatus":{"code":404}}"#,
            r#"{"stage":"ResponseStarted","verb":"watch","user":{"username":"u"},"objectRef":{"resource":"orders","apiGroup":"acme.cert-manager.io"},"responseStatus":{"code":200}}"#,
            r#"{"stage":"ResponseComplete","verb":"watch","user":{"username":"u"},"objectRef":{"resource":"orders","apiGroup":"acme.cert-manager.io"},"responseStatus":{"code":200}}"#,
            r#"{"stage":"ResponseComplete","verb":"patch","userAgent":"certwright/0.1.0 (pod-a)","requestReceivedTimestamp":"2026-12-06T23:00:00.000001Z","stageTimestamp":"2026-12-06T23:00:00.000002Z","user":{"username":"u"},"objectRef":{"resource":"certificates","subresource":"status","apiGroup":"cert-manager.io","namespace":"a","name":"c"},"responseStatus":{"code":200}}"#,
        ];
        let got: Vec<Request> = lines.iter().filter_map(|l| parse(l)).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].status, 404);
        assert_eq!(got[0].user, "system:serviceaccount:certwright:certwright");
        assert_eq!(got[1].verb, "watch");
        assert!(got[2].is_write() && !got[0].is_write());
        assert_eq!(got[2].subresource, "status");
        assert_eq!(got[2].user_agent, "certwright/0.1.0 (pod-a)");
        assert!(got[2].received < got[2].completed);
    }
}
