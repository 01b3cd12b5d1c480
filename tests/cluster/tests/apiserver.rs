//! The emulator's semantics, each exercised through the real `kube` client.

use std::time::Duration;

use certwright_testcluster::apiserver::{ApiServer, Options};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

async fn server() -> (ApiServer, kube::Client) {
    let server = ApiServer::start(Options::default())
        .await
        .expect("emulator starts");
    let client = server.client();
    (server, client)
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .expect("configmap")
}

fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_get_list_with_generate_name_and_conflicts() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(&PostParams::default(), &cm("a", json!({"app": "web"})))
        .await
        .expect("create");
    let uid = a.metadata.uid.clone().expect("uid");
    assert!(a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.generation, Some(1));
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("a", json!({})))
                .await
                .expect_err("exists")
        ),
        409
    );
    let mut generated = cm("", json!({"app": "db"}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = api
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    let gname = g.metadata.name.clone().expect("name");
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");
    assert_eq!(api.get("a").await.expect("get").metadata.uid, Some(uid));
    assert_eq!(code(api.get("missing").await.expect_err("404")), 404);
    let rv_a: u64 = a
        .metadata
        .resource_version
        .clone()
        .expect("rv")
        .parse()
        .expect("number");
    let rv_g: u64 = g
        .metadata
        .resource_version
        .clone()
        .expect("rv")
        .parse()
        .expect("number");
    assert!(rv_g > rv_a);
    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 2);
    let list_rv: u64 = list
        .metadata
        .resource_version
        .expect("list rv")
        .parse()
        .expect("number");
    assert!(list_rv >= rv_g);
}

#[tokio::test]
async fn label_field_selectors_and_paging() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, app) in [("a", "web"), ("b", "db"), ("c", "web")] {
        api.create(
            &PostParams::default(),
            &cm(name, json!({"app": app, "tier": name})),
        )
        .await
        .expect("create");
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=web"))
                .await
                .expect("list")
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app notin (web)"))
                .await
                .expect("list")
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app in (web,db),tier!=a"))
                .await
                .expect("list")
        ),
        ["b", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .expect("list")
        ),
        ["b"]
    );
    let page = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    let token = page.metadata.continue_.clone().expect("continue token");
    assert_eq!(names(page), ["a", "b"]);
    assert_eq!(
        names(
            api.list(&ListParams::default().limit(2).continue_token(&token))
                .await
                .expect("page 2")
        ),
        ["c"]
    );
    // Across namespaces.
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).expect("ns"),
        )
        .await
        .expect("namespace");
    Api::<ConfigMap>::namespaced(client.clone(), "other")
        .create(&PostParams::default(), &cm("d", json!({})))
        .await
        .expect("create");
    assert_eq!(
        Api::<ConfigMap>::all(client)
            .list(&ListParams::default())
            .await
            .expect("all")
            .items
            .len(),
        4
    );
}

#[tokio::test]
async fn stale_updates_conflict_and_patches_apply() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("create");
    let mut fresh = first.clone();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .expect("update");
    assert_ne!(
        updated.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(
        code(
            api.replace("a", &PostParams::default(), &first)
                .await
                .expect_err("stale")
        ),
        409
    );
    let merged = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"x": "1"}}, "data": {"k": null, "j": "2"}}),
            ),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        merged.data,
        Some([("j".to_string(), "2".to_string())].into())
    );
    let ops: json_patch_ops::Ops =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/j", "value": "3"}]))
            .expect("ops");
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(ops.0))
        .await
        .expect("json patch");
    assert_eq!(
        patched.data,
        Some([("j".to_string(), "3".to_string())].into())
    );
    let noop = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"j": "3"}})),
        )
        .await
        .expect("no-op");
    assert_eq!(
        noop.metadata.resource_version, patched.metadata.resource_version,
        "a no-op write keeps the version"
    );
}

/// kube re-exports json_patch's types; a tiny alias keeps the test readable.
mod json_patch_ops {
    #[derive(serde::Deserialize)]
    pub struct Ops(pub json_patch::Patch);
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer", "minimum": 1}},
                             "x-kubernetes-validations": [{"rule": "self.size < 100", "message": "size must stay below 100"}]},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}
    }))
    .expect("crd")
}

async fn widgets(client: &kube::Client) -> Api<DynamicObject> {
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &widget_crd())
        .await
        .expect("crd");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})).expect("widget")
}

#[tokio::test]
async fn custom_resources_validate_prune_and_split_status() {
    let (_s, client) = server().await;
    let api = widgets(&client).await;
    let mut w = widget("w", json!({"size": 1, "color": "red"}));
    w.data["status"] = json!({"phase": "ignored on create"});
    let created = api
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    assert_eq!(
        created.data["spec"],
        json!({"size": 1}),
        "unknown field pruned"
    );
    assert!(
        created.data.get("status").is_none(),
        "status ignored on create"
    );
    let err = api
        .create(&PostParams::default(), &widget("bad", json!({"size": 0})))
        .await
        .expect_err("invalid");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"), "{}", s.message);
        }
        other => panic!("{other}"),
    }
    let cel = api
        .create(&PostParams::default(), &widget("big", json!({"size": 100})))
        .await
        .expect_err("cel");
    assert!(
        matches!(cel, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("size must stay below 100")),
        "{cel}"
    );

    let status = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 5}})),
        )
        .await
        .expect("status patch");
    assert_eq!(status.data["status"]["phase"], "Ready");
    assert_eq!(
        status.data["spec"]["size"], 1,
        "status writes leave spec alone"
    );
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status does not bump generation"
    );
    let spec = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "Hacked"}})),
        )
        .await
        .expect("spec patch");
    assert_eq!(
        spec.data["status"]["phase"], "Ready",
        "main resource ignores status"
    );
    assert_eq!(spec.metadata.generation, Some(2));
    let labelled = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_and_kube_runtime_finalizer_helper_works() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    api.create(&PostParams::default(), &held)
        .await
        .expect("create");
    api.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = api.get("held").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let adding = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/cleanup", "new"]}})),
        )
        .await;
    assert_eq!(
        code(adding.expect_err("no new finalizers while deleting")),
        422
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert_eq!(code(api.get("held").await.expect_err("gone")), 404);

    // kube-runtime's helper adds its finalizer with a JSON patch that tests a missing path.
    api.create(&PostParams::default(), &cm("managed", json!({})))
        .await
        .expect("create");
    let obj = std::sync::Arc::new(api.get("managed").await.expect("get"));
    let action = kube::runtime::finalizer(&api, "example.com/fin", obj, |event| async move {
        match event {
            kube::runtime::finalizer::Event::Apply(_)
            | kube::runtime::finalizer::Event::Cleanup(_) => {
                Ok::<_, std::convert::Infallible>(kube::runtime::controller::Action::await_change())
            }
        }
    })
    .await;
    assert!(action.is_ok(), "{:?}", action.err());
    let with_finalizer = api.get("managed").await.expect("get");
    assert_eq!(
        with_finalizer.metadata.finalizers,
        Some(vec!["example.com/fin".to_string()])
    );
}

#[tokio::test]
async fn garbage_collection_follows_owner_references() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .expect("owner");
    let owned_by = |o: &ConfigMap| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": o.metadata.uid, "controller": true}]);
    for name in ["dep1", "dep2"] {
        let mut dep = cm(name, json!({}));
        dep.metadata.owner_references =
            Some(serde_json::from_value(owned_by(&owner)).expect("refs"));
        api.create(&PostParams::default(), &dep)
            .await
            .expect("dependent");
    }
    api.delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        0,
        "background GC removed dependents"
    );

    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .expect("owner again");
    let mut dep = cm("kept", json!({}));
    dep.metadata.owner_references = Some(serde_json::from_value(owned_by(&owner)).expect("refs"));
    api.create(&PostParams::default(), &dep)
        .await
        .expect("dependent");
    api.delete("owner", &DeleteParams::orphan())
        .await
        .expect("orphan delete");
    let kept = api.get("kept").await.expect("orphan survives");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );

    let owner = api
        .create(&PostParams::default(), &cm("fg", json!({})))
        .await
        .expect("owner fg");
    let mut dep = cm("fg-dep", json!({}));
    dep.metadata.owner_references = Some(serde_json::from_value(owned_by(&owner)).expect("refs"));
    dep.metadata.finalizers = Some(vec!["hold".into()]);
    api.create(&PostParams::default(), &dep)
        .await
        .expect("dependent");
    api.delete("fg", &DeleteParams::foreground())
        .await
        .expect("foreground delete");
    let waiting = api.get("fg").await.expect("owner waits for its dependents");
    assert_eq!(
        waiting.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert_eq!(
        code(
            api.get("fg")
                .await
                .expect_err("owner gone after dependents")
        ),
        404
    );
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects() {
    let (_s, client) = server().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).expect("ns"),
        )
        .await
        .expect("ns");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("create");
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete ns");
    assert_eq!(code(namespaces.get("doomed").await.expect_err("gone")), 404);
    assert_eq!(
        code(
            api.create(&PostParams::default(), &cm("b", json!({})))
                .await
                .expect_err("no namespace")
        ),
        404
    );
}

#[tokio::test]
async fn watching_from_a_compacted_version_is_410_gone() {
    let (server, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("create");
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .expect("create");
    server.store().compact();
    let mut stream = api
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch")
        .boxed();
    match stream
        .try_next()
        .await
        .expect("an event")
        .expect("not the end")
    {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn watcher_streams_changes_and_carries_on_after_watches_close_and_history_goes() {
    let (server, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut events =
        kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    api.create(&PostParams::default(), &cm("one", json!({})))
        .await
        .expect("create");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut wait_for = async |seen: &mut Vec<String>, name: &str| {
        while !seen.iter().any(|s| s.ends_with(&format!(":{name}"))) {
            match tokio::time::timeout_at(deadline, events.next())
                .await
                .expect("in time")
                .expect("stream goes on")
            {
                Ok(event) => record(seen, event),
                Err(_) => continue, // a 410 surfaces as an error the watcher recovers from by relisting
            }
        }
    };
    wait_for(&mut seen, "one").await;
    server.store().compact();
    api.create(&PostParams::default(), &cm("two", json!({})))
        .await
        .expect("create");
    server.store().close_watches();
    wait_for(&mut seen, "two").await;
    api.create(&PostParams::default(), &cm("three", json!({})))
        .await
        .expect("create");
    wait_for(&mut seen, "three").await;
}

fn record(seen: &mut Vec<String>, event: kube::runtime::watcher::Event<ConfigMap>) {
    use kube::runtime::watcher::Event;
    match event {
        Event::Apply(o) => seen.push(format!("apply:{}", o.metadata.name.unwrap_or_default())),
        Event::InitApply(o) => seen.push(format!("init:{}", o.metadata.name.unwrap_or_default())),
        Event::Delete(o) => seen.push(format!("delete:{}", o.metadata.name.unwrap_or_default())),
        Event::Init | Event::InitDone => {}
    }
}

fn managers(o: &DynamicObject) -> Vec<(String, String)> {
    o.metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_side_apply_merges_owns_removes_and_conflicts() {
    let (_s, client) = server().await;
    let api = widgets(&client).await;
    let pp = |m: &str| PatchParams::apply(m);
    // Apply creates.
    let a = api
        .patch("w", &pp("alice"), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"by": "alice"}}, "spec": {"size": 3}})))
        .await
        .expect("apply creates");
    assert_eq!(a.data["spec"]["size"], 3);
    assert_eq!(managers(&a), [("alice".to_string(), "Apply".to_string())]);
    // Another manager setting the same field to another value conflicts.
    let err = api
        .patch(
            "w",
            &pp("bob"),
            &Patch::Apply(
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 4}}),
            ),
        )
        .await
        .expect_err("conflict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("conflict with \"alice\": .spec.size"),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }
    // The same value is shared ownership, not a conflict; force takes over.
    api.patch("w", &pp("bob"), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"labels": {"team": "b"}}, "spec": {"size": 3}})))
        .await
        .expect("same value");
    let forced = api
        .patch("w", &pp("bob").force(), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"labels": {"team": "b"}}, "spec": {"size": 5}})))
        .await
        .expect("forced");
    assert_eq!(forced.data["spec"]["size"], 5);
    // Alice stops applying her label: it goes; bob's stays.
    let dropped = api
        .patch(
            "w",
            &pp("alice"),
            &Patch::Apply(
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 5}}),
            ),
        )
        .await
        .expect("alice re-applies");
    let labels = dropped.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("by"), None);
    assert_eq!(labels.get("team").map(String::as_str), Some("b"));
    // Ordinary updates are recorded under their manager.
    let updated = api
        .patch(
            "w",
            &PatchParams {
                field_manager: Some("carol".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})),
        )
        .await
        .expect("merge");
    assert!(
        managers(&updated).contains(&("carol".to_string(), "Update".to_string())),
        "{:?}",
        managers(&updated)
    );
    // An identical apply is a no-op.
    let again = api
        .patch(
            "w",
            &pp("alice"),
            &Patch::Apply(
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 5}}),
            ),
        )
        .await
        .expect("no-op apply");
    assert_eq!(
        again.metadata.resource_version,
        updated.metadata.resource_version
    );
}

#[tokio::test]
async fn status_apply_merges_conditions_by_type_across_managers() {
    let (_s, client) = server().await;
    let api: Api<Namespace> = Api::all(client);
    let cond = |t: &str, s: &str| json!({"apiVersion": "v1", "kind": "Namespace", "status": {"conditions": [{"type": t, "status": s}]}});
    api.patch_status(
        "default",
        &PatchParams::apply("one"),
        &Patch::Apply(cond("A", "True")),
    )
    .await
    .expect("one applies A");
    let both = api
        .patch_status(
            "default",
            &PatchParams::apply("two"),
            &Patch::Apply(cond("B", "False")),
        )
        .await
        .expect("two applies B");
    let types: Vec<String> = both
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["A", "B"]);
    let err = api
        .patch_status(
            "default",
            &PatchParams::apply("two"),
            &Patch::Apply(cond("A", "False")),
        )
        .await
        .expect_err("A is one's");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    let missing = api
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Apply(cond("C", "True")),
        )
        .await
        .expect_err("no manager");
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("fieldManager")),
        "{missing}"
    );
}

#[tokio::test]
async fn faults_fail_matching_requests_and_the_log_counts_them() {
    use certwright_testcluster::apiserver::hooks::Fault;
    let (server, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    server.hooks().add_fault(Fault {
        method: Some("POST".into()),
        path_contains: "/configmaps".into(),
        remaining: 2,
        // kube's client retries 429/503 itself (honouring Retry-After); a
        // 500 reaches the caller.
        status: 500,
        retry_after: None,
    });
    for _ in 0..2 {
        assert_eq!(
            code(
                api.create(&PostParams::default(), &cm("a", json!({})))
                    .await
                    .expect_err("injected")
            ),
            500
        );
    }
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("third attempt passes");
    api.get("a").await.expect("get");
    api.list(&ListParams::default()).await.expect("list");
    let log = server.hooks().requests();
    let summary: Vec<(String, u16)> = log.iter().map(|r| (r.verb.clone(), r.status)).collect();
    assert_eq!(
        summary,
        [
            ("create".to_string(), 500),
            ("create".to_string(), 500),
            ("create".to_string(), 201),
            ("get".to_string(), 200),
            ("list".to_string(), 200)
        ]
    );
    assert!(
        log.iter()
            .all(|r| r.resource == "configmaps" && r.namespace == "default")
    );
    assert_eq!(log.iter().filter(|r| r.is_write()).count(), 3);
    server.hooks().set_latency(Duration::from_millis(150));
    let started = std::time::Instant::now();
    api.get("a").await.expect("slow get");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "latency was injected"
    );
}

#[tokio::test]
async fn filtered_watches_see_objects_enter_and_leave() {
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("create");
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().labels("solver=true"), &rv)
        .await
        .expect("watch")
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"solver": "true"}}})),
    )
    .await
    .expect("label");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .expect("change");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"solver": null}}})),
    )
    .await
    .expect("unlabel");
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("event")
        {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn reflector_and_streaming_lists_keep_a_store_in_sync() {
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (_s, client) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .expect("create");
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let stream = reflector::reflector(writer, watcher(api.clone(), config)).applied_objects();
        let task = tokio::spawn(async move {
            futures_util::pin_mut!(stream);
            while stream.try_next().await.is_ok_and(|o| o.is_some()) {}
        });
        tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
            .await
            .expect("in time")
            .expect("ready");
        assert!(
            reader
                .state()
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some("before"))
        );
        let name = format!("after-{}", reader.state().len());
        api.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .expect("create");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !reader
            .state()
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name.as_str()))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reflector never saw {name}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
    }
}
