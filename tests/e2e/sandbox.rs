//! The sandbox holds: every hostile plugin is stopped with its own error,
//! within its limits, while a well-behaved plugin keeps serving beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmgate::plugins::{CallError, Runtime, Snapshot};

use crate::support::{self, load, test_plugins_dir};

/// Calls `tool` of the hostile plugin while four tasks call `echo` in a
/// loop; returns the hostile call's error, how long it took, and how many
/// echo calls succeeded meanwhile (every one must have).
async fn attack(tool: &str) -> (CallError, Duration, usize) {
    let runtime = Arc::new(support::runtime());
    let dir = test_plugins_dir();
    let hostile = load(&runtime, &dir, "hostile").await;
    let echo = load(&runtime, &dir, "echo").await;

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut bystanders = Vec::new();
    for worker in 0..4 {
        let (runtime, echo, stop, served) =
            (runtime.clone(), echo.clone(), stop.clone(), served.clone());
        bystanders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let args = json!({ "worker": worker, "n": n });
                let answer = runtime
                    .call_tool(&echo, "alice", "echo", &args.to_string())
                    .await
                    .expect("echo keeps serving during the attack");
                assert_eq!(answer, args, "echo answered another call's arguments");
                served.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::task::yield_now().await;
            }
        }));
    }

    let started = Instant::now();
    let error = runtime
        .call_tool(&hostile, "mallory", tool, "{}")
        .await
        .expect_err("a hostile call must fail");
    let took = started.elapsed();
    let served_during = served.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for bystander in bystanders {
        bystander.await.expect("no bystander panicked");
    }
    (error, took, served_during)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_meets_its_deadline() {
    let (error, took, served) = attack("spin").await;
    assert!(matches!(error, CallError::Deadline { .. }), "{error:?}");
    assert!(error.to_string().contains("3000 ms deadline"), "{error}");
    // The manifest gives 3000 ms; allow for a loaded machine, not for a hang.
    assert!(took < Duration::from_secs(6), "stopped after {took:?}");
    assert!(served > 0, "echo served nothing while spin ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_meets_its_memory_limit() {
    let (error, _, _) = attack("hog").await;
    assert!(
        matches!(error, CallError::MemoryLimit { mib: 384, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("memory limit of 384 MiB"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap() {
    let (error, _, _) = attack("crash").await;
    assert!(matches!(error, CallError::Trap { .. }), "{error:?}");
    assert!(error.to_string().contains("crashed"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_of_output_meet_the_output_limit() {
    let (error, _, _) = attack("flood").await;
    match error {
        CallError::OutputLimit { size, limit, .. } => {
            assert!(size >= 50 * 1024 * 1024, "size {size}");
            assert_eq!(limit, 1024 * 1024);
        }
        other => panic!("expected the output limit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_sockets_and_environment_are_denied() {
    let runtime = support::runtime();
    let hostile = load(&runtime, &test_plugins_dir(), "hostile").await;
    let report = runtime
        .call_tool(&hostile, "mallory", "escape", "{}")
        .await
        .unwrap();
    let file_error = report["file"]["error"].as_str().unwrap_or_default();
    let socket_error = report["socket"]["error"].as_str().unwrap_or_default();
    assert!(!file_error.is_empty(), "the file was read: {report}");
    assert!(!socket_error.is_empty(), "the socket connected: {report}");
    assert_eq!(report["env_vars"], json!(0), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_serves_again_after_each_attack() {
    let runtime = support::runtime();
    let hostile = load(&runtime, &test_plugins_dir(), "hostile").await;
    for tool in ["spin", "hog", "crash", "flood"] {
        runtime
            .call_tool(&hostile, "mallory", tool, "{}")
            .await
            .unwrap_err();
        // A fresh instance per call: the next call starts clean.
        let report = runtime.call_tool(&hostile, "mallory", "escape", "{}").await;
        assert!(report.is_ok(), "after {tool}: {report:?}");
    }
}

/// Instances are made ahead of calls and handed out by the host; whichever
/// way a call gets one (made ahead, made inline, one at a time or many at
/// once), nothing an earlier call left in it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_what_an_earlier_call_left_behind() {
    let runtime = Arc::new(support::runtime());
    let hostile = load(&runtime, &test_plugins_dir(), "hostile").await;
    let remember = |user: &'static str, n: usize| {
        let (runtime, hostile) = (runtime.clone(), hostile.clone());
        async move {
            let args = json!({ "user": user, "n": n }).to_string();
            let answer = runtime
                .call_tool(&hostile, user, "remember", &args)
                .await
                .unwrap();
            assert_eq!(answer, json!({ "previous": null }), "{user} call {n}");
        }
    };
    for n in 0..20 {
        remember(if n % 2 == 0 { "alice" } else { "mallory" }, n).await;
    }
    let concurrent: Vec<_> = (0..40)
        .map(|n| tokio::spawn(remember(if n % 2 == 0 { "alice" } else { "mallory" }, n)))
        .collect();
    for call in concurrent {
        call.await.expect("no call saw another's arguments");
    }
}

#[tokio::test]
async fn tool_errors_and_unknown_tools_are_reported() {
    let runtime = support::runtime();
    let echo = load(&runtime, &test_plugins_dir(), "echo").await;
    let error = runtime
        .call_tool(&echo, "alice", "noop", "[1, 2]")
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Tool(_)), "{error:?}");
    assert!(
        error.to_string().starts_with("invalid arguments"),
        "{error}"
    );
    let error = runtime
        .call_tool(&echo, "alice", "nope", "{}")
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no tool named \"nope\""),
        "{error}"
    );
    assert_eq!(
        runtime
            .call_tool(&echo, "alice", "noop", "{}")
            .await
            .unwrap(),
        json!({})
    );
}

#[tokio::test]
async fn a_tool_name_clash_names_both_plugins() {
    let runtime = support::runtime();
    let dir = test_plugins_dir();
    let mut snapshot = Snapshot::default();
    snapshot.insert(load(&runtime, &dir, "echo").await).unwrap();

    let manifest_text = std::fs::read_to_string(dir.join("echo.toml"))
        .unwrap()
        .replace("name = \"echo\"", "name = \"echo-copy\"");
    let manifest = wasmgate::plugins::Manifest::parse(&manifest_text).unwrap();
    let wasm = std::fs::read(dir.join("echo.wasm")).unwrap();
    let copy = Arc::new(runtime.load(manifest, &wasm).await.unwrap());
    let error = snapshot.insert(copy).unwrap_err().to_string();
    assert!(
        error.contains("\"echo-copy\"") && error.contains("\"echo\""),
        "{error}"
    );
    assert_eq!(snapshot.plugins().count(), 1);
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(wasmgate::plugins::RuntimeOptions {
        allocator: wasmgate::plugins::AllocatorChoice::OnDemand,
        cache_dir: Some(cache.path().to_path_buf()),
        tasks: None,
        kv: None,
        task_limits: Default::default(),
        compile: Default::default(),
        memory_mib: wasmgate::plugins::budget::DEFAULT_MEMORY_MIB,
    })
    .unwrap();
    let echo = load(&runtime, &test_plugins_dir(), "echo").await;
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "one compiled component cached");
    let entry = entries[0].as_ref().unwrap().path();
    assert!(
        entry
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&echo.sha256)
    );

    // A second load comes from the cache and works the same.
    let again = load(&runtime, &test_plugins_dir(), "echo").await;
    let answer: Value = runtime
        .call_tool(&again, "alice", "echo", r#"{"a":1}"#)
        .await
        .unwrap();
    assert_eq!(answer, json!({"a": 1}));

    // A corrupt entry is ignored, not trusted.
    std::fs::write(&entry, b"not machine code").unwrap();
    let recovered = load(&runtime, &test_plugins_dir(), "echo").await;
    assert_eq!(
        runtime
            .call_tool(&recovered, "alice", "noop", "{}")
            .await
            .unwrap(),
        json!({})
    );
}
