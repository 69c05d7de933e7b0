//! Signing keys: generating them, decoding stored ones, and their public JWK form.

use std::fmt;

use authgate_application::ports::{
    KeyMaterial, PublicJwk, PublicKeyParams, SigningAlgorithm, StoredKey,
};
use authgate_domain::Timestamp;
use ed25519_dalek::SigningKey as Ed25519SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};

use crate::CryptoError;
use crate::random::{base64url, os_random};

/// RSA modulus size of generated keys; RFC 7518 §3.3 requires at least 2048 bits.
const RSA_BITS: usize = 2048;

/// The DER prefix of a PKCS#8 v1 (RFC 5208 / RFC 8410 §7) Ed25519 private key, before the
/// 32-byte seed: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET
/// STRING (32) } }. jsonwebtoken's `EncodingKey::from_ed_der` accepts this form, not the v2
/// form with the public key that ed25519-dalek's `to_pkcs8_der` writes.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new random signing key for `algorithm`, created at `now`, with an RFC 7638 thumbprint
/// as its `kid`. Ed25519 keys are stored as 48-byte PKCS#8 v1, RSA keys (2048-bit) as PKCS#8.
///
/// RSA generation takes a noticeable fraction of a second: call it off the async workers.
///
/// # Errors
///
/// [`CryptoError::UnsupportedAlgorithm`] for HS256, whose key is the configured secret;
/// [`CryptoError::Random`] or [`CryptoError::KeyGeneration`] if generation fails.
pub fn generate_key(algorithm: SigningAlgorithm, now: Timestamp) -> Result<StoredKey, CryptoError> {
    let private_key = match algorithm {
        SigningAlgorithm::EdDsa => ed25519_pkcs8_v1(&os_random::<32>()?),
        SigningAlgorithm::Rs256 => {
            let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, RSA_BITS).map_err(|error| {
                CryptoError::KeyGeneration {
                    algorithm,
                    source: error.to_string().into(),
                }
            })?;
            let der = key
                .to_pkcs8_der()
                .map_err(|error| CryptoError::KeyGeneration {
                    algorithm,
                    source: error.to_string().into(),
                })?;
            der.as_bytes().to_vec()
        }
        SigningAlgorithm::Hs256 => return Err(CryptoError::UnsupportedAlgorithm(algorithm)),
    };
    let mut stored = StoredKey {
        kid: String::new(),
        algorithm,
        private_key: KeyMaterial(private_key),
        created_at: now,
        retired_at: None,
    };
    stored.kid = ParsedKey::parse(&stored)?.public.kid_thumbprint();
    Ok(stored)
}

/// The PKCS#8 v1 DER of the Ed25519 key with this seed.
pub(crate) fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len());
    der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    der.extend_from_slice(seed);
    der
}

/// A stored key decoded into what jsonwebtoken signs and verifies with.
pub(crate) struct ParsedKey {
    pub(crate) encoding: EncodingKey,
    /// The Ed25519 key itself, to sign with directly (see `signer::SigningKey`).
    pub(crate) ed25519: Option<Box<Ed25519SigningKey>>,
    pub(crate) decoding: DecodingKey,
    pub(crate) public: PublicParams,
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ParsedKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The public half of an asymmetric key, base64url-encoded as in a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicParams {
    /// RFC 8037 `x`.
    Ed25519 { x: String },
    /// RFC 7518 §6.3.1 `n` and `e`.
    Rsa { n: String, e: String },
}

impl PublicParams {
    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order,
    /// without whitespace. Every member is base64url, so no JSON escaping is needed.
    pub(crate) fn kid_thumbprint(&self) -> String {
        base64url(&self.thumbprint())
    }

    /// The RFC 7638 thumbprint as bytes: names the public key, whatever its `kid`.
    pub(crate) fn thumbprint(&self) -> [u8; 32] {
        let canonical = match self {
            Self::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        Sha256::digest(canonical.as_bytes()).into()
    }

    /// The JWKS entry for this key under `kid`.
    pub(crate) fn to_jwk(&self, kid: &str, algorithm: SigningAlgorithm) -> PublicJwk {
        let key = match self {
            Self::Ed25519 { x } => PublicKeyParams::Ed25519 { x: x.clone() },
            Self::Rsa { n, e } => PublicKeyParams::Rsa {
                n: n.clone(),
                e: e.clone(),
            },
        };
        PublicJwk {
            kid: kid.to_owned(),
            algorithm,
            key,
        }
    }
}

impl ParsedKey {
    /// Decodes a stored EdDSA or RS256 key.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidStoredKey`] if the DER is not a key of the stated algorithm,
    /// [`CryptoError::UnsupportedAlgorithm`] for HS256.
    pub(crate) fn parse(stored: &StoredKey) -> Result<Self, CryptoError> {
        let invalid = |reason| CryptoError::InvalidStoredKey {
            kid: stored.kid.clone(),
            algorithm: stored.algorithm,
            reason,
        };
        let der = stored.private_key.0.as_slice();
        match stored.algorithm {
            SigningAlgorithm::EdDsa => {
                // Accepts v1 and v2 (RFC 8410 §7); jsonwebtoken gets the v1 re-encoding.
                let signing_key = Ed25519SigningKey::from_pkcs8_der(der)
                    .map_err(|_| invalid("not an Ed25519 PKCS#8 private key"))?;
                let x = base64url(signing_key.verifying_key().as_bytes());
                let decoding = DecodingKey::from_ed_components(&x)
                    .map_err(|_| invalid("unusable public key"))?;
                Ok(Self {
                    encoding: EncodingKey::from_ed_der(&ed25519_pkcs8_v1(signing_key.as_bytes())),
                    ed25519: Some(Box::new(signing_key)),
                    decoding,
                    public: PublicParams::Ed25519 { x },
                })
            }
            SigningAlgorithm::Rs256 => {
                let private_key = rsa::PrivateKey::from_pkcs8_der(der)
                    .map_err(|_| invalid("not an RSA PKCS#8 private key"))?;
                if private_key.size() * 8 < RSA_BITS {
                    return Err(invalid("the modulus is shorter than 2048 bits"));
                }
                // jsonwebtoken's RustCrypto backend reads RSA private keys as PKCS#1.
                let pkcs1 = private_key
                    .to_pkcs1_der()
                    .map_err(|_| invalid("cannot be re-encoded as PKCS#1"))?;
                let (n, e) = (private_key.n_bytes(), private_key.e_bytes());
                Ok(Self {
                    encoding: EncodingKey::from_rsa_der(pkcs1.as_bytes()),
                    ed25519: None,
                    decoding: DecodingKey::from_rsa_raw_components(&n, &e),
                    public: PublicParams::Rsa {
                        n: base64url(&n),
                        e: base64url(&e),
                    },
                })
            }
            SigningAlgorithm::Hs256 => Err(CryptoError::UnsupportedAlgorithm(stored.algorithm)),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);

    #[test]
    fn generated_ed25519_keys_are_48_byte_pkcs8_v1_that_jsonwebtoken_signs_with() {
        let key = generate_key(SigningAlgorithm::EdDsa, NOW).unwrap();
        let parsed = ParsedKey::parse(&key).unwrap();

        let signature = jsonwebtoken::crypto::sign(
            b"message",
            &EncodingKey::from_ed_der(&key.private_key.0),
            jsonwebtoken::Algorithm::EdDSA,
        )
        .unwrap();
        let verified = jsonwebtoken::crypto::verify(
            &signature,
            b"message",
            &parsed.decoding,
            jsonwebtoken::Algorithm::EdDSA,
        );

        assert_eq!(key.private_key.0.len(), 48);
        assert_eq!(key.private_key.0[..16], ED25519_PKCS8_V1_PREFIX);
        assert_eq!(key.algorithm, SigningAlgorithm::EdDsa);
        assert_eq!((key.created_at, key.retired_at), (NOW, None));
        assert!(verified.unwrap());
    }

    #[test]
    fn the_ed25519_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 Appendix A.1 and A.3.
        let seed = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let stored = StoredKey {
            kid: "k".into(),
            algorithm: SigningAlgorithm::EdDsa,
            private_key: KeyMaterial(ed25519_pkcs8_v1(&seed.try_into().unwrap())),
            created_at: NOW,
            retired_at: None,
        };

        let public = ParsedKey::parse(&stored).unwrap().public;

        assert_eq!(
            public,
            PublicParams::Ed25519 {
                x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()
            }
        );
        assert_eq!(
            public.kid_thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn the_rsa_kid_is_the_rfc_7638_thumbprint() {
        // RFC 7638 §3.1.
        let public = PublicParams::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };

        assert_eq!(
            public.kid_thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn a_stored_pkcs8_v2_ed25519_key_is_accepted_too() {
        let seed = [7_u8; 32];
        let public = Ed25519SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        // RFC 8410 §10.3: version 1 (v2) with the public key as [1] IMPLICIT BIT STRING.
        let mut v2 = vec![
            0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v2.extend_from_slice(&seed);
        v2.extend_from_slice(&[0x81, 0x21, 0x00]);
        v2.extend_from_slice(&public);
        let v1 = ed25519_pkcs8_v1(&seed);
        let stored = |der: Vec<u8>| StoredKey {
            kid: "k".into(),
            algorithm: SigningAlgorithm::EdDsa,
            private_key: KeyMaterial(der),
            created_at: NOW,
            retired_at: None,
        };

        let from_v2 = ParsedKey::parse(&stored(v2)).unwrap();
        let from_v1 = ParsedKey::parse(&stored(v1)).unwrap();

        assert_eq!(from_v2.public, from_v1.public);
    }

    #[test]
    fn generated_rsa_keys_are_2048_bit_pkcs8_with_a_thumbprint_kid() {
        let key = generate_key(SigningAlgorithm::Rs256, NOW).unwrap();

        let parsed = ParsedKey::parse(&key).unwrap();
        let private_key = rsa::PrivateKey::from_pkcs8_der(&key.private_key.0).unwrap();

        assert_eq!(private_key.size(), 256);
        assert_eq!(key.kid, parsed.public.kid_thumbprint());
        assert!(matches!(parsed.public, PublicParams::Rsa { ref e, .. } if e == "AQAB"));
    }

    #[test]
    fn hs256_keys_are_never_generated() {
        assert!(matches!(
            generate_key(SigningAlgorithm::Hs256, NOW),
            Err(CryptoError::UnsupportedAlgorithm(SigningAlgorithm::Hs256))
        ));
    }

    #[test]
    fn garbage_or_mislabelled_stored_keys_are_refused_without_echoing_them() {
        let ed25519 = generate_key(SigningAlgorithm::EdDsa, NOW).unwrap();
        let mislabelled = StoredKey {
            algorithm: SigningAlgorithm::Rs256,
            ..ed25519.clone()
        };
        let garbage = StoredKey {
            private_key: KeyMaterial(vec![1, 2, 3]),
            ..ed25519
        };

        for stored in [mislabelled, garbage] {
            let error = ParsedKey::parse(&stored).unwrap_err();

            assert!(matches!(error, CryptoError::InvalidStoredKey { .. }));
            assert!(!error.to_string().contains("[1, 2, 3]"));
        }
    }
}
