//! Where certwright's time goes (with `BENCH_BREAKDOWN`): its own metrics,
//! scraped from the controller Pod before and after a batch, give the mean
//! time to each stage of issuance and the self-check results by cause.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use certwright_testcluster::deploy;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::common;

/// Series name and label value to value, for the series read here.
pub type Scrape = BTreeMap<(String, String), f64>;

const READ: [(&str, &str); 3] = [
    ("certwright_stage_duration_seconds_sum", "stage"),
    ("certwright_stage_duration_seconds_count", "stage"),
    ("certwright_self_check_total", "result"),
];

/// certwright's metrics now (empty when its Pod cannot be scraped).
pub async fn scrape(client: &kube::Client) -> Scrape {
    let pods = Api::<Pod>::namespaced(client.clone(), deploy::NAMESPACE)
        .list(&ListParams::default().labels(deploy::APP_LABEL))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let Some(ip) = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse::<IpAddr>().ok())
        .next()
    else {
        return Scrape::new();
    };
    let Ok((200, text)) =
        common::http_get(SocketAddr::new(ip, 9402), "certwright", "/metrics").await
    else {
        return Scrape::new();
    };
    parse(&text)
}

fn parse(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        for (name, label) in READ {
            let Some(labels) = series.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
                continue;
            };
            let key = format!("{label}=\"");
            if let Some(v) = labels
                .split(',')
                .find_map(|l| l.strip_prefix(key.as_str()))
                .and_then(|v| v.split('"').next())
            {
                *out.entry((name.to_string(), v.to_string())).or_default() += value;
            }
        }
    }
    out
}

/// Prints the mean time to each stage (from the object the stage is timed
/// from: the Certificate's request for a key and order, the Challenge for
/// the rest) and the self-checks per certificate, over `before`..`after`.
pub fn report(before: &Scrape, after: &Scrape, n: usize) {
    let delta = |name: &str, v: &str| {
        let key = (name.to_string(), v.to_string());
        after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
    };
    for stage in certwright::metrics::STAGES {
        let count = delta("certwright_stage_duration_seconds_count", stage);
        if count > 0.0 {
            let sum = delta("certwright_stage_duration_seconds_sum", stage);
            println!(
                "  stage {stage:<20} mean {:>7.0} ms over {count}",
                sum / count * 1000.0
            );
        }
    }
    let results: Vec<&String> = after
        .keys()
        .filter(|(name, _)| name == "certwright_self_check_total")
        .map(|(_, v)| v)
        .collect();
    for result in results {
        let count = delta("certwright_self_check_total", result);
        if count > 0.0 {
            println!("  self-check {result:<18} {:>7.2}/cert", count / n as f64);
        }
    }
}
