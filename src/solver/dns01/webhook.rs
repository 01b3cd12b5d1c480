//! cert-manager's DNS-01 webhook solvers: aggregated API servers that take
//! a `ChallengePayload` (Present or CleanUp) by POST to
//! `/apis/<groupName>/v1alpha1/<solverName>` through the Kubernetes API
//! server, and answer with the same object carrying `response.success`
//! (or `response.status.message` saying why not). The request is built as
//! cert-manager builds it, so existing webhook deployments work unchanged.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::dns01::WebhookProvider;

/// The API version of the payload, whatever group the webhook serves.
const PAYLOAD_API_VERSION: &str = "webhook.acme.cert-manager.io/v1alpha1";

/// One webhook solver and what cert-manager tells it about the Challenge.
pub(super) struct Webhook {
    pub provider: WebhookProvider,
    /// The issuer's namespace for Secrets (the Challenge's, or the cluster
    /// resource namespace for a ClusterIssuer).
    pub resource_namespace: String,
    pub dns_name: String,
    pub fqdn: String,
    pub zone: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Present,
    CleanUp,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Present => "Present",
            Self::CleanUp => "CleanUp",
        }
    }
}

impl Webhook {
    /// The request path: the solver as a resource of the webhook's group.
    fn path(&self) -> String {
        format!(
            "/apis/{}/v1alpha1/{}",
            self.provider.group_name, self.provider.solver_name
        )
    }

    /// The ChallengePayload cert-manager sends: the names fully qualified,
    /// only the solver's own `config` passed on.
    fn payload(&self, action: Action, key: &str) -> Value {
        let mut request = json!({
            "uid": "",
            "action": action.name(),
            "type": "dns-01",
            "dnsName": self.dns_name,
            "key": key,
            "resourceNamespace": self.resource_namespace,
            "resolvedFQDN": fully_qualified(&self.fqdn),
            "resolvedZone": fully_qualified(&self.zone),
            "allowAmbientCredentials": false,
        });
        if let Some(config) = &self.provider.config {
            request["config"] = config.clone();
        }
        json!({
            "apiVersion": PAYLOAD_API_VERSION,
            "kind": "ChallengePayload",
            "request": request,
        })
    }

    /// Calls the solver; Err says, in words, why it did not succeed.
    pub(super) async fn call(
        &self,
        client: &kube::Client,
        action: Action,
        key: &str,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(&self.payload(action, key)).map_err(|e| e.to_string())?;
        let request = hyper::Request::post(self.path())
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| e.to_string())?;
        let answer: Payload = client.request(request).await.map_err(|e| self.refused(e))?;
        verdict(&self.provider, action, answer)
    }

    /// What a refusal by the API server (not by the solver) means.
    fn refused(&self, e: kube::Error) -> String {
        let (group, solver) = (&self.provider.group_name, &self.provider.solver_name);
        let apiservice = format!("kubectl get apiservice v1alpha1.{group}");
        match e {
            kube::Error::Api(s) if s.code == 404 => format!(
                "no solver {solver:?} is served in {group}/v1alpha1: is the webhook that provides it installed, its APIService registered, and solverName right? ({apiservice}; {})",
                s.message
            ),
            kube::Error::Api(s) if s.code == 503 => format!(
                "the webhook serving {group} is not available: {} ({apiservice})",
                s.message
            ),
            kube::Error::Api(s) if s.code == 403 => format!(
                "{} (grant certwright's ServiceAccount create on {solver} in API group {group})",
                s.message
            ),
            kube::Error::Api(s) => format!(
                "the webhook {group}/{solver} refused the request ({}): {}",
                s.code, s.message
            ),
            other => format!("calling the webhook {group}/{solver}: {other}"),
        }
    }
}

/// The webhook's answer.
#[derive(Deserialize, Debug, Default)]
struct Payload {
    response: Option<Response>,
}

#[derive(Deserialize, Debug, Default)]
struct Response {
    #[serde(default)]
    success: bool,
    status: Option<Status>,
}

#[derive(Deserialize, Debug, Default)]
struct Status {
    #[serde(default)]
    message: String,
}

fn verdict(provider: &WebhookProvider, action: Action, answer: Payload) -> Result<(), String> {
    let name = format!("{}/{}", provider.group_name, provider.solver_name);
    let Some(response) = answer.response else {
        return Err(format!(
            "the webhook {name} answered {} without a response",
            action.name()
        ));
    };
    if response.success {
        return Ok(());
    }
    match response.status.map(|s| s.message).filter(|m| !m.is_empty()) {
        Some(message) => Err(message),
        None => Err(format!(
            "the webhook {name} did not succeed ({}) and gave no message",
            action.name()
        )),
    }
}

fn fully_qualified(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Webhook {
        Webhook {
            provider: WebhookProvider {
                group_name: "acme.example.com".into(),
                solver_name: "bind".into(),
                config: Some(json!({"zone": "example.com"})),
            },
            resource_namespace: "team".into(),
            dns_name: "*.example.com".into(),
            fqdn: "_acme-challenge.example.com".into(),
            zone: "example.com".into(),
        }
    }

    #[test]
    fn payload_is_the_one_cert_manager_sends() {
        let hook = hook();
        assert_eq!(hook.path(), "/apis/acme.example.com/v1alpha1/bind");
        let p = hook.payload(Action::CleanUp, "value");
        assert_eq!(p["kind"], "ChallengePayload");
        assert_eq!(p["apiVersion"], PAYLOAD_API_VERSION);
        let r = &p["request"];
        assert_eq!(r["action"], "CleanUp");
        assert_eq!(r["type"], "dns-01");
        assert_eq!(r["dnsName"], "*.example.com");
        assert_eq!(r["key"], "value");
        assert_eq!(r["resourceNamespace"], "team");
        assert_eq!(r["resolvedFQDN"], "_acme-challenge.example.com.");
        assert_eq!(r["resolvedZone"], "example.com.");
        assert_eq!(r["allowAmbientCredentials"], false);
        // Only the solver's own config, not groupName and solverName.
        assert_eq!(r["config"], json!({"zone": "example.com"}));
    }

    #[test]
    fn verdicts() {
        let provider = hook().provider;
        let parse = |v: Value| serde_json::from_value::<Payload>(v).unwrap();
        assert_eq!(
            verdict(
                &provider,
                Action::Present,
                parse(json!({"response": {"uid": "", "success": true}}))
            ),
            Ok(())
        );
        assert_eq!(
            verdict(
                &provider,
                Action::Present,
                parse(
                    json!({"response": {"success": false, "status": {"status": "Failed", "message": "zone not managed"}}})
                )
            ),
            Err("zone not managed".into())
        );
        let silent = verdict(
            &provider,
            Action::CleanUp,
            parse(json!({"response": {"success": false}})),
        )
        .unwrap_err();
        assert!(silent.contains("acme.example.com/bind") && silent.contains("CleanUp"));
        assert!(
            verdict(&provider, Action::Present, parse(json!({})))
                .unwrap_err()
                .contains("without a response")
        );
    }
}
