//! certwright's keystores as the tools users open them with read them:
//! OpenSSL (`openssl pkcs12`), Java's `keytool`, and the Go libraries
//! cert-manager writes keystores with (go-pkcs12, keystore-go, through
//! `tests/tools/cert-manager/keystore-read`). Each must find the same key
//! (by its public key), the same chain and the same CA certificates.
//!
//! Debian 12's OpenSSL 3.0 and Java 17 predate PBMAC1, so `Modern2026` is
//! read by go-pkcs12 there, and by OpenSSL and keytool where they are new
//! enough (OpenSSL 3.4, Java 26).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use certwright::api::certificate::Pkcs12Profile;
use certwright::pki::keys::{KeyKind, PrivateKey};
use certwright::pki::keystore::{self, Contents, jks};
use certwright_testcluster::tools::cert_manager_tool;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const PASSWORD: &str = "s3cret-Pass";

struct Fixture {
    dir: PathBuf,
    key: PrivateKey,
    contents: Contents,
}

/// A root, an intermediate and a leaf for `key`; the chain is leaf and
/// intermediate, the CA the root, as an issuer with a `ca.crt` gives them.
fn fixture(kind: KeyKind, name: &str) -> Fixture {
    certwright::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!(
        "certwright-keystores-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca("keystore test root");
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = Issuer::new(root_params, root_key);
    let mid_key = KeyPair::generate().expect("key");
    let mid_params = ca("keystore test intermediate");
    let mid = mid_params.signed_by(&mid_key, &root_issuer).expect("mid");
    let mid_issuer = Issuer::new(mid_params, mid_key);
    let key = PrivateKey::generate(kind).expect("leaf key");
    let leaf = CertificateParams::new(vec!["web.keystores.test".to_string()])
        .expect("params")
        .signed_by(&key.key_pair().expect("pair"), &mid_issuer)
        .expect("leaf");
    let chain = format!("{}{}", leaf.pem(), mid.pem());
    let contents = Contents::new(&key, &chain, &root.pem()).expect("contents");
    assert_eq!((contents.chain.len(), contents.cas.len()), (2, 1));
    Fixture { dir, key, contents }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::env::var_os("KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Fixture {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// The public key of a PKCS#8 or PEM key another tool gave back.
    fn same_key(&self, pem_or_pkcs8: &[u8], who: &str) {
        let pem_text = if pem_or_pkcs8.starts_with(b"-----") || pem_or_pkcs8.starts_with(b"Bag") {
            pem_or_pkcs8.to_vec()
        } else {
            pem::encode(&pem::Pem::new("PRIVATE KEY", pem_or_pkcs8.to_vec())).into_bytes()
        };
        let theirs = PrivateKey::from_pem(&pem_text)
            .unwrap_or_else(|e| panic!("{who}: the key it read does not parse: {e}"));
        assert_eq!(
            theirs.public_key_info().expect("spki"),
            self.key.public_key_info().expect("spki"),
            "{who}: the same key"
        );
    }
}

fn run(program: &str, args: &[&str], who: &str) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{who}: {program} does not run: {e}"));
    assert!(
        out.status.success(),
        "{who}: {program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What keystore-read (go-pkcs12, keystore-go) found.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct GoRead {
    key: Option<String>,
    chain: Vec<String>,
    trusted: Vec<String>,
    aliases: Vec<String>,
}

fn go_read(kind: &str, file: &Path, who: &str) -> GoRead {
    let tool = cert_manager_tool("keystore-read").expect("keystore-read is built by install-tools");
    let out = run(path(&tool), &[kind, path(file), PASSWORD], who);
    serde_json::from_slice(&out).expect("keystore-read prints JSON")
}

fn der_of(b64: &[String]) -> Vec<Vec<u8>> {
    b64.iter()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("base64")
        })
        .collect()
}

fn version_at_least(text: &str, want: (u32, u32)) -> bool {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= want
}

fn openssl_reads_pbmac1() -> bool {
    let out = run("openssl", &["version"], "openssl version");
    let text = String::from_utf8_lossy(&out);
    version_at_least(text.trim_start_matches("OpenSSL "), (3, 4))
}

fn java_reads_pbmac1() -> bool {
    let out = Command::new("java")
        .arg("-version")
        .output()
        .expect("java runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let version = text.split('"').nth(1).unwrap_or("0");
    version_at_least(version, (26, 0))
}

/// `openssl pkcs12` finds the key, the chain and the CA.
fn openssl_reads(f: &Fixture, file: &Path, legacy: bool, who: &str) {
    let mut base = vec!["pkcs12", "-in", path(file), "-passin"];
    let pass = format!("pass:{PASSWORD}");
    base.push(&pass);
    if legacy {
        base.push("-legacy");
    }
    let key = run(
        "openssl",
        &[&base[..], &["-nocerts", "-nodes"]].concat(),
        who,
    );
    f.same_key(&strip_bag_attributes(&key), who);
    let certs = run("openssl", &[&base[..], &["-nokeys"]].concat(), who);
    let certs = keystore::certificates(&String::from_utf8_lossy(&certs)).expect("pem");
    let mut want: Vec<Vec<u8>> = f
        .contents
        .chain
        .iter()
        .chain(&f.contents.cas)
        .cloned()
        .collect();
    let mut got = certs;
    want.sort();
    got.sort();
    assert_eq!(got, want, "{who}: openssl finds the chain and the CA");
}

/// openssl prints "Bag Attributes" lines before each PEM block.
fn strip_bag_attributes(out: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(out);
    let start = text.find("-----BEGIN").expect("a PEM block");
    text[start..].as_bytes().to_vec()
}

/// `keytool -list` sees the entries it should.
fn keytool_lists(file: &Path, store_type: &str, want: &[&str], who: &str) -> String {
    let out = run(
        "keytool",
        &[
            "-list",
            "-v",
            "-keystore",
            path(file),
            "-storetype",
            store_type,
            "-storepass",
            PASSWORD,
        ],
        who,
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    for w in want {
        assert!(text.contains(w), "{who}: keytool lists {w:?}:\n{text}");
    }
    text
}

#[test]
fn pkcs12_keystores_of_every_profile_open_in_openssl_keytool_and_go() {
    let f = fixture(KeyKind::Rsa(2048), "p12");
    let profiles = [
        (None, "default"),
        (Some(Pkcs12Profile::LegacyRc2), "LegacyRC2"),
        (Some(Pkcs12Profile::LegacyDes), "LegacyDES"),
        (Some(Pkcs12Profile::Modern2023), "Modern2023"),
        (Some(Pkcs12Profile::Modern2026), "Modern2026"),
    ];
    for (profile, name) in profiles {
        let store = keystore::pkcs12_keystore(profile, PASSWORD, &f.contents).expect("encodes");
        let trust =
            keystore::pkcs12_truststore(profile, PASSWORD, &f.contents.cas).expect("encodes");
        let store_file = f.write(&format!("{name}.p12"), &store);
        let trust_file = f.write(&format!("{name}-trust.p12"), &trust);

        let who = format!("{name} keystore, go-pkcs12");
        let go = go_read("p12", &store_file, &who);
        f.same_key(&der_of(&go.key.into_iter().collect::<Vec<_>>())[0], &who);
        assert_eq!(der_of(&go.chain), f.contents.chain[..1], "{who}: the leaf");
        let rest: Vec<Vec<u8>> = f.contents.chain[1..]
            .iter()
            .chain(&f.contents.cas)
            .cloned()
            .collect();
        assert_eq!(
            der_of(&go.trusted),
            rest,
            "{who}: the intermediate, then the CA"
        );
        let who = format!("{name} truststore, go-pkcs12");
        assert_eq!(
            der_of(&go_read("p12-trust", &trust_file, &who).trusted),
            f.contents.cas,
            "{who}"
        );

        let modern2026 = profile == Some(Pkcs12Profile::Modern2026);
        if !modern2026 || openssl_reads_pbmac1() {
            // OpenSSL 3 reads RC2 only with its legacy provider.
            let legacy = matches!(profile, None | Some(Pkcs12Profile::LegacyRc2));
            openssl_reads(
                &f,
                &store_file,
                legacy,
                &format!("{name} keystore, openssl"),
            );
        } else {
            // An OpenSSL without PBMAC1 says so rather than reading garbage.
            let out = Command::new("openssl")
                .args([
                    "pkcs12",
                    "-in",
                    path(&store_file),
                    "-passin",
                    &format!("pass:{PASSWORD}"),
                    "-nokeys",
                ])
                .output()
                .expect("openssl runs");
            assert!(
                !out.status.success(),
                "{name}: OpenSSL 3.0 cannot verify a PBMAC1 MAC"
            );
        }
        if !modern2026 || java_reads_pbmac1() {
            let who = format!("{name} keystore, keytool");
            let text = keytool_lists(
                &store_file,
                "PKCS12",
                &["Entry type: PrivateKeyEntry", "Certificate chain length: 3"],
                &who,
            );
            assert!(
                text.contains("CN=web.keystores.test") || text.contains("web.keystores.test"),
                "{who}: {text}"
            );
            keytool_lists(
                &trust_file,
                "PKCS12",
                &["Entry type: trustedCertEntry", "CN=keystore test root"],
                &format!("{name} truststore, keytool"),
            );
        }
    }
}

#[test]
fn a_wrong_password_is_refused_by_every_reader() {
    let f = fixture(KeyKind::Ecdsa(256), "wrong");
    let store = keystore::pkcs12_keystore(Some(Pkcs12Profile::Modern2023), "other", &f.contents)
        .expect("encodes");
    let file = f.write("wrong.p12", &store);
    let tool = cert_manager_tool("keystore-read").expect("keystore-read");
    let go = Command::new(&tool)
        .args(["p12", path(&file), PASSWORD])
        .output()
        .expect("runs");
    assert!(!go.status.success(), "go-pkcs12 checks the MAC");
    let ssl = Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            path(&file),
            "-passin",
            &format!("pass:{PASSWORD}"),
            "-nokeys",
        ])
        .output()
        .expect("runs");
    assert!(
        !ssl.status.success() && String::from_utf8_lossy(&ssl.stderr).contains("verify error"),
        "openssl checks the MAC: {}",
        String::from_utf8_lossy(&ssl.stderr)
    );
    let store = jks::keystore("other", "certificate", &f.contents).expect("encodes");
    let file = f.write("wrong.jks", &store);
    let java = Command::new("keytool")
        .args([
            "-list",
            "-keystore",
            path(&file),
            "-storetype",
            "JKS",
            "-storepass",
            PASSWORD,
        ])
        .output()
        .expect("runs");
    assert!(
        !java.status.success(),
        "keytool checks the integrity digest"
    );
}

#[test]
fn jks_keystores_open_in_keytool_and_go_and_convert_to_pkcs12() {
    for (kind, name) in [
        (KeyKind::Rsa(2048), "rsa"),
        (KeyKind::Ecdsa(256), "p256"),
        (KeyKind::Ed25519, "ed25519"),
    ] {
        let f = fixture(kind, &format!("jks-{name}"));
        let store = jks::keystore(PASSWORD, "Web-Cert", &f.contents).expect("encodes");
        let trust = jks::truststore(PASSWORD, &f.contents.cas).expect("encodes");
        let store_file = f.write("keystore.jks", &store);
        let trust_file = f.write("truststore.jks", &trust);

        let who = format!("{name} keystore.jks, keystore-go");
        let go = go_read("jks", &store_file, &who);
        assert_eq!(
            go.aliases,
            ["ca", "web-cert"],
            "{who}: lowercased alias and the CA"
        );
        f.same_key(&der_of(&go.key.into_iter().collect::<Vec<_>>())[0], &who);
        assert_eq!(der_of(&go.chain), f.contents.chain, "{who}: the chain");
        assert_eq!(der_of(&go.trusted), f.contents.cas, "{who}: the CA");
        let go = go_read("jks-trust", &trust_file, &format!("{name} truststore.jks"));
        assert_eq!(
            (go.aliases, der_of(&go.trusted)),
            (vec!["ca".to_string()], f.contents.cas.clone())
        );

        let who = format!("{name} keystore.jks, keytool");
        keytool_lists(
            &store_file,
            "JKS",
            &[
                "Alias name: web-cert",
                "Entry type: PrivateKeyEntry",
                "Certificate chain length: 2",
                "Alias name: ca",
                "trustedCertEntry",
            ],
            &who,
        );
        keytool_lists(
            &trust_file,
            "JKS",
            &["Alias name: ca", "trustedCertEntry"],
            &format!("{name} truststore.jks, keytool"),
        );
        // Converting makes keytool decrypt the key (the protector's check).
        let converted = f.dir.join("converted.p12");
        run(
            "keytool",
            &[
                "-importkeystore",
                "-noprompt",
                "-srckeystore",
                path(&store_file),
                "-srcstoretype",
                "JKS",
                "-srcstorepass",
                PASSWORD,
                "-srcalias",
                "web-cert",
                "-destkeystore",
                path(&converted),
                "-deststoretype",
                "PKCS12",
                "-deststorepass",
                PASSWORD,
            ],
            &who,
        );
        let key = run(
            "openssl",
            &[
                "pkcs12",
                "-in",
                path(&converted),
                "-passin",
                &format!("pass:{PASSWORD}"),
                "-nocerts",
                "-nodes",
            ],
            &who,
        );
        f.same_key(&strip_bag_attributes(&key), &format!("{who}, converted"));
    }
}
