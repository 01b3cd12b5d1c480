//! Structural-schema validation of custom resources, as kube-apiserver does
//! it for a CRD version: unknown fields are pruned, `null` in a non-nullable
//! field is dropped, then types, `required`, `enum`, formats (`date-time`,
//! `byte`, `int32`, `int64`), length/size/range bounds, `pattern`,
//! `x-kubernetes-list-type` uniqueness, `anyOf`/`allOf`/`oneOf`/`not` and
//! finally the `x-kubernetes-validations` CEL rules (through kube-cel) are
//! checked. Errors read like the API server's:
//! `spec.privateKey.algorithm: Unsupported value: "DSA": supported values: "RSA", "ECDSA", "Ed25519"`.

use std::collections::HashSet;
use std::fmt;

use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};

/// Kind of a field error, named as Kubernetes' `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    Unsupported,
    Duplicate,
    TooLong,
    TooMany,
}

/// One field error: where, what kind, the offending value and why.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Field path such as `spec.acme.solvers[0].http01.ingress`.
    pub path: String,
    pub error_type: ErrorType,
    /// The value shown after "Invalid value:" (a type name for type errors).
    pub value: Value,
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        };
        match self.error_type {
            ErrorType::Required => write!(f, "{path}: Required value")?,
            ErrorType::Invalid => write!(f, "{path}: Invalid value: {}", self.value)?,
            ErrorType::Unsupported => write!(f, "{path}: Unsupported value: {}", self.value)?,
            ErrorType::Duplicate => write!(f, "{path}: Duplicate value: {}", self.value)?,
            ErrorType::TooLong => write!(f, "{path}: Too long")?,
            ErrorType::TooMany => write!(f, "{path}: Too many: {}", self.value)?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// What validating one object produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The object as the API server would store it: unknown fields pruned.
    pub object: Value,
    /// Paths of the unknown fields that were pruned.
    pub pruned: Vec<String>,
    /// Every validation error; empty means the object is valid.
    pub errors: Vec<FieldError>,
}

impl Outcome {
    /// All errors as one message, `; `-separated, the way a 422 Status lists them.
    pub fn message(&self) -> String {
        self.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Validates objects against one version's schema. Build once, use often:
/// CEL rules are compiled at construction.
pub struct Validator {
    schema: Value,
    cel: kube_cel::CompiledSchema,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// The validator of `version` of a CRD, or why there is none.
    pub fn for_crd(crd: &CustomResourceDefinition, version: &str) -> Result<Self, String> {
        let name = crd.metadata.name.as_deref().unwrap_or("<unnamed>");
        let v = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == version)
            .ok_or_else(|| format!("CRD {name} has no version {version}"))?;
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| format!("CRD {name} version {version} has no openAPIV3Schema"))?;
        let schema = serde_json::to_value(schema).map_err(|e| e.to_string())?;
        Self::from_schema(schema)
    }

    /// A validator for a bare openAPIV3Schema; fails if a CEL rule does not compile.
    pub fn from_schema(schema: Value) -> Result<Self, String> {
        let cel = kube_cel::compile_schema(&schema);
        if cel.has_errors() {
            let errors: Vec<String> = cel
                .compilation_errors()
                .iter()
                .map(|e| e.to_string())
                .collect();
            return Err(format!("CEL rules do not compile: {}", errors.join("; ")));
        }
        Ok(Self { schema, cel })
    }

    /// The openAPIV3Schema this validator checks against.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Validates a new object.
    pub fn validate(&self, object: &Value) -> Outcome {
        self.validate_update(object, None)
    }

    /// Validates an object replacing `old` (transition rules see `oldSelf`).
    pub fn validate_update(&self, object: &Value, old: Option<&Value>) -> Outcome {
        let mut outcome = Outcome {
            object: object.clone(),
            ..Outcome::default()
        };
        let mut walk = Walk {
            pruned: Vec::new(),
            errors: Vec::new(),
        };
        walk.node(&self.schema, &mut outcome.object, "", true);
        outcome.pruned = walk.pruned;
        outcome.errors = walk.errors;
        // CEL rules assume well-typed data, as the API server only runs them
        // on objects that passed the structural checks.
        if outcome.errors.is_empty() {
            let validator = kube_cel::Validator::new();
            if let Err(errors) = validator.validate_compiled(&self.cel, &outcome.object, old) {
                for e in errors.iter() {
                    outcome.errors.push(FieldError {
                        path: e.field_path.clone(),
                        error_type: ErrorType::Invalid,
                        value: Value::String("object".into()),
                        detail: e.message.clone(),
                    });
                }
            }
        }
        outcome
    }
}

struct Walk {
    pruned: Vec<String>,
    errors: Vec<FieldError>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

impl Walk {
    fn invalid(&mut self, path: &str, value: Value, detail: String) {
        self.errors.push(FieldError {
            path: path.to_string(),
            error_type: ErrorType::Invalid,
            value,
            detail,
        });
    }

    /// Validates `value` against `schema`, pruning unknown fields in place.
    /// `root` marks the top of an object (or an embedded resource), where
    /// apiVersion, kind and metadata are always kept.
    fn node(&mut self, schema: &Value, value: &mut Value, path: &str, root: bool) {
        let Some(schema) = schema.as_object() else {
            return;
        };
        if value.is_null() {
            if !flag(schema, "nullable") {
                self.invalid(
                    path,
                    Value::String("null".into()),
                    format!("{path} in body must not be null"),
                );
            }
            return;
        }
        if flag(schema, "x-kubernetes-int-or-string") {
            if !(value.is_string() || type_name(value) == "integer") {
                let t = type_name(value);
                self.invalid(
                    path,
                    Value::String(t.into()),
                    format!("{path} in body must be of type int-or-string: \"{t}\""),
                );
            }
            return;
        }
        let declared = schema.get("type").and_then(Value::as_str);
        if let Some(expected) = declared {
            let actual = type_name(value);
            let matches = actual == expected || (expected == "number" && actual == "integer");
            if !matches {
                self.invalid(
                    path,
                    Value::String(actual.into()),
                    format!("{path} in body must be of type {expected}: \"{actual}\""),
                );
                return;
            }
        }
        match value {
            Value::Object(map) => self.object(schema, map, path, root),
            Value::Array(items) => self.array(schema, items, path),
            Value::String(s) => self.string(schema, s, path),
            Value::Number(_) => self.number(schema, value, path),
            _ => {}
        }
        self.enumeration(schema, value, path);
        self.combinators(schema, value, path);
    }

    fn object(
        &mut self,
        schema: &Map<String, Value>,
        map: &mut Map<String, Value>,
        path: &str,
        root: bool,
    ) {
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
        let embedded = flag(schema, "x-kubernetes-embedded-resource");
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let path_k = child(path, &key);
            let keep_meta =
                (root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
            let sub = props.and_then(|p| p.get(&key)).or(match additional {
                Some(Value::Object(_)) => additional,
                _ => None,
            });
            match sub {
                Some(sub) => {
                    let is_null = map.get(&key).is_some_and(Value::is_null);
                    let nullable = sub
                        .get("nullable")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    if is_null && !nullable {
                        // Kubernetes drops nulls of non-nullable fields before validation.
                        map.remove(&key);
                        continue;
                    }
                    if let Some(v) = map.get_mut(&key) {
                        self.node(sub, v, &path_k, false);
                    }
                }
                None if keep_meta => {
                    if key == "metadata" && !map.get(&key).is_some_and(Value::is_object) {
                        self.invalid(
                            &path_k,
                            Value::String("metadata".into()),
                            "must be an object".into(),
                        );
                    }
                }
                None if preserve || additional == Some(&Value::Bool(true)) => {}
                None => {
                    map.remove(&key);
                    self.pruned.push(path_k);
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    self.errors.push(FieldError {
                        path: child(path, name),
                        error_type: ErrorType::Required,
                        value: Value::Null,
                        detail: String::new(),
                    });
                }
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && map.len() as u64 > max
        {
            self.errors.push(FieldError {
                path: path.to_string(),
                error_type: ErrorType::TooMany,
                value: Value::from(map.len()),
                detail: format!("must have at most {max} items"),
            });
        }
    }

    fn array(&mut self, schema: &Map<String, Value>, items: &mut [Value], path: &str) {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter_mut().enumerate() {
                self.node(
                    item_schema,
                    item,
                    &format!("{path}[{i}]"),
                    flag(
                        item_schema.as_object().unwrap_or(&Map::new()),
                        "x-kubernetes-embedded-resource",
                    ),
                );
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            self.errors.push(FieldError {
                path: path.to_string(),
                error_type: ErrorType::TooMany,
                value: Value::from(items.len()),
                detail: format!("must have at most {max} items"),
            });
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            self.invalid(
                path,
                Value::from(items.len()),
                format!("{path} in body should have at least {min} items"),
            );
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    if !seen.insert(item.to_string()) {
                        self.duplicate(&format!("{path}[{i}]"), item.clone());
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect();
                    if !seen.insert(Value::Object(key.clone()).to_string()) {
                        self.duplicate(&format!("{path}[{i}]"), Value::Object(key));
                    }
                }
            }
            _ => {}
        }
    }

    fn duplicate(&mut self, path: &str, value: Value) {
        self.errors.push(FieldError {
            path: path.to_string(),
            error_type: ErrorType::Duplicate,
            value,
            detail: String::new(),
        });
    }

    fn string(&mut self, schema: &Map<String, Value>, s: &str, path: &str) {
        let chars = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            self.errors.push(FieldError {
                path: path.to_string(),
                error_type: ErrorType::TooLong,
                value: Value::String(s.into()),
                detail: format!("may not be more than {max} characters"),
            });
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            self.invalid(
                path,
                Value::String(s.into()),
                format!("{path} in body should be at least {min} chars long"),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => self.invalid(
                    path,
                    Value::String(s.into()),
                    format!("{path} in body should match '{pattern}'"),
                ),
                Ok(_) => {}
                Err(e) => self.invalid(
                    path,
                    Value::String(s.into()),
                    format!("schema pattern does not compile: {e}"),
                ),
            }
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date-time") if !is_rfc3339(s) => self.invalid(
                path,
                Value::String(s.into()),
                format!("{path} in body must be of type date-time: \"{s}\""),
            ),
            Some("byte") if base64::engine::general_purpose::STANDARD.decode(s).is_err() => self
                .invalid(
                    path,
                    Value::String(s.into()),
                    format!("{path} in body must be of type byte: \"{s}\""),
                ),
            _ => {}
        }
    }

    fn number(&mut self, schema: &Map<String, Value>, value: &Value, path: &str) {
        let Some(n) = value.as_f64() else { return };
        match schema.get("format").and_then(Value::as_str) {
            Some("int32") if value.as_i64().is_none_or(|i| i32::try_from(i).is_err()) => self
                .invalid(
                    path,
                    value.clone(),
                    format!("{path} in body must be of type int32: \"{value}\""),
                ),
            Some("int64") if value.as_i64().is_none() => self.invalid(
                path,
                value.clone(),
                format!("{path} in body must be of type int64: \"{value}\""),
            ),
            _ => {}
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMinimum");
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    path,
                    value.clone(),
                    format!("{path} in body should be {op} {min}"),
                );
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(schema, "exclusiveMaximum");
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    path,
                    value.clone(),
                    format!("{path} in body should be {op} {max}"),
                );
            }
        }
    }

    fn enumeration(&mut self, schema: &Map<String, Value>, value: &Value, path: &str) {
        let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
            return;
        };
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            self.errors.push(FieldError {
                path: path.to_string(),
                error_type: ErrorType::Unsupported,
                value: value.clone(),
                detail: format!("supported values: {}", list.join(", ")),
            });
        }
    }

    /// `allOf`, `anyOf`, `oneOf` and `not` constrain values only (structural
    /// schemas forbid them to add fields), so they never prune.
    fn combinators(&mut self, schema: &Map<String, Value>, value: &Value, path: &str) {
        let passes = |sub: &Value| {
            let mut probe = Walk {
                pruned: Vec::new(),
                errors: Vec::new(),
            };
            let mut copy = value.clone();
            probe.node(sub, &mut copy, path, false);
            probe.errors.is_empty()
        };
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                let mut copy = value.clone();
                let mut probe = Walk {
                    pruned: Vec::new(),
                    errors: Vec::new(),
                };
                probe.node(sub, &mut copy, path, false);
                self.errors.extend(probe.errors);
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
            && !any.iter().any(passes)
        {
            self.invalid(
                path,
                value.clone(),
                format!("{path} in body must match at least one schema in anyOf"),
            );
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
            && one.iter().filter(|s| passes(s)).count() != 1
        {
            self.invalid(
                path,
                value.clone(),
                format!("{path} in body must match exactly one schema in oneOf"),
            );
        }
        if let Some(not) = schema.get("not")
            && passes(not)
        {
            self.invalid(
                path,
                value.clone(),
                format!("{path} in body must not match the schema in not"),
            );
        }
    }
}

/// RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return false;
    }
    if !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator(schema: Value) -> Validator {
        Validator::from_schema(schema).expect("schema compiles")
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_root_metadata() {
        let v = validator(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
        );
        let out = v.validate(&json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"a": "1", "b": 2}, "extra": true}));
        assert!(out.errors.is_empty(), "{}", out.message());
        // Object keys are visited in sorted order.
        assert_eq!(out.pruned, vec!["extra".to_string(), "spec.b".to_string()]);
        assert_eq!(
            out.object,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"a": "1"}})
        );
    }

    #[test]
    fn preserve_unknown_fields_and_additional_properties_keep_data() {
        let v = validator(json!({"type": "object", "properties": {
            "free": {"x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}));
        let out =
            v.validate(&json!({"free": {"any": [1, {"x": null}]}, "labels": {"a": "b", "c": 1}}));
        assert_eq!(out.pruned, Vec::<String>::new());
        assert_eq!(
            out.message(),
            "labels.c: Invalid value: \"integer\": labels.c in body must be of type string: \"integer\""
        );
    }

    #[test]
    fn reports_required_type_enum_and_bounds_like_the_api_server() {
        let v = validator(
            json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 3},
            "list": {"type": "array", "items": {"type": "string"}},
            "algo": {"type": "string", "enum": ["RSA", "ECDSA"]},
            "pct": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 99},
            "when": {"type": "string", "format": "date-time"},
            "blob": {"type": "string", "format": "byte"}}}),
        );
        let out = v.validate(
            &json!({"list": "a", "algo": "DSA", "pct": 100, "when": "yesterday", "blob": "%%"}),
        );
        let messages: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                "algo: Unsupported value: \"DSA\": supported values: \"RSA\", \"ECDSA\"",
                "blob: Invalid value: \"%%\": blob in body must be of type byte: \"%%\"",
                "list: Invalid value: \"string\": list in body must be of type array: \"string\"",
                "pct: Invalid value: 100: pct in body should be less than or equal to 99",
                "when: Invalid value: \"yesterday\": when in body must be of type date-time: \"yesterday\"",
                "name: Required value",
            ]
        );
        let long = v.validate(&json!({"name": "abcd"}));
        assert_eq!(
            long.message(),
            "name: Too long: may not be more than 3 characters"
        );
    }

    #[test]
    fn nulls_are_dropped_unless_nullable() {
        let v = validator(
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}}),
        );
        let out = v.validate(&json!({"a": null, "b": null}));
        assert!(out.errors.is_empty(), "{}", out.message());
        assert_eq!(out.object, json!({"b": null}));
    }

    #[test]
    fn list_map_keys_must_be_unique() {
        let v = validator(
            json!({"type": "object", "properties": {"conditions": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}),
        );
        let out = v.validate(&json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]}));
        assert_eq!(
            out.message(),
            "conditions[1]: Duplicate value: {\"type\":\"Ready\"}"
        );
    }

    #[test]
    fn int_or_string_accepts_both_and_nothing_else() {
        let v = validator(
            json!({"type": "object", "properties": {"q": {"x-kubernetes-int-or-string": true}}}),
        );
        assert!(v.validate(&json!({"q": 5})).errors.is_empty());
        assert!(v.validate(&json!({"q": "100m"})).errors.is_empty());
        assert_eq!(v.validate(&json!({"q": true})).errors.len(), 1);
    }

    #[test]
    fn cel_rules_run_after_structural_checks() {
        let v = validator(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "!(has(self.a) && has(self.b))", "message": "a and b are mutually exclusive"}]}}}),
        );
        assert!(v.validate(&json!({"spec": {"a": "x"}})).errors.is_empty());
        let out = v.validate(&json!({"spec": {"a": "x", "b": "y"}}));
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].detail, "a and b are mutually exclusive");
        assert_eq!(out.errors[0].path, "spec");
    }

    #[test]
    fn uncompilable_cel_is_refused_up_front() {
        let err = Validator::from_schema(json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==", "message": "m"}]}))
            .expect_err("rule does not parse");
        assert!(err.contains("CEL rules do not compile"), "{err}");
    }

    #[test]
    fn rfc3339_forms() {
        for ok in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123Z",
            "2024-01-02T03:04:05+02:00",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "yesterday",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
