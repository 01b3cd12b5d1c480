//! A fake of Cloudflare's API v4, as its documentation shapes it: the
//! `{success, errors, messages, result, result_info}` envelope, Bearer
//! tokens scoped to zones and global keys with their email, pages
//! (`page`, `per_page`, `total_pages`), any number of TXT values on one
//! name, and the error codes a client meets: 6003 (no credentials), 10000
//! (authentication, or a zone the token may not touch), 7003 (no such
//! zone), 9021 (TTL), 81058 (an identical record), 81044 (no such record).
//! Records it holds are written into the test BIND with RFC 2136, so
//! pebble really validates what went through it. Listening on the node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use certwright::dns::tsig::{Algorithm, Key};
use certwright::dns::update::Updater;
use serde_json::{Value, json};

/// A record as Cloudflare returns it.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub zone: String,
    pub name: String,
    pub content: String,
    pub ttl: u64,
}

#[derive(Default)]
struct State {
    /// Zone id → name.
    zones: Vec<(String, String)>,
    /// Token → the zone names it may read and edit.
    tokens: HashMap<String, Vec<String>>,
    /// (email, key) pairs that may touch every zone.
    keys: Vec<(String, String)>,
    records: Vec<Record>,
    next: u64,
    /// Answer the next create with 81058 after making the record, as a
    /// concurrent writer would.
    race_next_create: bool,
    /// Requests seen, by path.
    requests: Vec<String>,
    /// Refuse every DELETE, as a token revoked meanwhile would be.
    refuse_deletes: bool,
}

#[derive(Clone)]
pub struct FakeCloudflare {
    /// The API base, e.g. `http://10.244.0.1:41234/client/v4`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

/// Who the request authenticates as: the zone names it may touch.
enum Caller {
    Zones(Vec<String>),
    Everything,
}

fn envelope(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn failure(status: StatusCode, code: u64, message: &str) -> (StatusCode, Value) {
    let body = json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null});
    (status, body)
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One page of `items` as the query asks (`per_page` at most 50, as for zones).
fn page(items: Vec<Value>, query: &HashMap<String, String>) -> Value {
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .clamp(5, 50);
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut body = envelope(json!(slice));
    body["result_info"] = json!({"page": page, "per_page": per_page, "count": slice.len(),
        "total_count": total, "total_pages": pages});
    body
}

fn record_json(r: &Record, zone_name: &str) -> Value {
    json!({"id": r.id, "type": "TXT", "name": r.name, "content": r.content, "ttl": r.ttl,
        "proxied": false, "proxiable": false, "zone_id": r.zone, "zone_name": zone_name,
        "created_on": "2026-12-01T00:00:00Z", "modified_on": "2026-12-01T00:00:00Z"})
}

impl FakeCloudflare {
    /// Starts the fake on the node (call from the node's runtime) with
    /// `zones` (names; ids are made up).
    pub async fn start(zones: &[&str], bind: SocketAddr, tsig_secret: Vec<u8>) -> FakeCloudflare {
        let listener = tokio::net::TcpListener::bind((certwright_testcluster::cluster::NODE_IP, 0))
            .await
            .expect("the fake Cloudflare listens");
        let addr = listener.local_addr().expect("address");
        let mut state = State::default();
        for (i, zone) in zones.iter().enumerate() {
            state.zones.push((
                format!("{:032x}", 0xc10d_f1a2e_u64 + i as u64),
                zone.to_string(),
            ));
        }
        let fake = FakeCloudflare {
            url: format!("http://{addr}/client/v4"),
            state: Arc::new(Mutex::new(state)),
        };
        let updater = Updater {
            server: bind,
            key: Some(Key {
                name: "certwright".into(),
                algorithm: Algorithm::HmacSha256,
                secret: tsig_secret,
            }),
            tcp: false,
        };
        let handler_fake = fake.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (fake, updater) = (handler_fake.clone(), updater.clone());
                async move {
                    let (status, body) = fake.handle(&updater, method, uri, headers, body).await;
                    (
                        status,
                        [("content-type", "application/json")],
                        body.to_string(),
                    )
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn add_token(&self, token: &str, zones: &[&str]) {
        let mut state = self.state.lock().unwrap();
        state
            .tokens
            .insert(token.into(), zones.iter().map(|z| z.to_string()).collect());
    }

    pub fn add_key(&self, email: &str, key: &str) {
        self.state
            .lock()
            .unwrap()
            .keys
            .push((email.into(), key.into()));
    }

    /// Adds a record directly (someone else's), not mirrored to DNS.
    pub fn seed(&self, zone: &str, name: &str, content: &str) {
        let mut state = self.state.lock().unwrap();
        let zone_id = state
            .zones
            .iter()
            .find(|(_, n)| n == zone)
            .map(|(id, _)| id.clone())
            .expect("zone");
        state.next += 1;
        let id = format!("{:032x}", state.next);
        state.records.push(Record {
            id,
            zone: zone_id,
            name: name.into(),
            content: content.into(),
            ttl: 60,
        });
    }

    pub fn race_next_create(&self) {
        self.state.lock().unwrap().race_next_create = true;
    }

    /// Whether the race asked for has not happened yet.
    pub fn race_pending(&self) -> bool {
        self.state.lock().unwrap().race_next_create
    }

    /// The records now held at `name`.
    pub fn records(&self, name: &str) -> Vec<Record> {
        self.state
            .lock()
            .unwrap()
            .records
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect()
    }

    /// How many requests reached the fake.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// How many `method` requests reached the fake.
    pub fn count(&self, method: &str) -> usize {
        let prefix = format!("{method} ");
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|r| r.starts_with(&prefix))
            .count()
    }

    /// Refuse every DELETE from now on (or again accept them).
    pub fn refuse_deletes(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_deletes = refuse;
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, (StatusCode, Value)> {
        let state = self.state.lock().unwrap();
        let header = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if let Some(auth) = header("authorization") {
            let Some(token) = auth.strip_prefix("Bearer ") else {
                return Err(failure(
                    StatusCode::BAD_REQUEST,
                    6003,
                    "Invalid request headers",
                ));
            };
            return match state.tokens.get(token) {
                Some(zones) => Ok(Caller::Zones(zones.clone())),
                None => Err(failure(
                    StatusCode::FORBIDDEN,
                    10000,
                    "Authentication error",
                )),
            };
        }
        match (header("x-auth-email"), header("x-auth-key")) {
            (Some(email), Some(key)) if state.keys.contains(&(email.clone(), key.clone())) => {
                Ok(Caller::Everything)
            }
            (Some(_), Some(_)) => Err(failure(
                StatusCode::FORBIDDEN,
                10000,
                "Authentication error",
            )),
            _ => Err(failure(
                StatusCode::BAD_REQUEST,
                6003,
                "Invalid request headers",
            )),
        }
    }

    async fn handle(
        &self,
        updater: &Updater,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, Value) {
        self.state
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {uri}"));
        let caller = match self.caller(&headers) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let may = |zone: &str| match &caller {
            Caller::Everything => true,
            Caller::Zones(zones) => zones.iter().any(|z| z == zone),
        };
        let q = query(&uri);
        let path = uri.path().strip_prefix("/client/v4").unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["zones"]) => {
                let state = self.state.lock().unwrap();
                let zones: Vec<Value> = state
                    .zones
                    .iter()
                    .filter(|(_, name)| may(name))
                    .filter(|(_, name)| q.get("name").is_none_or(|n| n == name))
                    .map(|(id, name)| json!({"id": id, "name": name, "status": "active"}))
                    .collect();
                (StatusCode::OK, page(zones, &q))
            }
            (_, ["zones", zone, "dns_records", rest @ ..]) => {
                let zone_name = {
                    let state = self.state.lock().unwrap();
                    state
                        .zones
                        .iter()
                        .find(|(id, _)| id == zone)
                        .map(|(_, n)| n.clone())
                };
                let Some(zone_name) = zone_name else {
                    return failure(
                        StatusCode::NOT_FOUND,
                        7003,
                        &format!(
                            "Could not route to /zones/{zone}/dns_records, perhaps your object identifier is invalid?"
                        ),
                    );
                };
                if !may(&zone_name) {
                    return failure(StatusCode::FORBIDDEN, 10000, "Authentication error");
                }
                self.records_call(
                    updater,
                    method.as_str(),
                    (zone, &zone_name),
                    rest,
                    &q,
                    &body,
                )
                .await
            }
            _ => failure(StatusCode::NOT_FOUND, 7000, "No route for that URI"),
        }
    }

    async fn records_call(
        &self,
        updater: &Updater,
        method: &str,
        (zone, zone_name): (&str, &str),
        rest: &[&str],
        q: &HashMap<String, String>,
        body: &Bytes,
    ) -> (StatusCode, Value) {
        match (method, rest) {
            ("GET", []) => {
                let state = self.state.lock().unwrap();
                let list: Vec<Value> = state
                    .records
                    .iter()
                    .filter(|r| r.zone == zone)
                    .filter(|_| q.get("type").is_none_or(|t| t == "TXT"))
                    .filter(|r| q.get("name").is_none_or(|n| *n == r.name))
                    .filter(|r| q.get("content").is_none_or(|c| *c == r.content))
                    .map(|r| record_json(r, zone_name))
                    .collect();
                (StatusCode::OK, page(list, q))
            }
            ("POST", []) => {
                let Ok(asked) = serde_json::from_slice::<Value>(body) else {
                    return failure(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
                };
                let name = asked["name"]
                    .as_str()
                    .unwrap_or("")
                    .trim_end_matches('.')
                    .to_string();
                let content = asked["content"].as_str().unwrap_or("").to_string();
                let ttl = asked["ttl"].as_u64().unwrap_or(1);
                if asked["type"] != "TXT" || name.is_empty() || content.is_empty() {
                    return failure(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
                }
                if ttl != 1 && !(60..=86400).contains(&ttl) {
                    return failure(
                        StatusCode::BAD_REQUEST,
                        9021,
                        "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
                    );
                }
                let record = {
                    let mut state = self.state.lock().unwrap();
                    if state
                        .records
                        .iter()
                        .any(|r| r.zone == zone && r.name == name && r.content == content)
                    {
                        return failure(
                            StatusCode::BAD_REQUEST,
                            81058,
                            "An identical record already exists.",
                        );
                    }
                    state.next += 1;
                    let record = Record {
                        id: format!("{:032x}", state.next),
                        zone: zone.into(),
                        name: name.clone(),
                        content: content.clone(),
                        ttl,
                    };
                    state.records.push(record.clone());
                    record
                };
                if let Err(e) = updater.add_txt(zone_name, &name, &content).await {
                    return failure(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        1000,
                        &format!("the fake could not write DNS: {e}"),
                    );
                }
                let race = std::mem::take(&mut self.state.lock().unwrap().race_next_create);
                if race {
                    return failure(
                        StatusCode::BAD_REQUEST,
                        81058,
                        "An identical record already exists.",
                    );
                }
                (StatusCode::OK, envelope(record_json(&record, zone_name)))
            }
            ("DELETE", [id]) => {
                if self.state.lock().unwrap().refuse_deletes {
                    return failure(StatusCode::FORBIDDEN, 10000, "Authentication error");
                }
                let removed = {
                    let mut state = self.state.lock().unwrap();
                    let at = state
                        .records
                        .iter()
                        .position(|r| r.zone == zone && r.id == *id);
                    at.map(|i| state.records.remove(i))
                };
                let Some(record) = removed else {
                    return failure(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
                };
                if let Err(e) = updater
                    .delete_txt(zone_name, &record.name, &record.content)
                    .await
                {
                    return failure(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        1000,
                        &format!("the fake could not write DNS: {e}"),
                    );
                }
                (StatusCode::OK, envelope(json!({"id": record.id})))
            }
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, 10405, "Method not allowed"),
        }
    }
}
