//! Bad ChatKit requests: each gets a clear JSON error and changes nothing.

use super::*;

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let client = reqwest::Client::new();
    let raw = |bearer: Option<String>, body: &'static str| {
        let mut request = client
            .post(server.url("/api/v1/chatkit"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let alice = || Some(token("alice"));
    for (bearer, body, expected) in [
        (
            None,
            r#"{"type":"threads.list","params":{}}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("garbage".to_string()),
            r#"{"type":"threads.list","params":{}}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("cks_unknown".to_string()),
            r#"{"type":"threads.list","params":{}}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (alice(), "{not json", StatusCode::BAD_REQUEST),
        (alice(), r#"{"params":{}}"#, StatusCode::BAD_REQUEST),
        (
            alice(),
            r#"{"type":"threads.explode","params":{}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.create","params":{}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.create","params":{"input":{"content":[{"type":"input_text","text":"  "}]}}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.create","params":{"input":{"content":[{"type":"input_image"}]}}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"items.list","params":{}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"items.list","params":{"thread_id":"thr_1","limit":-1}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.list","params":{"order":"sideways"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.get_by_id","params":{"thread_id":"thr_999"}}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            alice(),
            r#"{"type":"threads.get_by_id","params":{"thread_id":"nonsense"}}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            alice(),
            r#"{"type":"threads.add_user_message","params":{"thread_id":"thr_999","input":{"content":[{"type":"input_text","text":"hi"}]}}}"#,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = raw(bearer, body).await.unwrap();
        assert_eq!(response.status(), expected, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{body}: {error}");
    }

    // Too large: 413, still JSON.
    let response = client
        .post(server.url("/api/v1/chatkit"))
        .bearer_auth(token("alice"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");

    // Another user's thread is not found, whatever the request.
    let kit = ChatKit::new(&server, "alice");
    let events = kit
        .stream("threads.create", json!({"input": input("hello")}))
        .await;
    let thread = events[0]["thread"]["id"].clone();
    let user_item = events[1]["item"]["id"].clone();
    let bob = ChatKit::new(&server, "bob");
    for (kind, params) in [
        ("threads.get_by_id", json!({"thread_id": thread})),
        ("items.list", json!({"thread_id": thread})),
        (
            "threads.update",
            json!({"thread_id": thread, "title": "mine"}),
        ),
        ("threads.delete", json!({"thread_id": thread})),
        (
            "items.feedback",
            json!({"thread_id": thread, "item_ids": [user_item], "kind": "negative"}),
        ),
        (
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input("hi")}),
        ),
        (
            "threads.retry_after_item",
            json!({"thread_id": thread, "item_id": user_item}),
        ),
        (
            "threads.custom_action",
            json!({"thread_id": thread, "action": {"type": "x"}}),
        ),
    ] {
        let (status, body) = bob.call(kind, params).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}: {body}");
    }
    // …and still there for its owner.
    kit.ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
}
