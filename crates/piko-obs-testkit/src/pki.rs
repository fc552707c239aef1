//! Certificates for the TLS tests, made at test time with rcgen (nothing is checked in):
//! a CA, a server certificate it issued for `127.0.0.1`, a client certificate it issued
//! (for mutual TLS), and a client certificate issued by another CA, which a server
//! trusting only the first must refuse.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::otlp::ServerTls;

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS #8).
    pub key_pem: String,
    /// The certificate, DER: what a server sees of a client certificate.
    pub cert_der: Vec<u8>,
}

/// The certificates of one TLS test.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA's certificate, PEM: the `ca_file` a client needs to trust the server, and
    /// the CA a server requiring client certificates trusts.
    pub ca_pem: String,
    /// The server's certificate (for the IP address `127.0.0.1`) and key, issued by the CA.
    pub server: Pair,
    /// A client certificate and key issued by the CA.
    pub client: Pair,
    /// A client certificate and key issued by another CA.
    pub stranger: Pair,
}

/// The paths [`TestPki::write`] wrote.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The client certificate issued by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// The client certificate issued by another CA.
    pub stranger_cert: PathBuf,
    /// Its key.
    pub stranger_key: PathBuf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Pair {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
    }
}

impl TestPki {
    /// Generates fresh keys and certificates (ECDSA P-256).
    pub fn generate() -> TestPki {
        let (ca_pem, issuer) = ca("piko-obs test CA");
        let server = issue(
            &issuer,
            &["127.0.0.1"],
            "otlp receiver",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = issue(
            &issuer,
            &[],
            "otlp exporter",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (_, other) = ca("another CA");
        let stranger = issue(&other, &[], "stranger", ExtendedKeyUsagePurpose::ClientAuth);
        TestPki {
            ca_pem,
            server,
            client,
            stranger,
        }
    }

    /// The receiver's TLS: the server certificate, and, when `require_client_cert`,
    /// the CA every client certificate must chain to.
    pub fn server_tls(&self, require_client_cert: bool) -> ServerTls {
        ServerTls {
            cert_pem: self.server.cert_pem.clone(),
            key_pem: self.server.key_pem.clone(),
            client_ca_pem: require_client_cert.then(|| self.ca_pem.clone()),
        }
    }

    /// Writes the CA and the client pairs as PEM files into `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        let put = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
            path
        };
        PkiFiles {
            ca: put("ca.pem", &self.ca_pem),
            client_cert: put("client.pem", &self.client.cert_pem),
            client_key: put("client-key.pem", &self.client.key_pem),
            stranger_cert: put("stranger.pem", &self.stranger.cert_pem),
            stranger_key: put("stranger-key.pem", &self.stranger.key_pem),
        }
    }
}
