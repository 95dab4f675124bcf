//! HTTPS without a gateway: rustls, with HTTP/2 and HTTP/1.1 offered through ALPN, and a
//! certificate that is read again (on SIGHUP, or when its files change) with no restart.
//! A reload that fails keeps the certificate being served, and says why in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::TlsSettings;
use crate::tasks::Tasks;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {path} (WXLOGIN_TLS_CERT_FILE): {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the TLS key file {path} (WXLOGIN_TLS_KEY_FILE): {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the TLS key does not fit the certificate: {0}")]
    Mismatch(String),
}

/// The certificate being served, and where it came from.
pub struct Certificates {
    settings: TlsSettings,
    current: Arc<Current>,
    /// The files' modification times when last read, to notice a change.
    read_at: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Accepts TLS connections with whichever certificate is current.
#[derive(Clone)]
pub struct TlsAcceptor(tokio_rustls::TlsAcceptor);

impl TlsAcceptor {
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.0.accept(stream).await
    }
}

/// The acceptor for the certificate `settings` names, with the tasks that read it again on
/// SIGHUP and when its files change; they run as long as `tasks`.
pub fn reloading_acceptor(
    settings: &TlsSettings,
    tasks: &mut Tasks,
) -> Result<TlsAcceptor, TlsError> {
    let certificates = Arc::new(Certificates::load(settings)?);
    let acceptor = certificates.acceptor()?;
    tasks.every(
        settings.reload_check,
        Arc::clone(&certificates),
        |certificates| certificates.reload_if_changed(),
    );
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => tasks.spawn(async move {
            while hangups.recv().await.is_some() {
                certificates.reload();
            }
        }),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; the certificate reloads only when its files change")
        }
    }
    Ok(acceptor)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Certificates {
    /// Reads the certificate chain and key; fails, saying which file and why, if they do
    /// not make a usable pair.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let read_at = modified(settings);
        let key = read(settings)?;
        Ok(Self {
            settings: settings.clone(),
            current: Arc::new(Current(RwLock::new(Arc::new(key)))),
            read_at: RwLock::new(read_at),
        })
    }

    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&self.current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor(tokio_rustls::TlsAcceptor::from(Arc::new(
            config,
        ))))
    }

    /// Reads the files again and serves what they hold from the next handshake on. On a
    /// failure the current certificate stays.
    pub fn reload(&self) {
        *self.read_at.write().unwrap_or_else(PoisonError::into_inner) = modified(&self.settings);
        match read(&self.settings) {
            Ok(key) => {
                *self
                    .current
                    .0
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "TLS certificate not reloaded; still serving the previous one");
            }
        }
    }

    /// Reloads if either file changed since it was last read.
    pub fn reload_if_changed(&self) {
        let now = modified(&self.settings);
        if *self.read_at.read().unwrap_or_else(PoisonError::into_inner) != now {
            self.reload();
        }
    }
}

fn modified(settings: &TlsSettings) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (at(&settings.cert_file), at(&settings.key_file))
}

fn read(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: settings.cert_file.clone(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&settings.cert_file)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("it holds no PEM certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|e| TlsError::Key {
        path: settings.key_file.clone(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch(e.to_string()))
}
