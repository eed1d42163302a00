//! `--web-config FILE`: the web configuration file of the Prometheus exporter toolkit
//! (`--web.config.file` of node_exporter and friends), so that a Prometheus `scrape_config`
//! with `tls_config` and `basic_auth` works unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert  # or VerifyClientCertIfGiven, NoClientCert
//!   client_ca_file: ca.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt (htpasswd -nBC 10 prometheus)
//! ```
//!
//! With users, every request needs one of them (401 otherwise); a client that passes is
//! authorised for everything, as is a client whose certificate the client CA verified. Relative
//! paths are relative to the file's directory. Files are read once, at start.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: HashMap<String, String>,
    /// Accepted for compatibility (HTTP/2, headers): not used.
    #[serde(default)]
    #[allow(dead_code)]
    http_server_config: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    /// `TLS13` allows only TLS 1.3; otherwise TLS 1.2 and 1.3.
    #[serde(default)]
    min_version: Option<String>,
    // Accepted for compatibility, not used: rustls' safe defaults apply.
    #[serde(default)]
    #[allow(dead_code)]
    max_version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

/// The loaded configuration.
#[derive(Clone)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub users: Arc<BasicAuth>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.hashes.len())
            .finish()
    }
}

/// Basic-auth users and their bcrypt hashes, with the credentials already verified (bcrypt is
/// slow on purpose: a scrape every few seconds must not pay for it each time).
#[derive(Default)]
pub struct BasicAuth {
    hashes: HashMap<String, String>,
    verified: Mutex<HashMap<String, Vec<u8>>>,
}

impl BasicAuth {
    pub fn required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether `user` with `password` is a configured user. Blocking (bcrypt).
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        let Some(hash) = self.hashes.get(user) else {
            return false;
        };
        if let Ok(cache) = self.verified.lock()
            && let Some(known) = cache.get(user)
            && known.len() == password.len()
            && known
                .iter()
                .zip(password)
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0
        {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok && let Ok(mut cache) = self.verified.lock() {
            cache.insert(user.to_string(), password.to_vec());
        }
        ok
    }
}

fn relative_to(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Reads and checks the file; every mistake is an error naming it.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read web config {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir).map_err(|e| format!("web config {}: {e}", path.display()))
}

pub(crate) fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    };
    for (user, hash) in &file.basic_auth_users {
        // Refuse a plain password by mistake instead of never matching it.
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(format!(
                "basic_auth_users: the hash of `{user}` is not a bcrypt hash \
                 (make one with `htpasswd -nBC 10 {user}`)"
            ));
        }
    }
    let tls = file
        .tls_server_config
        .as_ref()
        .map(|t| tls_config(t, dir))
        .transpose()?
        .map(Arc::new);
    if tls.is_none() && !file.basic_auth_users.is_empty() {
        log::warn!(
            "web config: basic auth without tls_server_config sends passwords in clear text"
        );
    }
    Ok(WebConfig {
        tls,
        users: Arc::new(BasicAuth {
            hashes: file.basic_auth_users,
            verified: Mutex::default(),
        }),
    })
}

fn tls_config(t: &TlsFile, dir: &Path) -> Result<rustls::ServerConfig, String> {
    let read_certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let path = relative_to(dir, path);
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", path.display()));
        }
        Ok(certs)
    };
    let certs = read_certs(&t.cert_file)?;
    let key_path = relative_to(dir, &t.key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone());
    let builder = match t.min_version.as_deref() {
        None | Some("TLS10" | "TLS11" | "TLS12") => builder.with_safe_default_protocol_versions(),
        Some("TLS13") => builder.with_protocol_versions(&[&rustls::version::TLS13]),
        Some(other) => return Err(format!("min_version `{other}`: use TLS12 or TLS13")),
    }
    .map_err(|e| e.to_string())?;
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verifier = match (auth_type, &t.client_ca_file) {
        ("NoClientCert", _) => None,
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file: {e}"))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if auth_type == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            Some(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file: {e}"))?,
            )
        }
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", None) => {
            return Err(format!(
                "client_auth_type {auth_type} needs a client_ca_file"
            ));
        }
        (other, _) => {
            return Err(format!(
                "client_auth_type `{other}`: this tracer supports NoClientCert, \
                 VerifyClientCertIfGiven and RequireAndVerifyClientCert"
            ));
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file/key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_checked_against_their_bcrypt_hashes() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let text = format!("basic_auth_users:\n  prom: '{hash}'\n");
        let config = parse(&text, Path::new(".")).unwrap();
        assert!(config.tls.is_none());
        assert!(config.users.required());
        assert!(config.users.check("prom", b"secret"));
        // Again, from the cache.
        assert!(config.users.check("prom", b"secret"));
        assert!(!config.users.check("prom", b"secreT"));
        assert!(!config.users.check("prom", b"secret2"));
        assert!(!config.users.check("other", b"secret"));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = Path::new(".");
        let plain = parse("basic_auth_users:\n  prom: secret\n", dir).unwrap_err();
        assert!(plain.contains("not a bcrypt hash"), "{plain}");
        let typo = parse("basic_auth_user:\n  prom: x\n", dir).unwrap_err();
        assert!(typo.contains("basic_auth_user"), "{typo}");
        let missing = parse(
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: k\n",
            dir,
        )
        .unwrap_err();
        assert!(missing.contains("/nonexistent.crt"), "{missing}");
        assert!(!parse("", dir).unwrap().users.required());
    }
}
