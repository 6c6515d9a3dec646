//! Signed components: a plain ed25519 signature over a component's sha256
//! digest, in `<name>.sig` beside `<name>.wasm`, made by `wasmgate plugins
//! sign` and required by the operator's policy (`require_signature`, with
//! the public keys it trusts in `trusted_keys`).
//!
//! Text formats, one line each: a public key is `ed25519:<base64>`, a
//! secret key `ed25519-secret:<base64 of the 32-byte seed>`, a signature
//! `ed25519:<base64>`. What is signed is a fixed prefix and the digest's
//! hex, so a signature made for something else never verifies here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::sha256_hex;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";
const SIGNED_PREFIX: &[u8] = b"wasmgate plugin signature v1\n";

/// A key the policy trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let bytes = decode(text.trim(), PUBLIC_PREFIX, "public key")?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("{text:?}: an ed25519 public key is 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|err| format!("{text:?}: {err}"))
    }

    /// Whether `signature` (its text) is this key's over the component
    /// whose sha256 is `sha256`.
    pub fn verifies(&self, sha256: &str, signature: &str) -> bool {
        let Ok(bytes) = decode(signature.trim(), PUBLIC_PREFIX, "signature") else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        self.0.verify(&signed(sha256), &signature).is_ok()
    }
}

/// A new key pair: (secret key text, public key text).
pub fn keygen() -> (String, String) {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS random source is available");
    let key = SigningKey::from_bytes(&seed);
    (
        format!("{SECRET_PREFIX}{}", STANDARD.encode(seed)),
        format!(
            "{PUBLIC_PREFIX}{}",
            STANDARD.encode(key.verifying_key().as_bytes())
        ),
    )
}

/// The signature text of `component` by the secret key `secret`.
pub fn sign(secret: &str, component: &[u8]) -> Result<String, String> {
    let seed: [u8; 32] = decode(secret.trim(), SECRET_PREFIX, "secret key")?
        .try_into()
        .map_err(|_| "an ed25519 secret key is a 32-byte seed".to_string())?;
    let signature = SigningKey::from_bytes(&seed).sign(&signed(&sha256_hex(component)));
    Ok(format!(
        "{PUBLIC_PREFIX}{}",
        STANDARD.encode(signature.to_bytes())
    ))
}

/// The public key text of the secret key `secret`.
pub fn public_of(secret: &str) -> Result<String, String> {
    let seed: [u8; 32] = decode(secret.trim(), SECRET_PREFIX, "secret key")?
        .try_into()
        .map_err(|_| "an ed25519 secret key is a 32-byte seed".to_string())?;
    let key = SigningKey::from_bytes(&seed).verifying_key();
    Ok(format!(
        "{PUBLIC_PREFIX}{}",
        STANDARD.encode(key.as_bytes())
    ))
}

fn signed(sha256: &str) -> Vec<u8> {
    [SIGNED_PREFIX, sha256.to_ascii_lowercase().as_bytes()].concat()
}

fn decode(text: &str, prefix: &str, what: &str) -> Result<Vec<u8>, String> {
    let encoded = text
        .strip_prefix(prefix)
        .ok_or_else(|| format!("a {what} starts with {prefix:?}"))?;
    STANDARD
        .decode(encoded)
        .map_err(|err| format!("a {what} is base64 after {prefix:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_key_and_component_only() {
        let (secret, public) = keygen();
        let (_, other) = keygen();
        let key = PublicKey::parse(&public).unwrap();
        let component = b"\0asm component bytes";
        let signature = sign(&secret, component).unwrap();
        assert_eq!(public_of(&secret).unwrap(), public);
        assert!(key.verifies(&sha256_hex(component), &signature));
        assert!(!key.verifies(&sha256_hex(b"another component"), &signature));
        assert!(
            !PublicKey::parse(&other)
                .unwrap()
                .verifies(&sha256_hex(component), &signature)
        );
        for garbage in ["", "ed25519:", "ed25519:!!!", "rsa:AAAA"] {
            assert!(
                !key.verifies(&sha256_hex(component), garbage),
                "{garbage:?}"
            );
        }
        for bad in ["ed25519:AAAA", "nope", &secret] {
            assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            sign(&public, component).is_err(),
            "a public key cannot sign"
        );
    }
}
