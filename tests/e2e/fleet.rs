//! A fleet: three replicas of the real binary on one fresh PostgreSQL
//! database. A plugin uploaded through one serves on all within 2 s, a
//! removal on another removes it everywhere, a grant through a third makes
//! an ungranted upload serve on all, a broken upload serves nowhere, the chat rate limit is one for the fleet, a lost `LISTEN`
//! connection still converges through the reconcile, and `kill -9` of one
//! replica loses no acknowledged write while the others keep serving.
//! Without `WASMGATE_TEST_POSTGRES_URL` there is no fleet to test.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mcp::tool_names;
use crate::support::{
    Backend, TestDatabase, TestServer, stock_plugin_dir, test_plugins_dir, token,
};

const ADMIN: &str = "admin-token-for-the-fleet";
const GREETER: &str = "name = \"greeter\"\nversion = \"1.0.0\"\nkind = \"tool\"\n";

struct Replicas {
    servers: Vec<TestServer>,
    _dirs: Vec<tempfile::TempDir>,
    client: reqwest::Client,
}

impl Replicas {
    async fn start(db: &TestDatabase, count: usize) -> Replicas {
        let mut servers = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..count {
            // Each replica has its own plugin directory, as pods do.
            let dir = stock_plugin_dir("");
            let env = [
                ("DATABASE_URL", db.url.as_str()),
                ("WASMGATE_ADMIN_TOKEN", ADMIN),
                ("WASMGATE_CHAT_RATE_PER_MINUTE", "5"),
            ];
            servers.push(TestServer::start_with(dir.path(), &env).ready().await);
            dirs.push(dir);
        }
        Replicas {
            servers,
            _dirs: dirs,
            client: reqwest::Client::new(),
        }
    }

    async fn tools(&self, replica: usize) -> Vec<String> {
        tool_names(&self.servers[replica], &token("alice")).await
    }

    /// How long until every replica in `replicas` does (or, with `serves`
    /// false, does not) list `tool`; panics past `limit`.
    async fn converge(
        &self,
        replicas: &[usize],
        tool: &str,
        serves: bool,
        limit: Duration,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let mut done = true;
            for &replica in replicas {
                done &= self.tools(replica).await.iter().any(|t| t == tool) == serves;
            }
            if done {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{tool} serving={serves} not reached on {replicas:?} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn upload(&self, replica: usize, wasm: Vec<u8>, signature: Option<&str>) -> StatusCode {
        self.upload_as(replica, "greeter", wasm, GREETER, signature)
            .await
    }

    async fn upload_as(
        &self,
        replica: usize,
        name: &str,
        wasm: Vec<u8>,
        manifest: &str,
        signature: Option<&str>,
    ) -> StatusCode {
        let mut form = reqwest::multipart::Form::new()
            .part("component", reqwest::multipart::Part::bytes(wasm))
            .part(
                "manifest",
                reqwest::multipart::Part::text(manifest.to_string()),
            );
        if let Some(signature) = signature {
            form = form.part(
                "signature",
                reqwest::multipart::Part::text(signature.to_string()),
            );
        }
        self.client
            .put(self.servers[replica].url(&format!("/admin/plugins/{name}")))
            .bearer_auth(ADMIN)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn remove(&self, replica: usize, name: &str) -> StatusCode {
        self.client
            .delete(self.servers[replica].url(&format!("/admin/plugins/{name}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn chat(&self, replica: usize) -> StatusCode {
        self.client
            .post(self.servers[replica].url("/api/carol/chat"))
            .bearer_auth(token("carol"))
            .json(&json!({"content": "hello"}))
            .send()
            .await
            .unwrap()
            .status()
    }
}

fn greeter() -> Vec<u8> {
    std::fs::read(test_plugins_dir().join("greeter-v1.wasm")).unwrap()
}

/// The database to run a fleet on, if the suite has PostgreSQL.
async fn database() -> Option<TestDatabase> {
    if std::env::var_os("WASMGATE_TEST_POSTGRES_URL").is_none() {
        eprintln!("no WASMGATE_TEST_POSTGRES_URL: no fleet to test");
        return None;
    }
    Some(TestDatabase::new(Backend::Postgres).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_plugin_set_and_one_rate_limit() {
    let Some(db) = database().await else { return };
    let fleet = Replicas::start(&db, 3).await;
    let all = [0, 1, 2];

    // Uploaded on A: serving on B and C within 2 s.
    assert_eq!(fleet.upload(0, greeter(), None).await, StatusCode::OK);
    let took = fleet
        .converge(&all, "greet", true, Duration::from_secs(2))
        .await;
    eprintln!("upload on A served everywhere after {took:?}");
    let digests: Vec<Value> = futures::future::join_all(fleet.servers.iter().map(|s| async {
        let ready: Value = reqwest::get(s.url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ready["digests"]["greeter"].clone()
    }))
    .await;
    assert!(
        digests[0].is_string() && digests.iter().all(|d| d == &digests[0]),
        "{digests:?}"
    );

    // Removed on C: gone everywhere, a stock plugin too.
    assert_eq!(fleet.remove(2, "greeter").await, StatusCode::NO_CONTENT);
    fleet
        .converge(&all, "greet", false, Duration::from_secs(2))
        .await;
    assert_eq!(fleet.remove(2, "delete-task").await, StatusCode::NO_CONTENT);
    fleet
        .converge(&all, "delete_task", false, Duration::from_secs(2))
        .await;

    // A plugin asking for `kv`, which the policy file does not grant:
    // stored, but serving nowhere, until a grant on another replica.
    let kv_peek = |ext: &str| test_plugins_dir().join(format!("kv-peek.{ext}"));
    let manifest = std::fs::read_to_string(kv_peek("toml")).unwrap();
    let wasm = std::fs::read(kv_peek("wasm")).unwrap();
    assert_eq!(
        fleet.upload_as(0, "kv-peek", wasm, &manifest, None).await,
        StatusCode::CONFLICT
    );
    let granted = fleet
        .client
        .post(fleet.servers[2].url("/admin/plugins/kv-peek/grant"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::OK);
    let body: Value = granted.json().await.unwrap();
    assert_eq!(body["granted"]["capabilities"], json!(["kv"]), "{body}");
    let took = fleet
        .converge(&all, "kv_peek", true, Duration::from_secs(2))
        .await;
    eprintln!("grant on C served everywhere after {took:?}");
    for dir in &fleet._dirs {
        let file = std::fs::read_to_string(dir.path().join("policy.toml")).unwrap_or_default();
        assert!(
            !file.contains("kv-peek"),
            "the policy file is the operator's: {file}"
        );
    }

    // A broken upload is refused where it is made and serves nowhere.
    assert_eq!(
        fleet.upload(1, b"not a component".to_vec(), None).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for replica in all {
        assert!(!fleet.tools(replica).await.contains(&"greet".to_string()));
    }

    // One chat limit for the fleet: 5 a minute, whichever replica.
    for _ in 0..5 {
        assert_eq!(fleet.chat(0).await, StatusCode::OK);
    }
    assert_eq!(fleet.chat(1).await, StatusCode::TOO_MANY_REQUESTS);

    // The LISTEN connections cut: the reconcile still brings the change.
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(cut.len(), 3, "one LISTEN connection per replica");
    // (The same component, with a signature this time, which travels with it.)
    let signature = "ed25519:c2lnbmVkIGJ5IHRoZSB0ZXN0";
    assert_eq!(
        fleet.upload(0, greeter(), Some(signature)).await,
        StatusCode::OK
    );
    let limit = wasmgate::fleet::RECONCILE + Duration::from_secs(3);
    fleet.converge(&all, "greet", true, limit).await;
    for dir in &fleet._dirs {
        let copied = std::fs::read_to_string(dir.path().join("greeter.sig")).unwrap();
        assert_eq!(copied, signature);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_acknowledged_write() {
    let Some(db) = database().await else { return };
    let mut fleet = Replicas::start(&db, 3).await;
    let urls: Vec<String> = fleet
        .servers
        .iter()
        .map(|s| s.url("/api/dave/tasks"))
        .collect();

    // Writers on every replica; the third is killed while they run.
    let writers: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(replica, url)| {
            let (client, url) = (fleet.client.clone(), url.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut failed_after_ack = 0;
                for n in 0..150 {
                    let title = format!("replica {replica} task {n}");
                    let sent = client
                        .post(&url)
                        .bearer_auth(token("dave"))
                        .json(&json!({"title": title}))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == StatusCode::CREATED => {
                            let task: Value = response.json().await.unwrap();
                            acknowledged.push(task["id"].as_i64().unwrap());
                        }
                        _ if replica == 2 => break,
                        _ => failed_after_ack += 1,
                    }
                }
                (acknowledged, failed_after_ack)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.servers[2].kill_now();

    let mut acknowledged = Vec::new();
    for (replica, writer) in writers.into_iter().enumerate() {
        let (ids, failures) = writer.await.unwrap();
        if replica < 2 {
            assert_eq!(failures, 0, "replica {replica} kept serving");
            assert_eq!(ids.len(), 150);
        }
        acknowledged.extend(ids);
    }
    let stored: Vec<Value> = fleet
        .client
        .get(&urls[0])
        .bearer_auth(token("dave"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: std::collections::BTreeSet<i64> =
        stored.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    let missing: Vec<&i64> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(
        acknowledged.len() >= 300,
        "{} acknowledged",
        acknowledged.len()
    );
}

/// Where `cargo xtask test` finds Redis (these machines run one there).
fn redis_url() -> String {
    std::env::var("WASMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Two replicas with databases of their own (SQLite) share one chat rate
/// through Redis alone; a Redis that cannot be reached stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_share_one_chat_rate() {
    let redis = redis_url();
    // Redis outlives the test: a user of this run only.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let user = format!("redis-{}-{}", std::process::id(), started.as_nanos());
    let dirs = [stock_plugin_dir(""), stock_plugin_dir("")];
    let env = [
        ("WASMGATE_REDIS_URL", redis.as_str()),
        ("WASMGATE_CHAT_RATE_PER_MINUTE", "5"),
    ];
    let a = TestServer::start_with(dirs[0].path(), &env).ready().await;
    let b = TestServer::start_with(dirs[1].path(), &env).ready().await;
    let client = reqwest::Client::new();
    let chat = |server: &TestServer| {
        client
            .post(server.url(&format!("/api/{user}/chat")))
            .bearer_auth(token(&user))
            .json(&json!({"content": "hello"}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(chat(&a).await.unwrap().status(), StatusCode::OK);
    }
    let refused = chat(&b).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .arg("serve")
        .env("WASMGATE_LISTEN", "127.0.0.1:0")
        .env("WASMGATE_PLUGINS", dirs[0].path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dirs[1].path().join("unused.db").display()),
        )
        .env("WASMGATE_REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WASMGATE_REDIS_URL"), "{stderr}");
}
