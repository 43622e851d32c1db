//! TLS 1.3 with raw Ed25519 public keys (RFC 7250) and mutual authentication.
//!
//! Every node presents its identity key as a raw public key (no certificates, no CAs): the
//! key a peer proves possession of in the handshake *is* its node id. Both verifiers check the
//! handshake signature against the presented key with ring, so a peer cannot claim a key it
//! does not hold. A client that pins a node id refuses every other key.
//!
//! Only the ring provider is built (rustls's default aws-lc provider is turned off in the
//! root Cargo.toml), only TLS 1.3 is offered, and the ALPN is [`ALPN`].

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};

use crate::identity::{Identity, NodeId};

/// The ALPN protocol id. A peer speaking another major protocol fails the TLS handshake.
pub const ALPN: &[u8] = b"superpeer/1";

/// The TLS server name we send. Raw public keys carry no names; identity is the key.
pub const SERVER_NAME: &str = "superpeer.invalid";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the key or the protocol settings.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The raw public key (SubjectPublicKeyInfo DER) that stands for `node_id` in the handshake.
pub fn spki_der(node_id: &NodeId) -> Vec<u8> {
    let mut der = Vec::with_capacity(44);
    der.extend_from_slice(&SPKI_ED25519_PREFIX);
    der.extend_from_slice(node_id.as_bytes());
    der
}

/// The node id in an Ed25519 SubjectPublicKeyInfo, or `None` for any other key.
pub fn node_id_from_spki(der: &[u8]) -> Option<NodeId> {
    let key = der.strip_prefix(&SPKI_ED25519_PREFIX[..])?;
    <[u8; 32]>::try_from(key).ok().map(NodeId::from_bytes)
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(
    identity: &Identity,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = provider
        .key_provider
        .load_private_key(identity.pkcs8_der().into())?;
    let spki = CertificateDer::from(spki_der(&identity.node_id()));
    Ok(Arc::new(CertifiedKey::new(vec![spki], key)))
}

/// Server side: presents `identity`, requires every client to present an Ed25519 key too.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let key = certified_key(identity, &provider)?;
    server_config_with_key(provider, key)
}

/// The server config around an already loaded key (tests present mismatched ones).
pub(crate) fn server_config_with_key(
    provider: Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = Arc::new(ClientKeyVerifier {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(key),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Client side: presents `identity`; accepts a server whose key is `expected`, or any
/// Ed25519 key when `expected` is `None` (the caller then learns the id from the connection).
pub fn client_config(
    identity: &Identity,
    expected: Option<NodeId>,
) -> Result<(rustls::ClientConfig, PresentedKey), TlsError> {
    let provider = provider();
    let key = certified_key(identity, &provider)?;
    client_config_with_key(provider, key, expected)
}

/// The key the server presented in the handshake made with one client config, kept even
/// when the verifier refused it, so a failed pinned connect can say whom it reached instead.
#[derive(Clone, Debug, Default)]
pub struct PresentedKey(Arc<OnceLock<NodeId>>);

impl PresentedKey {
    /// The server's node id, once a handshake got that far.
    pub fn node_id(&self) -> Option<NodeId> {
        self.0.get().copied()
    }
}

/// The client config around an already loaded key. Tests use it to present a key that does
/// not match the signer, which a verifier must refuse.
pub(crate) fn client_config_with_key(
    provider: Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
    expected: Option<NodeId>,
) -> Result<(rustls::ClientConfig, PresentedKey), TlsError> {
    let presented = PresentedKey::default();
    let verifier = Arc::new(ServerKeyVerifier {
        expected,
        presented: presented.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(key),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok((config, presented))
}

/// Accepts exactly one raw Ed25519 key: no chain, and (when pinned) the expected one.
fn check_presented_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    expected: Option<NodeId>,
) -> Result<NodeId, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::General(
            "a raw public key comes without a chain".into(),
        ));
    }
    let presented = node_id_from_spki(end_entity).ok_or(rustls::Error::InvalidCertificate(
        rustls::CertificateError::BadEncoding,
    ))?;
    match expected {
        Some(want) if want != presented => Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        )),
        _ => Ok(presented),
    }
}

fn verify_signature(
    message: &[u8],
    key: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(key.as_ref()),
        dss,
        algorithms,
    )
}

fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

#[derive(Debug)]
struct ServerKeyVerifier {
    expected: Option<NodeId>,
    presented: PresentedKey,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(id) = node_id_from_spki(end_entity) {
            let _ = self.presented.0.set(id);
        }
        check_presented_key(end_entity, intermediates, self.expected)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct ClientKeyVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_presented_key(end_entity, intermediates, None)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trips_and_rejects_other_keys() {
        let id = Identity::generate().unwrap().node_id();
        assert_eq!(node_id_from_spki(&spki_der(&id)), Some(id));
        let mut wrong_alg = spki_der(&id);
        wrong_alg[8] = 0x71; // Ed448's OID ends in 0x71
        assert_eq!(node_id_from_spki(&wrong_alg), None);
        assert_eq!(node_id_from_spki(&spki_der(&id)[..40]), None);
    }

    #[test]
    fn pinned_check_refuses_another_key() {
        let a = Identity::generate().unwrap().node_id();
        let b = Identity::generate().unwrap().node_id();
        let cert = CertificateDer::from(spki_der(&a));
        assert_eq!(check_presented_key(&cert, &[], Some(a)).unwrap(), a);
        assert!(check_presented_key(&cert, &[], None).is_ok());
        assert!(check_presented_key(&cert, &[], Some(b)).is_err());
        assert!(check_presented_key(&cert, std::slice::from_ref(&cert), None).is_err());
    }

    #[test]
    fn configs_build_with_ring_and_tls13_only() {
        let id = Identity::generate().unwrap();
        let server = server_config(&id).unwrap();
        let (client, _) = client_config(&id, None).unwrap();
        assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
    }
}
