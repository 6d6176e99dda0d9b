//! TLS to PostgreSQL as libpq does it: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` in the database URL or key=value
//! string, over rustls (pure Rust, so the statically linked runner build needs no
//! OpenSSL; docs/decisions.md).
//!
//! The `postgres` crate reads only `disable`, `prefer` and `require` and no root
//! certificate, so these options are taken out of the connection string here and the
//! rest is left to it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode`, minus `allow` (plain first, TLS if refused), which nobody needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, no certificate check (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked only when a root certificate is
    /// given (then as `verify-ca`, as libpq does).
    Require,
    /// TLS, the certificate signed by the root certificate; any host name.
    VerifyCa,
    /// TLS, the certificate signed by the root certificate and naming the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not supported; use disable, prefer, require, \
                     verify-ca or verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS options of a connection string, and the string without them.
#[derive(Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// `sslmode` as given; None when the string sets none.
    pub mode: Option<SslMode>,
    /// `sslrootcert`: a PEM file, or `system` for the well-known public roots.
    pub root_cert: Option<String>,
}

/// Options this module reads (or refuses), never passed on.
const TLS_KEYS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
];

/// Splits the TLS options off a URL (`postgres://...?sslmode=verify-full&...`) or a
/// key=value string (`host=db sslmode=verify-full ...`).
pub fn split_options(conn: &str) -> Result<(String, TlsOptions), String> {
    let mut found: Vec<(String, String)> = Vec::new();
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let key = percent_decode(k)?;
                    if TLS_KEYS.contains(&key.as_str()) {
                        found.push((key, percent_decode(v)?));
                    } else {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_values(conn)? {
            if TLS_KEYS.contains(&key.as_str()) {
                found.push((key, value));
            } else {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
        kept.join(" ")
    };
    let mut options = TlsOptions {
        mode: None,
        root_cert: None,
    };
    for (key, value) in found {
        match key.as_str() {
            "sslmode" => options.mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => options.root_cert = Some(value),
            other => {
                return Err(format!(
                    "{other} is not supported (client certificates); authenticate with a \
                     password over sslmode=verify-full"
                ))
            }
        }
    }
    Ok((rest, options))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid percent-encoding in the database URL")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the database URL is not UTF-8".to_string())
}

/// libpq's key=value syntax: `key = value` pairs separated by spaces; a value is a run
/// of non-space characters or single-quoted, with `\` escaping the next character.
fn key_values(conn: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after {key:?} in the connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err("unterminated quoted value in the connection string".into()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// How a connection string's TLS options resolve: the mode the `postgres` crate runs
/// (disable, prefer or require) and the rustls client for it.
pub struct Resolved {
    pub mode: SslMode,
    pub connector: Option<RustlsConnect>,
}

/// Resolves `options` for a connection to `hosts`. Without `sslmode`, loopback and Unix
/// socket hosts get `disable` (nothing crosses a network) and any other host `prefer`.
pub fn resolve(options: &TlsOptions, all_local: bool) -> Result<Resolved, String> {
    let mut mode = options.mode.unwrap_or(if all_local {
        SslMode::Disable
    } else {
        SslMode::Prefer
    });
    if mode == SslMode::Require && options.root_cert.is_some() {
        mode = SslMode::VerifyCa; // libpq: require with a root certificate checks it
    }
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable => {
            return Ok(Resolved {
                mode,
                connector: None,
            })
        }
        SslMode::Prefer | SslMode::Require => Arc::new(AnyCertificate(provider())),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = root_store(options.root_cert.as_deref(), mode)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("cannot use the root certificate: {e}"))?;
            if mode == SslMode::VerifyCa {
                Arc::new(AnyHostName(webpki))
            } else {
                webpki
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Resolved {
        mode,
        connector: Some(RustlsConnect(Arc::new(config))),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots a `verify-*` mode checks against: `sslrootcert`, else libpq's default
/// `~/.postgresql/root.crt`; `system` is the well-known public roots (webpki-roots).
fn root_store(root_cert: Option<&str>, mode: SslMode) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    if root_cert == Some("system") {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(store);
    }
    let path = match root_cert {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .ok_or_else(|| format!("sslmode={} needs sslrootcert=FILE", mode.as_str()))?;
            home.join(".postgresql/root.crt")
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .and_then(|it| it.collect())
        .map_err(|e| {
            format!(
                "sslmode={} needs a root certificate: cannot read {} ({e}); set \
                 sslrootcert=FILE",
                mode.as_str(),
                path.display()
            )
        })?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("no usable certificate in {}", path.display()));
    }
    Ok(store)
}

/// `prefer` and `require`: encrypted, the server's certificate not checked (as libpq),
/// its handshake signatures still are.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the root certificate; the name is not checked
/// (webpki checks the chain before the name, so only a name mismatch is forgiven).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The `postgres` crate's TLS hook over rustls.
#[derive(Clone)]
pub struct RustlsConnect(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectHost;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnectHost, Self::Error> {
        Ok(RustlsConnectHost {
            config: self.0.clone(),
            name: ServerName::try_from(host.to_string())?,
        })
    }
}

pub struct RustlsConnectHost {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnectHost
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
        })
    }
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding: the certificate check above is what binds.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url() {
        let (rest, o) = split_options(
            "postgres://u:p%3Fw@db.example:5432/mail?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%3Fw@db.example:5432/mail?connect_timeout=5"
        );
        assert_eq!(o.mode, Some(SslMode::VerifyFull));
        assert_eq!(o.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, o) = split_options("postgres://db/mail?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), o.mode),
            ("postgres://db/mail", Some(SslMode::Require))
        );
    }

    #[test]
    fn tls_options_leave_key_value_strings() {
        let (rest, o) = split_options(
            "host=db  user = mail password='it\\'s x' sslmode=verify-ca sslrootcert='/a b/ca.pem'",
        )
        .unwrap();
        assert_eq!(o.mode, Some(SslMode::VerifyCa));
        assert_eq!(o.root_cert.as_deref(), Some("/a b/ca.pem"));
        assert_eq!(rest, "host='db' user='mail' password='it\\'s x'");
    }

    #[test]
    fn unsupported_options_are_named() {
        assert!(split_options("postgres://db/x?sslmode=allow")
            .unwrap_err()
            .contains("allow"));
        assert!(split_options("host=db sslcert=/c.pem")
            .unwrap_err()
            .contains("sslcert"));
        assert!(split_options("host=db sslmode").is_err());
    }

    #[test]
    fn defaults_follow_the_host() {
        let none = TlsOptions {
            mode: None,
            root_cert: None,
        };
        assert_eq!(resolve(&none, true).unwrap().mode, SslMode::Disable);
        assert_eq!(resolve(&none, false).unwrap().mode, SslMode::Prefer);
    }
}
