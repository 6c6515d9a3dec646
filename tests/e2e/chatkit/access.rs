//! Who may talk to the ChatKit door: client-secret sessions and CORS.

use super::*;

#[tokio::test]
async fn sessions_issue_expire_cancel_and_rate_limit_secrets() {
    each_backend(sessions_issue_expire_cancel_and_rate_limit_secrets_on).await;
}

async fn sessions_issue_expire_cancel_and_rate_limit_secrets_on(server: TestServer) {
    let client = reqwest::Client::new();
    let create = |user: &str, body: Value| {
        client
            .post(server.url("/api/v1/chatkit/sessions"))
            .bearer_auth(token(user))
            .json(&body)
            .send()
    };
    let session: Value = create("alice", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["object"], "chatkit.session");
    assert_eq!(session["status"], "active");
    assert_eq!(session["user"], "alice");
    assert_eq!(session["id"], session["session_id"]);
    let secret = session["client_secret"].as_str().unwrap().to_string();

    // The secret works for alice's threads, and only for ChatKit.
    let kit = ChatKit::with_bearer(&server, secret.clone());
    let (_, thread) = kit.create("hello").await;
    let jwt_kit = ChatKit::new(&server, "alice");
    jwt_kit
        .ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
    let (status, _) = ChatKit::new(&server, "bob")
        .call("threads.get_by_id", json!({"thread_id": thread}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's thread");
    let status = client
        .get(server.url("/api/alice/tasks"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a secret is not a JWT");

    // A session that names no conversation opens the user's latest...
    let id: i64 = thread.strip_prefix("thr_").unwrap().parse().unwrap();
    assert!(session["conversation_id"].is_i64(), "a new one: {session}");
    let latest: Value = create("alice", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest["conversation_id"], id, "{latest}");
    assert_eq!(latest["thread_id"], thread.as_str());
    // ...or, for a user with none, a new one, named by its first message.
    let fresh: Value = create("carol", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let opened = fresh["thread_id"].as_str().unwrap().to_string();
    assert_eq!(fresh["conversation_id"].to_string(), opened["thr_".len()..]);
    let carol = ChatKit::new(&server, "carol");
    carol
        .stream(
            "threads.add_user_message",
            json!({"thread_id": opened, "input": input("Add a task to call mom")}),
        )
        .await;
    let listed = rest_get(&server, "carol", "/conversations").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["title"], "Add a task to call mom");

    // Bound to a conversation; bad bodies; another user's conversation.
    let bound: Value = create("alice", json!({"conversation_id": id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bound["thread_id"], thread.as_str());
    for (user, body, expected) in [
        ("bob", json!({"conversation_id": id}), StatusCode::NOT_FOUND),
        (
            "alice",
            json!({"expires_after": {"anchor": "created_at", "seconds": 0}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "alice",
            json!({"rate_limits": {"max_requests_per_1_minute": "many"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "alice",
            json!({"expires_after": {"anchor": "now", "seconds": 60}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = create(user, body.clone()).await.unwrap();
        assert_eq!(response.status(), expected, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string());
    }

    // Cancelled → 401; only its owner can cancel it.
    let cancel = |user: &str, id: &str| {
        client
            .post(server.url(&format!("/api/v1/chatkit/sessions/{id}/cancel")))
            .bearer_auth(token(user))
            .send()
    };
    let id = session["id"].as_str().unwrap();
    assert_eq!(
        cancel("bob", id).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let cancelled: Value = cancel("alice", id).await.unwrap().json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled.get("client_secret").is_none());
    let (status, body) = kit.call("threads.list", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Expired → 401.
    let short: Value = create(
        "alice",
        json!({"expires_after": {"anchor": "created_at", "seconds": 2}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let short_kit = ChatKit::with_bearer(&server, short["client_secret"].as_str().unwrap().into());
    assert_eq!(
        short_kit.call("threads.list", json!({})).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        short_kit.call("threads.list", json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Rate limited per session → 429 with Retry-After.
    let limited: Value = create(
        "alice",
        json!({"rate_limits": {"max_requests_per_1_minute": 2}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let limited_kit =
        ChatKit::with_bearer(&server, limited["client_secret"].as_str().unwrap().into());
    for _ in 0..2 {
        assert_eq!(
            limited_kit.call("threads.list", json!({})).await.0,
            StatusCode::OK
        );
    }
    let response = limited_kit
        .send(&json!({"type": "threads.list", "params": {}}))
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));

    // A secret cannot make sessions.
    let status = client
        .post(server.url("/api/v1/chatkit/sessions"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_preflight_answers_for_allowed_origins_only() {
    let server = TestServer::start_with(
        &plugins_dir(),
        &[(
            "WASMGATE_ALLOWED_ORIGINS",
            "http://localhost:*,https://app.example",
        )],
    )
    .ready()
    .await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/chatkit"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    for origin in ["http://localhost:5173", "https://app.example"] {
        let response = preflight(origin).await.unwrap();
        assert!(response.status().is_success(), "{origin}");
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        let allowed = response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization"), "{allowed}");
    }
    let response = preflight("https://evil.example").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
