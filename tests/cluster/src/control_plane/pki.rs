//! The local cluster's certificates, as kubeadm lays them out: a cluster CA
//! (serving certificate, client certificates), the aggregation layer's
//! front-proxy CA and client, and the service-account signing key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its key, in PEM.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that signs leaves.
pub struct Ca {
    pub pair: Pair,
    issuer: Issuer<'static, KeyPair>,
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("generating {what}: {e}")
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Self, String> {
        let e = err(common_name);
        let key = KeyPair::generate().map_err(&e)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(&e)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).map_err(&e)?;
        let pair = Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            pair,
            issuer: Issuer::new(params, key),
        })
    }

    /// A client certificate for `user` in `groups` (Kubernetes reads the CN
    /// as the user name and each O as a group).
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<Pair, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err(user))?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, user)
    }

    /// A serving certificate for these names and addresses.
    pub fn server(&self, name: &str, dns: &[String], ips: &[IpAddr]) -> Result<Pair, String> {
        let mut params = CertificateParams::new(dns.to_vec()).map_err(err(name))?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, name)
    }

    fn sign(&self, mut params: CertificateParams, what: &str) -> Result<Pair, String> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().map_err(err(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err(what))?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Every file the control plane reads, written under one directory.
pub struct Files {
    pub dir: PathBuf,
    pub ca: Ca,
    pub front_proxy_ca: Ca,
}

impl Files {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes the CAs, the API server's serving certificate (for `dns` and
    /// `ips`), the front-proxy client, and the service-account key pair.
    pub fn write(dir: &Path, dns: &[String], ips: &[IpAddr]) -> Result<Self, String> {
        let files = Self {
            dir: dir.to_path_buf(),
            ca: Ca::new("certwright-test-cluster-ca")?,
            front_proxy_ca: Ca::new("certwright-test-front-proxy-ca")?,
        };
        files.put("ca", &files.ca.pair)?;
        files.put("front-proxy-ca", &files.front_proxy_ca.pair)?;
        files.put("apiserver", &files.ca.server("kube-apiserver", dns, ips)?)?;
        // What kube-apiserver shows a kubelet (logs, exec, port-forward).
        files.put(
            "kubelet-client",
            &files
                .ca
                .client("kube-apiserver-kubelet-client", &["system:masters"])?,
        )?;
        files.put(
            "front-proxy-client",
            &files.front_proxy_ca.client("front-proxy-client", &[])?,
        )?;
        let sa = KeyPair::generate().map_err(err("the service-account key"))?;
        files.text("sa.key", &sa.serialize_pem())?;
        files.text("sa.pub", &sa.public_key_pem())?;
        Ok(files)
    }

    /// Writes `<name>.crt` and `<name>.key`.
    pub fn put(&self, name: &str, pair: &Pair) -> Result<(), String> {
        self.text(&format!("{name}.crt"), &pair.cert_pem)?;
        self.text(&format!("{name}.key"), &pair.key_pem)
    }

    pub fn text(&self, name: &str, text: &str) -> Result<(), String> {
        let path = self.path(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}
