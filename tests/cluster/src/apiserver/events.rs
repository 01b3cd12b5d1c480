//! `events.k8s.io/v1` Events are stored as `core/v1` Events, as in
//! kube-apiserver, so events written by kube-runtime's Recorder (the new API)
//! show up in `kubectl describe` (which lists core Events by
//! `involvedObject.*` field selectors).

use serde_json::{Map, Value, json};

/// Field renames between the two APIs: (events.k8s.io/v1, core/v1).
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
];

fn rename(object: &Value, from_new: bool, api_version: &str) -> Value {
    let Some(map) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = RENAMES.iter().find_map(|(new, core)| {
            if from_new && k == new {
                Some(*core)
            } else if !from_new && k == core {
                Some(*new)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in `core/v1` form.
pub fn to_core(event: &Value) -> Value {
    let mut core = rename(event, true, "v1");
    // Older readers look at source.component and the count/last timestamp.
    if core.get("source").is_none()
        && let Some(controller) = core.get("reportingComponent").cloned()
    {
        core["source"] = json!({"component": controller});
    }
    if let Some(series) = core.get("series").cloned() {
        if let Some(count) = series.get("count") {
            core["count"] = count.clone();
        }
        if let Some(last) = series.get("lastObservedTime") {
            core["lastTimestamp"] = json!(last.as_str().map(|t| {
                t.split('.')
                    .next()
                    .unwrap_or(t)
                    .trim_end_matches('Z')
                    .to_string()
                    + "Z"
            }));
        }
    }
    core
}

/// A `core/v1` Event in `events.k8s.io/v1` form.
pub fn from_core(core: &Value) -> Value {
    let mut event = rename(core, false, "events.k8s.io/v1");
    if let Some(m) = event.as_object_mut() {
        m.remove("source");
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_convert_both_ways() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Certificate", "name": "c", "namespace": "ns", "uid": "u"},
            "note": "Issuing certificate as Secret does not exist", "reason": "Issuing", "type": "Normal",
            "reportingController": "certwright", "reportingInstance": "pod-1", "action": "Issue",
            "eventTime": "2026-01-01T00:00:00.000000Z", "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}});
        let core = to_core(&new);
        assert_eq!(core["involvedObject"]["uid"], "u");
        assert_eq!(
            core["message"],
            "Issuing certificate as Secret does not exist"
        );
        assert_eq!(core["source"]["component"], "certwright");
        assert_eq!(core["count"], 2);
        assert_eq!(core["lastTimestamp"], "2026-01-01T00:01:00Z");
        let back = from_core(&core);
        assert_eq!(back["regarding"], new["regarding"]);
        assert_eq!(back["note"], new["note"]);
        assert_eq!(back["reportingController"], "certwright");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }
}
