//! Test hooks: a request log (to count API calls per certificate and derive
//! RBAC rules) and fault injection (fail the next N matching requests with a
//! status and optional Retry-After, add latency).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// One served request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub time: SystemTime,
    pub user_agent: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub status: u16,
}

impl RequestRecord {
    /// True for verbs that change state.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A rule failing matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP method to match (`GET`, `PATCH`...), any when `None`.
    pub method: Option<String>,
    /// Substring the request path must contain.
    pub path_contains: String,
    /// How many more requests to fail.
    pub remaining: usize,
    pub status: u16,
    pub retry_after: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Hooks {
    log: Mutex<Vec<RequestRecord>>,
    faults: Mutex<Vec<Fault>>,
    latency: Mutex<Duration>,
}

impl Hooks {
    pub fn record(&self, record: RequestRecord) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear_requests(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn add_fault(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fault);
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    pub fn latency(&self) -> Duration {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault to answer this request with, if one matches (and is used up by it).
    pub fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let hit = faults.iter_mut().find(|f| {
            f.remaining > 0
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.contains(&f.path_contains)
        })?;
        hit.remaining -= 1;
        let fault = hit.clone();
        faults.retain(|f| f.remaining > 0);
        Some(fault)
    }
}
