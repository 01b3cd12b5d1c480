//! The user's commands, from their parsed arguments to what they print.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use super::{Target, client, explain};
use crate::api::{ClusterIssuer, Issuer};
use crate::cli::{
    CheckArgs, CheckCommand, ClusterArgs, Format, InspectArgs, InspectCommand, RenewArgs,
    StatusArgs, StatusCommand,
};
use crate::solver::check::Probe;

fn target(args: &ClusterArgs) -> Target {
    Target {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let StatusCommand::Certificate { name, namespace } = args.what;
    block_on(async {
        let (client, default_ns) = client(&target(&args.cluster)).await?;
        let ns = namespace.unwrap_or(default_ns);
        let tree = super::status::fetch(&client, &ns, &name).await?;
        print!("{}", super::status_text::render(&tree, Timestamp::now()));
        Ok(())
    })
}

pub fn renew(args: RenewArgs) -> anyhow::Result<()> {
    block_on(async {
        let (client, default_ns) = client(&target(&args.cluster)).await?;
        let ns = (!args.all_namespaces).then(|| args.namespace.clone().unwrap_or(default_ns));
        let selection = super::renew::Selection {
            names: &args.names,
            namespace: ns.as_deref(),
            selector: args.selector.as_deref(),
        };
        for line in super::renew::renew(&client, selection).await? {
            println!("{line}");
        }
        Ok(())
    })
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let InspectCommand::Secret { name, namespace } = args.what;
    block_on(async {
        let (client, default_ns) = client(&target(&args.cluster)).await?;
        let ns = namespace.unwrap_or(default_ns);
        let secret = Api::<Secret>::namespaced(client, &ns)
            .get(&name)
            .await
            .map_err(|e| explain(e, &format!("Secret {ns}/{name}")))?;
        let text = super::inspect::render(&secret, Timestamp::now()).map_err(anyhow::Error::msg)?;
        print!("{text}");
        Ok(())
    })
}

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    block_on(async {
        match args.what {
            CheckCommand::Api { wait } => {
                let (client, _) = client(&target(&args.cluster)).await?;
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    match crate::checks::api(&client).await {
                        Ok(()) => {
                            println!(
                                "the API server serves cert-manager.io/v1 and acme.cert-manager.io/v1"
                            );
                            return Ok(());
                        }
                        Err(why) if tokio::time::Instant::now() >= deadline => bail!("{why}"),
                        Err(why) => {
                            eprintln!("certwright: not yet: {why}");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            }
            CheckCommand::Domain {
                name,
                issuer,
                cluster_issuer,
                namespace,
                nameservers,
                address,
                http_port,
            } => {
                if issuer.is_some() || cluster_issuer.is_some() {
                    let (client, default_ns) = client(&target(&args.cluster)).await?;
                    let ns = namespace.unwrap_or(default_ns);
                    let (what, acme) = match (&issuer, &cluster_issuer) {
                        (Some(i), _) => {
                            let at = format!("Issuer {ns}/{i}");
                            let found = Api::<Issuer>::namespaced(client, &ns)
                                .get(i)
                                .await
                                .map_err(|e| explain(e, &at))?;
                            (at, found.spec.config.acme)
                        }
                        (_, Some(c)) => {
                            let at = format!("ClusterIssuer {c}");
                            let found = Api::<ClusterIssuer>::all(client)
                                .get(c)
                                .await
                                .map_err(|e| explain(e, &at))?;
                            (at, found.spec.config.acme)
                        }
                        _ => unreachable!("one of them is set"),
                    };
                    let Some(acme) = acme else {
                        bail!("{what} is not an ACME issuer");
                    };
                    println!(
                        "{}",
                        super::domain::solver(&acme.solvers.unwrap_or_default(), &name, &what)
                    );
                }
                let probe = Probe {
                    nameservers,
                    http_port,
                    via: address,
                    ..Probe::default()
                };
                let seen = super::domain::check(&probe, &name)
                    .await
                    .map_err(anyhow::Error::msg)?;
                println!("{seen}");
                Ok(())
            }
        }
    })
}

pub fn print_crds(output: Format) -> anyhow::Result<()> {
    let text = match output {
        Format::Yaml | Format::Text => crate::api::crds_yaml().context("rendering CRDs as YAML")?,
        Format::Json => {
            let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": crate::api::crds() });
            serde_json::to_string_pretty(&list).context("rendering CRDs as JSON")? + "\n"
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

pub fn print_version(output: Format) -> anyhow::Result<()> {
    let info = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "apiGroups": ["cert-manager.io/v1", "acme.cert-manager.io/v1"],
        "kubernetesApi": "v1.33",
    });
    let text = match output {
        Format::Text => format!(
            "certwright {} (serves cert-manager.io/v1, acme.cert-manager.io/v1; Kubernetes API v1.33)\n",
            env!("CARGO_PKG_VERSION")
        ),
        Format::Yaml => serde_yaml_ng::to_string(&info)?,
        Format::Json => serde_json::to_string_pretty(&info)? + "\n",
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}
