//! TLS for `rabbit://` connections (oslo's `ssl`, `ssl_ca_file`, `ssl_cert_file`,
//! `ssl_key_file`), on rustls through lapin's TLS stream.
//!
//! Built once per transport from its settings, so that files are read (and the system's roots
//! loaded) once, and every reconnection uses the same trust. With `ssl_ca_file`, that file's
//! authorities are the only ones trusted, as Python's `ca_certs` does; without it, the system's.
//! The broker's host name is always verified.

#[cfg(feature = "tls")]
use std::path::Path;

use crate::config::TransportConfig;
use crate::error::TransportError;

/// A TLS client configuration, ready to wrap a TCP stream.
#[cfg(feature = "tls")]
pub(super) type Connector = lapin::tcp::RustlsConnector;

/// Without the `tls` feature there is nothing to build; `ssl=1` is refused.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub(super) enum Connector {}

/// The TLS configuration the settings ask for, or `None` for plain TCP.
pub(super) fn connector(config: &TransportConfig) -> Result<Option<Connector>, TransportError> {
    if !config.ssl {
        let stray = [
            ("ssl_ca_file", &config.ssl_ca_file),
            ("ssl_cert_file", &config.ssl_cert_file),
            ("ssl_key_file", &config.ssl_key_file),
        ];
        if let Some((name, _)) = stray.iter().find(|(_, value)| value.is_some()) {
            // oslo ignores them; a user who set one surely meant TLS, and must not get plain
            // text unawares.
            return Err(tls_error(format!("{name} is set but ssl is not")));
        }
        return Ok(None);
    }
    build(config).map(Some)
}

#[cfg(not(feature = "tls"))]
fn build(_: &TransportConfig) -> Result<Connector, TransportError> {
    Err(tls_error(
        "ssl is set, but amqp-rpc was built without its `tls` cargo feature",
    ))
}

#[cfg(feature = "tls")]
fn build(config: &TransportConfig) -> Result<Connector, TransportError> {
    use lapin::tcp::RustlsConnectorConfig;

    let identity = match (&config.ssl_cert_file, &config.ssl_key_file) {
        (Some(cert), Some(key)) => Some((certificates(cert)?, private_key(key)?)),
        (None, None) => None,
        (Some(_), None) => return Err(tls_error("ssl_cert_file is set without ssl_key_file")),
        (None, Some(_)) => return Err(tls_error("ssl_key_file is set without ssl_cert_file")),
    };
    let roots = match &config.ssl_ca_file {
        Some(file) => {
            RustlsConnectorConfig::default().with_parsable_certificates(certificates(file)?)
        }
        None => RustlsConnectorConfig::new_with_native_certs()
            .map_err(|e| tls_error(format!("cannot load the system's trusted roots: {e}")))?,
    };
    let built = match identity {
        Some((chain, key)) => roots.connector_with_single_cert(chain, key),
        None => roots.connector_with_no_client_auth(),
    };
    built.map_err(|e| tls_error(format!("unusable TLS settings: {e}")))
}

/// The certificates of a PEM file; an error if it holds none.
#[cfg(feature = "tls")]
fn certificates(
    file: &Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, TransportError> {
    use rustls_pki_types::pem::PemObject;
    let certificates = rustls_pki_types::CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_error(format!(
                "cannot read certificates from {}: {e}",
                file.display()
            ))
        })?;
    if certificates.is_empty() {
        return Err(tls_error(format!(
            "{} holds no PEM certificate",
            file.display()
        )));
    }
    Ok(certificates)
}

/// The private key of a PEM file.
#[cfg(feature = "tls")]
fn private_key(file: &Path) -> Result<rustls_pki_types::PrivateKeyDer<'static>, TransportError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::PrivateKeyDer::from_pem_file(file).map_err(|e| {
        tls_error(format!(
            "cannot read a private key from {}: {e}",
            file.display()
        ))
    })
}

fn tls_error(reason: impl Into<String>) -> TransportError {
    TransportError::Tls {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tcp_without_ssl() {
        assert!(matches!(connector(&TransportConfig::default()), Ok(None)));
    }

    #[test]
    fn tls_files_without_ssl_are_refused_not_ignored() {
        let config = TransportConfig {
            ssl_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TransportConfig::default()
        };
        let err = connector(&config).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("TLS configuration: ssl_ca_file is set but ssl is not")
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn unreadable_or_empty_files_are_clear_errors() {
        let mut config = TransportConfig {
            ssl: true,
            ssl_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TransportConfig::default()
        };
        let err = connector(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");

        let empty = std::env::temp_dir().join(format!("amqp-rpc-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
        config.ssl_ca_file = Some(empty.clone());
        let err = connector(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        std::fs::remove_file(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let config = TransportConfig {
            ssl: true,
            ssl_cert_file: Some("/some/cert.pem".into()),
            ..TransportConfig::default()
        };
        let err = connector(&config).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("TLS configuration: ssl_cert_file is set without ssl_key_file")
        );
    }
}
