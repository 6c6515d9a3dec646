//! OAuth discovery for MCP clients (RFC 9728, RFC 8414, RFC 8707), played
//! by this test as a client would: from a 401 on `/mcp`, through the
//! protected resource metadata and the authorization server's metadata
//! (a stub this test starts: metadata, JWKS, a token endpoint minting
//! EdDSA tokens), to a successful `tools/call`, following only the
//! metadata. The JWKS is discovered from the issuer; a token for another
//! resource is refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{KEY_1, KEY_1_X, eddsa, okp};
use crate::mcp::call;
use crate::support::{TestServer, plugins_dir};

/// The stub authorization server; its issuer URL.
async fn authorization_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": ["client_credentials"],
    });
    let token_issuer = issuer.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            axum::routing::get(move || async move { axum::Json(metadata) }),
        )
        .route(
            "/jwks.json",
            axum::routing::get(|| async { axum::Json(json!({ "keys": [okp("as-1", KEY_1_X)] })) }),
        )
        .route(
            "/token",
            axum::routing::post(move |form: axum::extract::Form<std::collections::HashMap<String, String>>| {
                let issuer = token_issuer.clone();
                async move {
                    let now = jsonwebtoken::get_current_timestamp() as i64;
                    // The audience is the resource the client asked for (RFC 8707).
                    let claims = json!({"sub": "alice", "iss": issuer, "aud": form.get("resource"),
                        "exp": now + 300, "scope": "tasks:read tasks:write"});
                    axum::Json(json!({"access_token": eddsa(KEY_1, "as-1", claims), "token_type": "Bearer", "expires_in": 300}))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

#[tokio::test]
async fn an_mcp_client_finds_its_way_from_a_401_to_a_tool_call() {
    let issuer = authorization_server().await;
    // The public URL names where the server really listens, so the client
    // can follow it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("WASMGATE_LISTEN", listen.as_str()),
        ("WASMGATE_PUBLIC_URL", public.as_str()),
        ("WASMGATE_OAUTH_ISSUER", issuer.as_str()),
    ];
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    let client = reqwest::Client::new();

    // 1. A request without a token: 401, and where to read about the resource.
    let refused = client
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let metadata_url = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no resource_metadata in {challenge:?}"))
        .to_string();
    assert_eq!(
        metadata_url,
        format!("{public}/.well-known/oauth-protected-resource/mcp")
    );

    // 2. The protected resource metadata names the resource and its server.
    let resource: Value = client
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resource["resource"], format!("{public}/mcp"), "{resource}");
    assert_eq!(resource["bearer_methods_supported"], json!(["header"]));
    assert!(
        resource["scopes_supported"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    let server_url = resource["authorization_servers"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server_url, issuer);

    // 3. The authorization server's metadata names its token endpoint.
    let authorization: Value = client
        .get(format!(
            "{server_url}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_for = async |resource: &str| -> String {
        let answer: Value = client
            .post(authorization["token_endpoint"].as_str().unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("resource", resource)
                    .finish(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_string()
    };

    // 4. A token for this resource calls a tool (the JWKS is discovered
    //    from the issuer, the audience checked).
    let token = token_for(resource["resource"].as_str().unwrap()).await;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            server.url("/mcp"),
        )
        .auth_header(token),
    );
    let mcp = rmcp::ServiceExt::serve((), transport)
        .await
        .expect("initialize succeeds");
    let listed = call(&mcp, "list_tasks", json!({})).await;
    assert_ne!(listed.is_error, Some(true), "{listed:?}");

    // A token for another resource is refused, and so is one without `aud`.
    for other in ["http://elsewhere.example/mcp".to_string(), String::new()] {
        let token = token_for(&other).await;
        let status = client
            .get(server.url("/api/alice/tasks"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "aud {other:?}");
    }
    // The REST API's own metadata is the resource's root.
    let root: Value = client
        .get(format!("{public}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["resource"], public);
}
