//! Every auth rule of docs/HTTP-API.md ("Authentication"), against the real binary.

use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{SECRET, TestServer, plugins_dir, token};

pub(crate) const KEY_1: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDioduHIlXGS8dNb6M2XsnniWMghfrDBE8ZcPSIElaOn\n-----END PRIVATE KEY-----\n";
pub(crate) const KEY_1_X: &str = "D3HKjFF1KG0NIdM5cMHzScsOFEigiGSX7ogC-VMD66w";
const KEY_2: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIIQqSJ2SIgFU6OT7q8EgHylJcEtZy/1DV4gTperanSXA\n-----END PRIVATE KEY-----\n";
const KEY_2_X: &str = "Hrj2h2JZSfiPKzprPhuDF0XrMiLplBcVHwXZprSsgKA";

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn hs256(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub(crate) fn eddsa(pem: &str, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn status_of(
    server: &TestServer,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(server.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer resource_metadata=\"")
                && challenge.ends_with("/.well-known/oauth-protected-resource\""),
            "{challenge}"
        );
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_json_body() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let alice = json!({ "sub": "alice", "exp": now() + 600 });
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&alice)
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some(format!("Basic {}", token("alice")))),
        ("garbage", Some("Bearer garbage".into())),
        ("alg none", Some(format!("Bearer {none_token}"))),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                hs256(b"another-secret", alice.clone())
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                hs256(
                    SECRET.as_bytes(),
                    json!({"sub": "alice", "exp": now() - 3600})
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                hs256(SECRET.as_bytes(), json!({"sub": "alice"}))
            )),
        ),
        (
            "no subject",
            Some(format!(
                "Bearer {}",
                hs256(SECRET.as_bytes(), json!({"exp": now() + 600}))
            )),
        ),
        (
            "empty subject",
            Some(format!(
                "Bearer {}",
                hs256(SECRET.as_bytes(), json!({"sub": " ", "exp": now() + 600}))
            )),
        ),
        (
            "EdDSA without a JWKS",
            Some(format!("Bearer {}", eddsa(KEY_1, "k1", alice.clone()))),
        ),
    ];
    for (case, authorization) in cases {
        let (status, body) = status_of(&server, "/api/alice/tasks", authorization.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{case}: {body}");
    }
}

#[tokio::test]
async fn the_user_comes_from_sub_then_user_id_then_id() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let exp = now() + 600;
    for claims in [
        json!({"sub": "alice", "exp": exp}),
        json!({"user_id": "alice", "exp": exp}),
        json!({"id": "alice", "exp": exp}),
        json!({"sub": "alice", "user_id": "bob", "exp": exp}),
    ] {
        let bearer = format!("Bearer {}", hs256(SECRET.as_bytes(), claims.clone()));
        let (status, body) = status_of(&server, "/api/alice/tasks", Some(&bearer)).await;
        assert_eq!(status, StatusCode::OK, "{claims}: {body}");
    }
}

#[tokio::test]
async fn another_users_path_is_403() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let bearer = format!("Bearer {}", token("alice"));
    for path in ["/api/bob/tasks", "/api/bob/tasks/1"] {
        let (status, body) = status_of(&server, path, Some(&bearer)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
}

/// A JWKS endpoint on loopback whose key set the test can change.
async fn jwks_server(keys: Arc<Mutex<Value>>) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move { axum::Json(keys.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks.json")
}

pub(crate) fn okp(kid: &str, x: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x, "use": "sig", "alg": "EdDSA"})
}

#[tokio::test]
async fn jwks_tokens_verify_by_their_key_and_rotation_is_picked_up() {
    let keys = Arc::new(Mutex::new(json!({ "keys": [okp("k1", KEY_1_X)] })));
    let url = jwks_server(keys.clone()).await;
    let server = TestServer::start_with(&plugins_dir(), &[("WASMGATE_JWKS_URL", &url)])
        .ready()
        .await;
    let claims = json!({"sub": "alice", "exp": now() + 600});

    let bearer = format!("Bearer {}", eddsa(KEY_1, "k1", claims.clone()));
    assert_eq!(
        status_of(&server, "/api/alice/tasks", Some(&bearer))
            .await
            .0,
        StatusCode::OK
    );

    // A key the set does not (yet) hold.
    let rotated = format!("Bearer {}", eddsa(KEY_2, "k2", claims.clone()));
    assert_eq!(
        status_of(&server, "/api/alice/tasks", Some(&rotated))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Once the set holds it, an unknown kid makes the server fetch again
    // (refetches are spaced a couple of seconds apart).
    keys.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(okp("k2", KEY_2_X));
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(
        status_of(&server, "/api/alice/tasks", Some(&rotated))
            .await
            .0,
        StatusCode::OK
    );

    // A key's token signed by another key, and an HS256 token made with
    // the public key as its secret (the classic confusion), both fail.
    let forged = format!("Bearer {}", eddsa(KEY_2, "k1", claims.clone()));
    assert_eq!(
        status_of(&server, "/api/alice/tasks", Some(&forged))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let mut confused_header = Header::new(Algorithm::HS256);
    confused_header.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &confused_header,
        &claims,
        &EncodingKey::from_secret(KEY_1_X.as_bytes()),
    )
    .unwrap();
    let confused = format!("Bearer {confused}");
    assert_eq!(
        status_of(&server, "/api/alice/tasks", Some(&confused))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
