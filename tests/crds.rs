//! The CRDs as users and tools see them: names, scopes, printer columns and
//! list semantics as cert-manager v1.21 has them; accepted by
//! `kubernetes-validate --strict`; identical in the Helm chart.

use std::path::PathBuf;
use std::process::Command;

use certwright::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use serde::Deserialize;
use serde_json::Value;

mod common;
use common::{chart_dir, helm_template, tool};

fn crd(kind: &str) -> CustomResourceDefinition {
    api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

/// (name, jsonPath, priority) of each printer column.
fn columns(kind: &str) -> Vec<(String, String, i32)> {
    crd(kind).spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.json_path, c.priority.unwrap_or(0)))
        .collect()
}

fn cols(list: &[(&str, &str, i32)]) -> Vec<(String, String, i32)> {
    list.iter()
        .map(|(n, p, pr)| (n.to_string(), p.to_string(), *pr))
        .collect()
}

const READY: &str = ".status.conditions[?(@.type == \"Ready\")].status";
const READY_MESSAGE: &str = ".status.conditions[?(@.type == \"Ready\")].message";
const AGE: &str = ".metadata.creationTimestamp";

#[test]
fn names_scopes_and_short_names_match_cert_manager() {
    let expected = [
        (
            "Certificate",
            "certificates.cert-manager.io",
            "Namespaced",
            vec!["cert", "certs"],
            vec!["cert-manager"],
        ),
        (
            "CertificateRequest",
            "certificaterequests.cert-manager.io",
            "Namespaced",
            vec!["cr", "crs"],
            vec!["cert-manager"],
        ),
        (
            "Issuer",
            "issuers.cert-manager.io",
            "Namespaced",
            vec!["iss"],
            vec!["cert-manager"],
        ),
        (
            "ClusterIssuer",
            "clusterissuers.cert-manager.io",
            "Cluster",
            vec!["ciss"],
            vec!["cert-manager"],
        ),
        (
            "Order",
            "orders.acme.cert-manager.io",
            "Namespaced",
            vec![],
            vec!["cert-manager", "cert-manager-acme"],
        ),
        (
            "Challenge",
            "challenges.acme.cert-manager.io",
            "Namespaced",
            vec![],
            vec!["cert-manager", "cert-manager-acme"],
        ),
    ];
    assert_eq!(api::crds().len(), expected.len());
    for (kind, name, scope, short, categories) in expected {
        let c = crd(kind);
        assert_eq!(c.metadata.name.as_deref(), Some(name));
        assert_eq!(c.spec.scope, scope, "{kind}");
        assert_eq!(
            c.spec.names.short_names.clone().unwrap_or_default(),
            short,
            "{kind}"
        );
        assert_eq!(
            c.spec.names.categories.clone().unwrap_or_default(),
            categories,
            "{kind}"
        );
        let versions: Vec<_> = c
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(versions, [("v1", true, true)], "{kind}");
        let status = c.spec.versions[0]
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref());
        assert!(status.is_some(), "{kind} has a status subresource");
    }
}

#[test]
fn printer_columns_match_cert_manager() {
    assert_eq!(
        columns("Certificate"),
        cols(&[
            ("Ready", READY, 0),
            ("Secret", ".spec.secretName", 0),
            ("Issuer", ".spec.issuerRef.name", 1),
            ("Status", READY_MESSAGE, 1),
            ("Age", AGE, 0)
        ])
    );
    assert_eq!(
        columns("CertificateRequest"),
        cols(&[
            (
                "Approved",
                ".status.conditions[?(@.type == \"Approved\")].status",
                0
            ),
            (
                "Denied",
                ".status.conditions[?(@.type == \"Denied\")].status",
                0
            ),
            ("Ready", READY, 0),
            ("Issuer", ".spec.issuerRef.name", 0),
            ("Requester", ".spec.username", 0),
            ("Status", READY_MESSAGE, 1),
            ("Age", AGE, 0),
        ])
    );
    for kind in ["Issuer", "ClusterIssuer"] {
        assert_eq!(
            columns(kind),
            cols(&[
                ("Ready", READY, 0),
                ("Status", READY_MESSAGE, 1),
                ("Age", AGE, 0)
            ]),
            "{kind}"
        );
    }
    assert_eq!(
        columns("Order"),
        cols(&[
            ("State", ".status.state", 0),
            ("Issuer", ".spec.issuerRef.name", 1),
            ("Reason", ".status.reason", 1),
            ("Age", AGE, 0)
        ])
    );
    assert_eq!(
        columns("Challenge"),
        cols(&[
            ("State", ".status.state", 0),
            ("Domain", ".spec.dnsName", 0),
            ("Reason", ".status.reason", 1),
            ("Age", AGE, 0)
        ])
    );
}

fn schema(kind: &str) -> JSONSchemaProps {
    crd(kind).spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("schema")
}

fn at<'a>(mut s: &'a JSONSchemaProps, path: &[&str]) -> &'a JSONSchemaProps {
    for p in path {
        s = s
            .properties
            .as_ref()
            .and_then(|m| m.get(*p))
            .unwrap_or_else(|| panic!("no property {p}"));
    }
    s
}

#[test]
fn conditions_are_list_maps_keyed_by_type() {
    for kind in [
        "Certificate",
        "CertificateRequest",
        "Issuer",
        "ClusterIssuer",
        "Challenge",
    ] {
        let s = schema(kind);
        let conditions = at(&s, &["status", "conditions"]);
        assert_eq!(
            conditions.x_kubernetes_list_type.as_deref(),
            Some("map"),
            "{kind}"
        );
        assert_eq!(
            conditions
                .x_kubernetes_list_map_keys
                .clone()
                .unwrap_or_default(),
            ["type"],
            "{kind}"
        );
    }
}

#[test]
fn schemas_are_structural_without_nullable_or_free_form_fields() {
    fn walk(v: &Value, path: &str, free: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        assert!(map.get("nullable").is_none(), "{path} is nullable");
        for key in ["allOf", "oneOf", "$ref"] {
            assert!(map.get(key).is_none(), "{path} uses {key}");
        }
        // anyOf only over value checks (an address is IPv4 or IPv6), never
        // over types, which a structural schema cannot have.
        if let Some(branches) = map.get("anyOf") {
            let value_checks = ["format", "pattern", "maxLength", "minLength"];
            let ok = branches.as_array().is_some_and(|b| {
                b.iter().all(|branch| {
                    branch
                        .as_object()
                        .is_some_and(|o| o.keys().all(|k| value_checks.contains(&k.as_str())))
                })
            });
            assert!(ok, "{path} uses anyOf over more than value checks");
        }
        if map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            free.push(path.to_string());
        }
        if let Some(props) = map.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                walk(sub, &format!("{path}.{k}"), free);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(sub) = map.get(key) {
                walk(sub, &format!("{path}[]"), free);
            }
        }
    }
    for c in api::crds() {
        let s = serde_json::to_value(&c.spec.versions[0].schema).expect("json");
        let mut free = Vec::new();
        walk(&s["openAPIV3Schema"], &c.spec.names.kind, &mut free);
        // The only free-form field is the DNS-01 webhook's solver config, as in cert-manager.
        for path in &free {
            assert!(
                path.ends_with(".dns01.webhook.config"),
                "{path} keeps unknown fields"
            );
        }
    }
}

fn certwright(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certwright"))
        .args(args)
        .output()
        .expect("run certwright");
    assert!(
        out.status.success(),
        "certwright {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn crds_command_prints_the_crds_as_yaml_and_json() {
    let yaml = certwright(&["crds"]);
    let docs: Vec<CustomResourceDefinition> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| CustomResourceDefinition::deserialize(d).expect("a CRD"))
        .collect();
    assert_eq!(docs, api::crds());
    let json: Value = serde_json::from_str(&certwright(&["crds", "-o", "json"])).expect("json");
    assert_eq!(json["kind"], "List");
    assert_eq!(
        json["items"],
        serde_json::to_value(api::crds()).expect("json")
    );
}

/// A tool the test suite needs; `scripts/install-tools` installs all of them.
/// `kubernetes-validate --strict` (Kubernetes 1.33) on `yaml` (named
/// `what` in the temporary file): whether it passed, and what it said.
fn kubernetes_validate(what: &str, yaml: &str) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("certwright-{what}-{}.yaml", std::process::id()));
    std::fs::write(&file, yaml).expect("write the manifests");
    let out = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let _ = std::fs::remove_file(&file);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn crds_pass_kubernetes_validate_strict() {
    let (passed, text) = kubernetes_validate("crds", &certwright(&["crds"]));
    assert!(passed, "kubernetes-validate failed:\n{text}");
    assert_eq!(
        text.matches("passed for resource customresourcedefinition/")
            .count(),
        6,
        "{text}"
    );
}

/// The chart's template for one CRD: the `certwright crds` YAML, behind
/// `crds.enabled`, with `crds.keep` adding `helm.sh/resource-policy: keep`.
fn chart_template(crd: &CustomResourceDefinition) -> String {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let yaml = serde_yaml_ng::to_string(crd).expect("yaml");
    let meta = format!("metadata:\n  name: {name}\n");
    assert!(
        yaml.contains(&meta) && !yaml.contains("{{"),
        "unexpected CRD YAML shape for {name}"
    );
    let templated_meta = format!(
        "metadata:\n  name: {name}\n  {{{{- if .Values.crds.keep }}}}\n  annotations:\n    helm.sh/resource-policy: keep\n  {{{{- end }}}}\n  labels:\n    {{{{- include \"certwright.labels\" . | nindent 4 }}}}\n"
    );
    format!(
        "{{{{- if .Values.crds.enabled }}}}\n# Generated from `certwright crds`; do not edit.\n# Regenerate with: UPDATE_CHART=1 cargo test --test crds\n{}{{{{- end }}}}\n",
        yaml.replacen(&meta, &templated_meta, 1)
    )
}

#[test]
fn chart_crds_match_the_binary() {
    let dir = chart_dir().join("templates/crds");
    let update = std::env::var_os("UPDATE_CHART").is_some();
    let mut expected_files = Vec::new();
    for c in api::crds() {
        let file = dir.join(format!("{}.yaml", c.spec.names.plural));
        let want = chart_template(&c);
        if update {
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(&file, &want).expect("write chart CRD");
        }
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == want,
            "{} differs from `certwright crds`: regenerate with UPDATE_CHART=1 cargo test --test crds",
            file.display()
        );
        expected_files.push(file);
    }
    let mut present: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "stray files in {}", dir.display());
}

#[test]
fn helm_renders_the_same_crds_and_honours_the_values() {
    let rendered: Vec<Value> = helm_template(&[])
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(rendered.len(), 6);
    for doc in &rendered {
        assert_eq!(
            doc["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/name"],
            "certwright"
        );
        let mut stripped = doc.clone();
        let meta = stripped["metadata"].as_object_mut().expect("metadata");
        meta.remove("annotations");
        meta.remove("labels");
        let name = doc["metadata"]["name"].as_str().expect("name");
        let generated = api::crds()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .expect("known CRD");
        assert_eq!(
            stripped,
            serde_json::to_value(generated).expect("json"),
            "{name}"
        );
    }
    let not_kept = helm_template(&["--set", "crds.keep=false"]);
    assert!(
        not_kept
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .all(|d| d["metadata"].get("annotations").is_none())
    );
    let disabled = helm_template(&["--set", "crds.enabled=false"]);
    assert!(
        disabled
            .iter()
            .all(|d| d["kind"] != "CustomResourceDefinition")
    );
}

#[test]
fn helm_lint_passes() {
    let out = Command::new(tool("helm"))
        .arg("lint")
        .arg(chart_dir())
        .args(["--strict"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_built_in_object_the_chart_renders_passes_kubernetes_validate_strict() {
    let objects = helm_template(&[
        "--set",
        "crds.enabled=false",
        "--set",
        "prometheus.dashboard.enabled=true",
        "--set",
        "sidecar.rbac.enabled=true",
        "--set",
        "sidecar.rbac.serviceAccounts[0].name=traefik",
        "--set",
        "sidecar.rbac.serviceAccounts[0].namespace=traefik",
        "--set",
        "replicaCount=2",
        "--set",
        "global.logLevel=5",
        "--set",
        "https_proxy=http://proxy.internal:3128",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).expect("yaml")))
        .collect();
    let (passed, said) = kubernetes_validate("chart", &text);
    assert!(passed, "kubernetes-validate failed:\n{said}");
    assert_eq!(
        said.matches("passed for resource").count(),
        objects.len(),
        "{said}"
    );
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.contains(&"-vv") && args.contains(&"--leader-elect=true"),
        "{args:?}"
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
}

/// `helm template`'s error for `args`, or None when it renders.
fn helm_refuses(args: &[&str]) -> Option<String> {
    let out = Command::new(tool("helm"))
        .args(["template", "certwright"])
        .arg(chart_dir())
        .args(args)
        .output()
        .expect("run helm");
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn wrong_values_fail_with_a_clear_message() {
    let typed =
        helm_refuses(&["--set", "replicaCount=two"]).expect("a string replica count is refused");
    assert!(
        typed.contains("replicaCount") && typed.contains("integer"),
        "{typed}"
    );
    let typo = helm_refuses(&["--set", "replicaCoun=2"]).expect("an unknown key is refused");
    assert!(typo.contains("replicaCoun"), "{typo}");
    let mode =
        helm_refuses(&["--set", "http01.solverMode=dns"]).expect("an unknown mode is refused");
    assert!(mode.contains("shared"), "{mode}");
    let both = helm_refuses(&[
        "--set",
        "prometheus.servicemonitor.enabled=true",
        "--set",
        "prometheus.podmonitor.enabled=true",
    ])
    .expect("both monitors are refused");
    assert!(both.contains("choose one"), "{both}");
    assert_eq!(
        helm_refuses(&["--set", "prometheus.podmonitor.enabled=true"]),
        None
    );
    let monitor = helm_template(&[
        "--set",
        "crds.enabled=false",
        "--set",
        "prometheus.servicemonitor.enabled=true",
    ]);
    let sm = monitor
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    let service = monitor
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "certwright-metrics")
        .expect("the metrics Service");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the metrics Service by {k}"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
}
