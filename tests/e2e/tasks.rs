//! Tasks: the REST API, the five tool components, and that both are doors
//! to one store, always and only for the authenticated user.

use std::sync::Arc;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use wasmgate::plugins::{CallError, PluginSource, Registry, Runtime, Snapshot};

use crate::support::{self, TestDatabase, TestServer, backends, plugins_dir, token};

/// A REST client for one user.
struct Rest {
    client: Client,
    server: TestServer,
    bearer: String,
    user: String,
}

impl Rest {
    fn new(server: TestServer, user: &str) -> Rest {
        Rest {
            client: Client::new(),
            server,
            bearer: format!("Bearer {}", token(user)),
            user: user.into(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = self.server.url(&format!("/api/{}{path}", self.user));
        let mut request = self
            .client
            .request(method.parse().unwrap(), url)
            .header("authorization", &self.bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn raw(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let url = self.server.url(&format!("/api/{}{path}", self.user));
        let response = self
            .client
            .request(method.parse().unwrap(), url)
            .header("authorization", &self.bearer)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The five task tools, loaded from `target/plugins`, acting on `store`.
struct Tools {
    runtime: Runtime,
    registry: Registry,
}

impl Tools {
    async fn new(db: &TestDatabase) -> Tools {
        let runtime = support::runtime_with(&db.store().await);
        let registry =
            Registry::new(Snapshot::load_dir(&runtime, &PluginSource::dir(&plugins_dir())).await);
        Tools { runtime, registry }
    }

    async fn call(&self, user: &str, tool: &str, args: Value) -> Result<Value, CallError> {
        let snapshot = self.registry.snapshot();
        let (plugin, _) = snapshot
            .tool(tool)
            .unwrap_or_else(|| panic!("{tool} is not loaded"));
        self.runtime
            .call_tool(plugin, user, tool, &args.to_string())
            .await
    }
}

#[tokio::test]
async fn the_rest_api_creates_reads_updates_toggles_and_deletes() {
    let rest = Rest::new(TestServer::start(&plugins_dir()).ready().await, "alice");

    let (status, created) = rest
        .send(
            "POST",
            "/tasks",
            Some(json!({"title": "  Buy milk  ", "description": "2 litres"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["title"], "Buy milk");
    assert_eq!(created["completed"], false);
    let id = created["id"].as_i64().unwrap();

    let (status, got) = rest.send("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!((status, &got), (StatusCode::OK, &created));

    let (status, updated) = rest
        .send(
            "PUT",
            &format!("/tasks/{id}"),
            Some(json!({"title": "Buy oat milk"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["title"], "Buy oat milk");
    assert_eq!(updated["description"], "2 litres", "untouched fields stay");

    let (_, toggled) = rest
        .send("PATCH", &format!("/tasks/{id}/complete"), None)
        .await;
    assert_eq!(toggled["completed"], true);
    let (_, completed) = rest.send("GET", "/tasks?status=completed", None).await;
    assert_eq!(completed.as_array().unwrap().len(), 1);
    let (_, pending) = rest.send("GET", "/tasks?status=pending", None).await;
    assert_eq!(pending, json!([]));
    let (_, toggled) = rest
        .send("PATCH", &format!("/tasks/{id}/complete"), None)
        .await;
    assert_eq!(toggled["completed"], false);

    let (status, _) = rest.send("DELETE", &format!("/tasks/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = rest.send("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], format!("task {id} not found"));
}

#[tokio::test]
async fn bad_task_input_is_a_4xx_with_a_json_body() {
    let rest = Rest::new(TestServer::start(&plugins_dir()).ready().await, "alice");
    let cases: Vec<(&str, &str, &str, StatusCode, &str)> = vec![
        (
            "POST",
            "/tasks",
            r#"{"title": "   "}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "POST",
            "/tasks",
            &*Box::leak(format!(r#"{{"title": "{}"}}"#, "x".repeat(201)).into_boxed_str()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "POST",
            "/tasks",
            &*Box::leak(
                format!(r#"{{"title": "t", "description": "{}"}}"#, "x".repeat(1001))
                    .into_boxed_str(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "POST",
            "/tasks",
            r#"{"title": 5}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/tasks",
            r#"{"description": "no title"}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/tasks",
            r#"{"title": "#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "PUT",
            "/tasks/abc",
            r#"{"title": "x"}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/tasks?status=done",
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/tasks/999999",
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/tasks/0",
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, response) = rest.raw(method, path, body).await;
        assert_eq!(got, status, "{method} {path} {body}: {response}");
        assert_eq!(
            response["error"]["code"], code,
            "{method} {path}: {response}"
        );
    }
}

#[tokio::test]
async fn tools_and_rest_share_one_store_and_never_cross_users() {
    for backend in backends() {
        let db = TestDatabase::new(backend).await;
        share_one_store(&db).await;
    }
}

async fn share_one_store(db: &TestDatabase) {
    let server = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
        .ready()
        .await;
    let alice = Rest::new(server, "alice");
    let tools = Tools::new(db).await;

    // A tool adds, REST lists.
    let added = tools
        .call("alice", "add_task", json!({"title": "Buy groceries"}))
        .await
        .unwrap();
    let id = added["task_id"].as_i64().unwrap();
    assert_eq!(
        added,
        json!({"task_id": id, "status": "created", "title": "Buy groceries"})
    );
    let (_, listed) = alice.send("GET", "/tasks", None).await;
    assert_eq!(listed[0]["id"], id);

    // REST adds, a tool lists.
    let (_, call_mom) = alice
        .send("POST", "/tasks", Some(json!({"title": "Call mom"})))
        .await;
    let mom = call_mom["id"].as_i64().unwrap();
    let listed = tools.call("alice", "list_tasks", json!({})).await.unwrap();
    let titles: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Buy groceries", "Call mom"]);
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["next_offset"], Value::Null);
    for key in ["id", "title", "description", "completed", "created_at"] {
        assert!(
            listed["tasks"][0].get(key).is_some(),
            "list_tasks lacks {key}: {listed}"
        );
    }

    let done = tools
        .call("alice", "complete_task", json!({"task_id": mom}))
        .await
        .unwrap();
    assert_eq!(
        done,
        json!({"task_id": mom, "status": "completed", "title": "Call mom"})
    );
    let (_, got) = alice.send("GET", &format!("/tasks/{mom}"), None).await;
    assert_eq!(got["completed"], true);
    let pending = tools
        .call("alice", "list_tasks", json!({"status": "pending"}))
        .await
        .unwrap();
    assert_eq!(pending["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(pending["total"], 1);

    let updated = tools
        .call(
            "alice",
            "update_task",
            json!({"task_id": id, "title": "Call mom tonight"}),
        )
        .await
        .unwrap();
    assert_eq!(
        updated,
        json!({"task_id": id, "status": "updated", "title": "Call mom tonight"})
    );

    // Bob sees nothing of Alice's, and every tool treats her ids as missing.
    assert_eq!(
        tools.call("bob", "list_tasks", json!({})).await.unwrap(),
        json!({"tasks": [], "total": 0, "offset": 0, "next_offset": null})
    );
    for (tool, args) in [
        ("complete_task", json!({"task_id": id})),
        ("delete_task", json!({"task_id": id})),
        ("update_task", json!({"task_id": id, "title": "hijacked"})),
    ] {
        let error = tools.call("bob", tool, args).await.unwrap_err();
        assert_eq!(error.to_string(), format!("task {id} not found"), "{tool}");
    }
    let bob = Rest::new(
        TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
            .ready()
            .await,
        "bob",
    );
    for (method, path) in [
        ("GET", format!("/tasks/{id}")),
        ("PUT", format!("/tasks/{id}")),
        ("DELETE", format!("/tasks/{id}")),
        ("PATCH", format!("/tasks/{id}/complete")),
    ] {
        let (status, body) = bob
            .send(method, &path, Some(json!({"title": "hijacked"})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (_, still) = alice.send("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(still["title"], "Call mom tonight");

    let deleted = tools
        .call("alice", "delete_task", json!({"task_id": id}))
        .await
        .unwrap();
    assert_eq!(deleted["status"], "deleted");
    let (status, _) = alice.send("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tools_explain_bad_arguments() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let tools = Tools::new(&db).await;
    let cases = [
        (
            "add_task",
            json!({"title": "   "}),
            "invalid arguments: title must be 1-200 characters",
        ),
        (
            "add_task",
            json!({"title": "x".repeat(201)}),
            "invalid arguments: title must be 1-200 characters",
        ),
        (
            "add_task",
            json!({"title": "t", "description": "d".repeat(1001)}),
            "invalid arguments: description must be at most 1000",
        ),
        (
            "add_task",
            json!({"title": "t", "user_id": "bob"}),
            "invalid arguments: add_task: unknown field `user_id`",
        ),
        (
            "complete_task",
            json!({"task_id": "three"}),
            "invalid arguments: complete_task: invalid type",
        ),
        (
            "complete_task",
            json!({"task_id": 3.5}),
            "invalid arguments: complete_task: invalid type",
        ),
        (
            "delete_task",
            json!({}),
            "invalid arguments: delete_task: missing field `task_id`",
        ),
        (
            "update_task",
            json!({"task_id": 1}),
            "invalid arguments: give a new title or description",
        ),
        (
            "list_tasks",
            json!({"status": "done"}),
            "invalid arguments: list_tasks: unknown variant `done`",
        ),
        (
            "complete_task",
            json!({"task_id": 424242}),
            "task 424242 not found",
        ),
    ];
    for (tool, args, expected) in cases {
        let error = tools.call("alice", tool, args.clone()).await.unwrap_err();
        assert!(
            error.to_string().starts_with(expected),
            "{tool} {args}: {error}"
        );
    }
}

#[tokio::test]
async fn no_tool_schema_names_a_user() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let tools = Tools::new(&db).await;
    let snapshot = tools.registry.snapshot();
    let names: Vec<&str> = snapshot.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "add_task",
            "complete_task",
            "delete_task",
            "list_tasks",
            "update_task"
        ]
    );
    for tool in snapshot.tools() {
        assert!(
            !tool.input_schema.to_string().contains("user"),
            "{}: {}",
            tool.name,
            tool.input_schema
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_adds_make_two_hundred_tasks() {
    for backend in backends() {
        let db = TestDatabase::new(backend).await;
        let tools = Arc::new(Tools::new(&db).await);
        let calls: Vec<_> = (0..200)
            .map(|n| {
                let tools = tools.clone();
                tokio::spawn(async move {
                    tools
                        .call("alice", "add_task", json!({"title": format!("task {n}")}))
                        .await
                })
            })
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for call in calls {
            let added = call
                .await
                .unwrap()
                .unwrap_or_else(|err| panic!("{backend:?}: {err}"));
            ids.insert(added["task_id"].as_i64().unwrap());
        }
        assert_eq!(ids.len(), 200, "{backend:?}: distinct ids");
        let listed = tools.call("alice", "list_tasks", json!({})).await.unwrap();
        assert_eq!(listed["total"], 200, "{backend:?}: none lost");
    }
}

#[tokio::test]
async fn list_tasks_pages_through_ten_thousand_tasks() {
    let _alone = support::exclusive().await;
    use wasmgate::tasks::{NewTask, TaskRepository};

    for backend in support::backends() {
        let db = TestDatabase::new(backend).await;
        let store = db.store().await;
        for n in 0..10_000 {
            let new = NewTask {
                title: format!("task {n}"),
                description: None,
            };
            store.add("heavy", new).await.unwrap();
        }
        let tools = Tools::new(&db).await;
        let first = tools.call("heavy", "list_tasks", json!({})).await.unwrap();
        assert_eq!(first["total"], 10_000, "{backend:?}");
        assert_eq!(first["tasks"].as_array().unwrap().len(), 50);
        assert_eq!(first["next_offset"], 50);
        let last = tools
            .call(
                "heavy",
                "list_tasks",
                json!({"offset": 9_990, "limit": 100}),
            )
            .await
            .unwrap();
        let titles: Vec<&str> = last["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles.len(), 10, "{backend:?}");
        assert_eq!(titles[9], "task 9999");
        assert_eq!(last["next_offset"], Value::Null);
        let error = tools
            .call("heavy", "list_tasks", json!({"limit": 1000}))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("limit must be 1-100"), "{error}");
    }
}
