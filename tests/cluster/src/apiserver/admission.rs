//! Admission of custom resources: schema validation, pruning and 422s.

use serde_json::{Value, json};

use super::error::ApiError;
use super::registry::ResourceType;
use super::store::{meta, with_api_version};

/// Schema validation and pruning for custom resources; 422 on errors.
pub(super) fn validate(
    rt: &ResourceType,
    object: Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let Some(validator) = &rt.validator else {
        return Ok(object);
    };
    let mut full = object;
    full["apiVersion"] = json!(rt.api_version());
    full["kind"] = json!(rt.kind);
    let old_full = old.map(|o| with_api_version(o, rt));
    let outcome = validator.validate_update(&full, old_full.as_ref());
    if outcome.errors.is_empty() {
        return Ok(outcome.object);
    }
    let name = meta(&full)["name"].as_str().unwrap_or("").to_string();
    let causes = outcome
        .errors
        .iter()
        .map(|e| {
            let reason = match e.error_type {
                crate::schema::ErrorType::Required => "FieldValueRequired",
                crate::schema::ErrorType::Unsupported => "FieldValueNotSupported",
                crate::schema::ErrorType::Duplicate => "FieldValueDuplicate",
                crate::schema::ErrorType::TooLong => "FieldValueTooLong",
                crate::schema::ErrorType::TooMany => "FieldValueTooMany",
                crate::schema::ErrorType::Invalid => "FieldValueInvalid",
            };
            (reason.to_string(), e.path.clone(), e.to_string())
        })
        .collect();
    Err(ApiError::invalid(&rt.kind, &name, &rt.group, causes))
}
