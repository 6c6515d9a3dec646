//! Who is calling: verification of user JWTs, and minting of HS256 tokens
//! for `wasmgate token` and dev mode.
//!
//! Two kinds of keys, never mixed up: the shared HS256 secret
//! (`BETTER_AUTH_SECRET`) and the public keys of a JWKS (`WASMGATE_JWKS_URL`,
//! EdDSA/RS256/ES256, as Better Auth issues). The algorithm a token may use
//! follows from the key that verifies it, never from the token alone, so
//! `alg: none` and HS/RS confusion cannot verify. This module knows nothing
//! about HTTP; `http::auth` maps its errors to 401.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

/// Clock skew tolerated on `exp` (and `nbf`), in seconds.
const LEEWAY_SECONDS: u64 = 30;
/// A JWKS is fetched again for an unknown `kid` at most this often.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(2);
/// The longest a JWKS may take to arrive, and the most it may weigh.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("the token names no user (no sub, user_id or id claim)")]
    NoSubject,
}

pub struct AuthConfig {
    /// HS256 shared secret; `None` disables HS256 tokens.
    pub secret: Option<Vec<u8>>,
    pub jwks: Option<JwksSource>,
    pub issuer: Option<String>,
    /// Every token's `aud` must name one of these (when any are given).
    pub audience: Vec<String>,
    /// This resource's identifiers (its public URL, and that of `/mcp`):
    /// a token from the JWKS must name one of them in `aud` (RFC 8707), so
    /// a token issued for another resource is refused. HS256 tokens, made
    /// by whoever holds the shared secret for this gateway alone, are held
    /// to `audience` only.
    pub resource: Vec<String>,
}

/// Where the public keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// This JWKS URL.
    Url(String),
    /// The `jwks_uri` of this authorization server's metadata (RFC 8414,
    /// else OpenID Connect discovery), read when keys are first needed.
    Issuer(String),
}

pub struct Authenticator {
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Vec<String>,
    resource: Vec<String>,
}

/// Keys from a JWKS, cached by `kid`, refreshed when a token names a `kid`
/// the cache lacks.
struct Jwks {
    source: JwksSource,
    /// The JWKS URL, once known (discovered for an issuer).
    url: tokio::sync::OnceCell<String>,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// Serialises refreshes and remembers the last one.
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<Value>,
    user_id: Option<Value>,
    id: Option<Value>,
    /// OAuth scopes, space-separated (RFC 8693 section 4.2, RFC 9068).
    scope: Option<String>,
    /// The same as an array or a string, as some identity providers send it.
    scp: Option<Value>,
}

/// Who a verified token speaks for, and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub user: String,
    pub scopes: Scopes,
}

/// What a token's scopes allow. A token without a scope claim (an HS256
/// token from `wasmgate token`, or a provider that issues none) may use
/// every tool; a token with one may use the tools whose scope it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Scopes {
    #[default]
    Unrestricted,
    Only(std::collections::BTreeSet<String>),
}

impl Scopes {
    /// Whether a tool needing `needed` (`None`: the tool names no scope)
    /// may be used. A tool without a scope is for unrestricted tokens only.
    pub fn allow(&self, needed: Option<&str>) -> bool {
        match self {
            Scopes::Unrestricted => true,
            Scopes::Only(granted) => needed.is_some_and(|scope| granted.contains(scope)),
        }
    }

    /// The scopes as the space-separated text a token's `scope` claim holds.
    pub fn to_claim(&self) -> Option<String> {
        match self {
            Scopes::Unrestricted => None,
            Scopes::Only(granted) => Some(granted.iter().cloned().collect::<Vec<_>>().join(" ")),
        }
    }

    /// Scopes from a `scope` claim's text (`None`: no claim).
    pub fn from_claim(claim: Option<&str>) -> Scopes {
        match claim {
            None => Scopes::Unrestricted,
            Some(text) => Scopes::Only(text.split_whitespace().map(str::to_string).collect()),
        }
    }

    fn from_claims(scope: Option<String>, scp: Option<Value>) -> Scopes {
        match (scope, scp) {
            (Some(scope), _) => Scopes::from_claim(Some(&scope)),
            (None, Some(Value::String(scp))) => Scopes::from_claim(Some(&scp)),
            (None, Some(Value::Array(scp))) => Scopes::Only(
                scp.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            (None, None) => Scopes::Unrestricted,
            // A claim of another shape grants nothing, rather than everything.
            (None, Some(_)) => Scopes::Only(Default::default()),
        }
    }
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Authenticator {
        Authenticator {
            hs256: config.secret.as_deref().map(DecodingKey::from_secret),
            jwks: config.jwks.map(|source| Jwks {
                source,
                url: tokio::sync::OnceCell::new(),
                client: reqwest::Client::builder()
                    .timeout(JWKS_TIMEOUT)
                    .build()
                    .expect("building a reqwest client with a timeout cannot fail"),
                keys: RwLock::new(HashMap::new()),
                last_fetch: Mutex::new(None),
            }),
            issuer: config.issuer,
            audience: config.audience,
            resource: config.resource,
        }
    }

    /// The user a bearer token speaks for, and its scopes.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| AuthError::Invalid(err.to_string()))?;
        let (key, algorithm) = match header.alg {
            Algorithm::HS256 => match &self.hs256 {
                Some(key) => (key.clone(), Algorithm::HS256),
                None => {
                    return Err(AuthError::Invalid(
                        "HS256 tokens are not accepted here".into(),
                    ));
                }
            },
            Algorithm::HS384 | Algorithm::HS512 => {
                return Err(AuthError::Invalid(format!(
                    "{:?} is not accepted",
                    header.alg
                )));
            }
            _ => match &self.jwks {
                Some(jwks) => jwks.key(header.kid.as_deref(), header.alg).await?,
                None => {
                    return Err(AuthError::Invalid(format!(
                        "{:?} tokens need a JWKS, and none is configured",
                        header.alg
                    )));
                }
            },
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp"]);
        let audience = if !self.audience.is_empty() || algorithm == Algorithm::HS256 {
            &self.audience
        } else {
            &self.resource
        };
        validation.validate_aud = !audience.is_empty();
        if !audience.is_empty() {
            validation.set_audience(audience);
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(err.to_string()),
            })?
            .claims;
        let user = [claims.sub, claims.user_id, claims.id]
            .into_iter()
            .flatten()
            .find_map(|value| match value {
                Value::String(s) if !s.trim().is_empty() => Some(s),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or(AuthError::NoSubject)?;
        Ok(Caller {
            user,
            scopes: Scopes::from_claims(claims.scope, claims.scp),
        })
    }
}

impl Jwks {
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(found) = self.lookup(kid, alg).await {
            return Ok(found);
        }
        self.refresh().await;
        self.lookup(kid, alg)
            .await
            .ok_or_else(|| AuthError::Invalid("no JWKS key matches the token".into()))
    }

    /// The key named by `kid` (or the only key, without one), provided its
    /// algorithm is the token's.
    async fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<(DecodingKey, Algorithm)> {
        let keys = self.keys.read().await;
        let found = match kid {
            Some(kid) => keys.get(kid),
            None if keys.len() == 1 => keys.values().next(),
            None => None,
        };
        found.filter(|(_, key_alg)| *key_alg == alg).cloned()
    }

    async fn refresh(&self) {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
            return;
        }
        *last_fetch = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(source = ?self.source, keys = keys.len(), "JWKS loaded");
                *self.keys.write().await = keys;
            }
            Err(err) => tracing::warn!(source = ?self.source, error = %err, "JWKS fetch failed"),
        }
    }

    /// The JWKS URL: given, or discovered from the issuer's metadata.
    async fn url(&self) -> anyhow::Result<&str> {
        let url = self
            .url
            .get_or_try_init(|| async {
                match &self.source {
                    JwksSource::Url(url) => Ok(url.clone()),
                    JwksSource::Issuer(issuer) => self.discover(issuer).await,
                }
            })
            .await?;
        Ok(url)
    }

    async fn discover(&self, issuer: &str) -> anyhow::Result<String> {
        let base = issuer.trim_end_matches('/');
        let mut last = None;
        for well_known in ["oauth-authorization-server", "openid-configuration"] {
            let url = format!("{base}/.well-known/{well_known}");
            let metadata = async {
                let response = self.client.get(&url).send().await?.error_for_status()?;
                let body = response.bytes().await?;
                anyhow::ensure!(
                    body.len() <= JWKS_MAX_BYTES,
                    "metadata larger than {JWKS_MAX_BYTES} bytes"
                );
                Ok(serde_json::from_slice::<Value>(&body)?)
            };
            match metadata.await {
                Ok(metadata) => match metadata["jwks_uri"].as_str() {
                    Some(jwks) => {
                        tracing::info!(issuer, jwks, "JWKS discovered");
                        return Ok(jwks.to_string());
                    }
                    None => last = Some(anyhow::anyhow!("{url} names no jwks_uri")),
                },
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no metadata")))
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let url = self.url().await?;
        let response = self.client.get(url).send().await?.error_for_status()?;
        let body = response.bytes().await?;
        anyhow::ensure!(
            body.len() <= JWKS_MAX_BYTES,
            "JWKS larger than {JWKS_MAX_BYTES} bytes"
        );
        let set: JwkSet = serde_json::from_slice(&body)?;
        let mut keys = HashMap::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let Some(algorithm) = public_key_algorithm(&jwk.algorithm) else {
                continue; // symmetric or unsupported keys never verify here
            };
            let kid = jwk
                .common
                .key_id
                .clone()
                .unwrap_or_else(|| index.to_string());
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (key, algorithm));
                }
                Err(err) => tracing::warn!(kid, error = %err, "skipping an unusable JWKS key"),
            }
        }
        Ok(keys)
    }
}

/// The one algorithm a public key verifies. Symmetric keys get `None`: a
/// JWKS must never turn into an HMAC secret.
fn public_key_algorithm(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => {
            (okp.curve == EllipticCurve::Ed25519).then_some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// An HS256 token for `user`, valid for `ttl`, holding `scope` (space-
/// separated) if given, else unrestricted.
pub fn mint(secret: &[u8], user: &str, ttl: Duration, scope: Option<&str>) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub: user,
        iat: now,
        exp: now + ttl.as_secs(),
        scope,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encoding HS256 claims of plain strings and integers cannot fail")
}

/// A fresh random secret for dev mode, valid for this run only.
pub fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).expect("the OS random source is available");
    secret
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scope_claims_decide_which_tools_a_token_may_use() {
        // (scope claim, scp claim, tool's scope, allowed)
        let cases = [
            (None, None, Some("tasks:write"), true),
            (None, None, None, true),
            (Some("tasks:read"), None, Some("tasks:read"), true),
            (Some("tasks:read"), None, Some("tasks:write"), false),
            (Some("tasks:read"), None, None, false),
            (Some(""), None, Some("tasks:read"), false),
            (Some("openid  tasks:write"), None, Some("tasks:write"), true),
            (None, Some(json!(["tasks:read"])), Some("tasks:read"), true),
            (
                None,
                Some(json!("tasks:read tasks:write")),
                Some("tasks:write"),
                true,
            ),
            (None, Some(json!(42)), Some("tasks:write"), false),
            // `scope` wins over `scp`.
            (
                Some("tasks:read"),
                Some(json!(["tasks:write"])),
                Some("tasks:write"),
                false,
            ),
        ];
        for (scope, scp, needed, allowed) in cases {
            let scopes = Scopes::from_claims(scope.map(str::to_string), scp.clone());
            assert_eq!(
                scopes.allow(needed),
                allowed,
                "scope {scope:?}, scp {scp:?}, tool needs {needed:?}"
            );
        }
        let only = Scopes::from_claim(Some("b a"));
        assert_eq!(only.to_claim().as_deref(), Some("a b"));
        assert_eq!(Scopes::Unrestricted.to_claim(), None);
    }
}
