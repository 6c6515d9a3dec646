//! Plugins from an OCI registry: a real one (Debian's `docker-registry`,
//! CNCF distribution) started on loopback with password auth, and the real
//! binary. `wasmgate plugins push` publishes a component, its manifest and
//! its signature; the admin API installs by tag and by digest; the policy's
//! `oci = …` installs and pins a tag. A signature is checked on the way in:
//! signed components serve, unsigned and tampered ones (a signature over
//! another component, a blob changed inside the registry) are refused with
//! a reason while the previous version keeps serving. Credentials are the
//! operator's: without them the registry refuses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mcp::greets;
use crate::support::{TestServer, test_plugins_dir};

/// Where Debian's package puts the registry (`cargo xtask test` installs it).
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const ADMIN: &str = "admin-token-for-oci";
const USER: &str = "pusher";
const PASSWORD: &str = "hunter2-registry";
/// bcrypt (cost 4, so each request's check is quick) of [`PASSWORD`].
const PASSWORD_HASH: &str = "$2b$04$3DrhDdb4IQ8e0pwFRPFxw.I6g4Ae.o6fxMioJGuQ3/YwtsS1WP4qm";
const GREETER: &str = "name = \"greeter\"\nversion = \"1.0.0\"\nkind = \"tool\"\n";

/// A registry on a loopback port, with its storage and credentials in a
/// temporary directory; stopped on drop.
struct Registry {
    child: Child,
    host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "the OCI tests need Debian's docker-registry (cargo xtask test installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("{USER}:{PASSWORD_HASH}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("storage").display(),
                dir.path().join("htpasswd").display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("auth.json"),
            json!({"auths": {host.clone(): {"auth": base64::engine::general_purpose::STANDARD
                .encode(format!("{USER}:{PASSWORD}"))}}})
            .to_string(),
        )
        .unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry { child, host, dir };
        for _ in 0..100 {
            // 401 without credentials: it is up.
            if reqwest::get(format!("http://{}/v2/", registry.host))
                .await
                .is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED)
            {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the registry never answered");
    }

    /// `oci://<host>/wasmgate/greeter<tail>`.
    fn reference(&self, tail: &str) -> String {
        format!("oci://{}/wasmgate/greeter{tail}", self.host)
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// The operator's settings for this registry: its credentials, over
    /// plain HTTP.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "WASMGATE_OCI_AUTH_FILE",
                self.auth_file().display().to_string(),
            ),
            ("WASMGATE_OCI_INSECURE", self.host.clone()),
        ]
    }

    /// The stored blob with `digest` (`sha256:…`), as distribution lays it out.
    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wasmgate(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A folder of greeter builds to push: `v<N>.wasm` with its manifest, signed
/// by the key made here unless `unsigned`.
struct Builds {
    dir: tempfile::TempDir,
    public_key: String,
}

impl Builds {
    fn new() -> Builds {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing.key");
        let (ok, public) = wasmgate(&["plugins", "keygen", "--out", key.to_str().unwrap()], &[]);
        assert!(ok, "{public}");
        Builds {
            dir,
            public_key: public.trim().to_string(),
        }
    }

    /// `greeter-v<version>` as `<label>.wasm`, with its manifest and, if
    /// `signed`, its signature.
    fn build(&self, label: &str, version: u8, signed: bool) -> PathBuf {
        let file = self.dir.path().join(format!("{label}.wasm"));
        std::fs::copy(
            test_plugins_dir().join(format!("greeter-v{version}.wasm")),
            &file,
        )
        .unwrap();
        std::fs::write(file.with_extension("toml"), GREETER).unwrap();
        if signed {
            let key = self.dir.path().join("signing.key");
            let (ok, text) = wasmgate(
                &[
                    "plugins",
                    "sign",
                    "--key",
                    key.to_str().unwrap(),
                    file.to_str().unwrap(),
                ],
                &[],
            );
            assert!(ok, "{text}");
        }
        file
    }

    /// A policy trusting this key and requiring greeter's signature.
    fn policy(&self, extra: &str) -> String {
        format!(
            "trusted_keys = [\"{}\"]\n\n[plugins.greeter]\nrequire_signature = true\n{extra}",
            self.public_key
        )
    }
}

/// Pushes `file` to `reference`; the pinned reference it printed.
fn push(registry: &Registry, file: &Path, reference: &str) -> String {
    let (ok, text) = wasmgate(
        &["plugins", "push", file.to_str().unwrap(), reference],
        &registry.env(),
    );
    assert!(ok, "push failed: {text}");
    let pinned = text.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        pinned.starts_with(&registry.reference("@sha256:")),
        "{text}"
    );
    pinned
}

async fn start(plugins: &Path, registry: &Registry) -> TestServer {
    let mut env = registry.env();
    env.push(("WASMGATE_ADMIN_TOKEN", ADMIN.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(plugins, &env).ready().await
}

async fn install(server: &TestServer, reference: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/admin/plugins/greeter/install"))
        .bearer_auth(ADMIN)
        .json(&json!({ "reference": reference }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The greeter's entry in the admin list.
async fn listed(server: &TestServer) -> Value {
    let list: Value = reqwest::Client::new()
        .get(server.url("/admin/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "greeter")
        .cloned()
        .unwrap_or(Value::Null)
}

async fn reload(server: &TestServer) {
    let response = reqwest::Client::new()
        .post(server.url("/admin/plugins/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_plugins_install_by_tag_and_by_digest_with_their_signatures_checked() {
    let registry = Registry::start().await;
    let builds = Builds::new();

    // The registry wants the operator's credentials: without them, no push.
    let v1 = builds.build("v1", 1, true);
    let (ok, text) = wasmgate(
        &[
            "plugins",
            "push",
            v1.to_str().unwrap(),
            &registry.reference(":v1"),
        ],
        &[("WASMGATE_OCI_INSECURE", registry.host.clone())],
    );
    assert!(!ok, "pushed without credentials: {text}");

    let v1_pinned = push(&registry, &v1, &registry.reference(":v1"));
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(plugins.path().join("policy.toml"), builds.policy("")).unwrap();
    let server = start(plugins.path(), &registry).await;
    assert_eq!(greets(&server).await, Value::Null);

    // By tag: resolved, pinned, and the signature pulled with it.
    let (status, body) = install(&server, &registry.reference(":v1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(greets(&server).await, 1);
    let entry = listed(&server).await;
    assert_eq!(entry["oci"]["requested"], registry.reference(":v1"));
    assert_eq!(entry["oci"]["pinned"], v1_pinned, "{entry}");

    // By digest.
    let v2 = builds.build("v2", 2, true);
    let v2_pinned = push(&registry, &v2, &registry.reference(":v2"));
    let (status, body) = install(&server, &v2_pinned).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(greets(&server).await, 2);

    // Refused with a reason, version 2 serving on: an unsigned component,
    // one published with the signature of another component, and one whose
    // bytes were changed inside the registry.
    let unsigned = builds.build("unsigned", 1, false);
    push(&registry, &unsigned, &registry.reference(":unsigned"));
    // Version 1's component with version 2's signature.
    let resigned = builds.build("resigned", 1, false);
    std::fs::copy(v2.with_extension("sig"), resigned.with_extension("sig")).unwrap();
    let resigned_pinned = push(&registry, &resigned, &registry.reference(":resigned"));
    let refusals = [
        (
            registry.reference(":unsigned"),
            StatusCode::CONFLICT,
            "is not signed",
        ),
        (
            resigned_pinned,
            StatusCode::CONFLICT,
            "not one of a trusted key over this component",
        ),
    ];
    for (reference, expected, reason) in refusals {
        let (status, body) = install(&server, &reference).await;
        assert_eq!(status, expected, "{reference}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{reason}: {body}"
        );
        assert_eq!(
            greets(&server).await,
            2,
            "the previous version keeps serving"
        );
    }

    // A blob changed on the registry's disk no longer has its digest.
    let v3 = builds.build("v3", 1, true);
    push(&registry, &v3, &registry.reference(":v3"));
    let layer = format!(
        "sha256:{}",
        wasmgate::plugins::sha256_hex(&std::fs::read(&v3).unwrap())
    );
    let blob = registry.blob(&layer);
    let mut stored = std::fs::read(&blob).unwrap();
    *stored.last_mut().unwrap() ^= 1;
    std::fs::write(&blob, stored).unwrap();
    let (status, body) = install(&server, &registry.reference(":v3")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("layer"),
        "{body}"
    );
    assert_eq!(greets(&server).await, 2);

    // Not there: 404; not a reference: 400.
    let (status, _) = install(&server, &registry.reference(":missing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = install(&server, "oci://greeter").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_installs_a_reference_and_keeps_it_pinned() {
    let registry = Registry::start().await;
    let builds = Builds::new();
    let v1_pinned = push(
        &registry,
        &builds.build("v1", 1, true),
        &registry.reference(":stable"),
    );

    let plugins = tempfile::tempdir().unwrap();
    let policy = plugins.path().join("policy.toml");
    let stable = format!("oci = \"{}\"\n", registry.reference(":stable"));
    std::fs::write(&policy, builds.policy(&stable)).unwrap();
    let mut server = start(plugins.path(), &registry).await;
    assert_eq!(greets(&server).await, 1);
    assert_eq!(listed(&server).await["oci"]["pinned"], v1_pinned);

    // The tag moves; what serves does not, across reloads and restarts.
    let v2_pinned = push(
        &registry,
        &builds.build("v2", 2, true),
        &registry.reference(":stable"),
    );
    reload(&server).await;
    assert_eq!(greets(&server).await, 1);
    server.kill_now();
    let server = start(plugins.path(), &registry).await;
    assert_eq!(greets(&server).await, 1, "pinned across a restart");

    // The policy names the new digest: it is pulled and serves.
    std::fs::write(&policy, builds.policy(&format!("oci = \"{v2_pinned}\"\n"))).unwrap();
    reload(&server).await;
    assert_eq!(greets(&server).await, 2);

    // An unsigned one is refused before it is written: version 2 serves,
    // reported stale with the reason, and still after a restart.
    push(
        &registry,
        &builds.build("unsigned", 1, false),
        &registry.reference(":unsigned"),
    );
    let unsigned = format!("oci = \"{}\"\n", registry.reference(":unsigned"));
    std::fs::write(&policy, builds.policy(&unsigned)).unwrap();
    reload(&server).await;
    assert_eq!(greets(&server).await, 2);
    let entry = listed(&server).await;
    assert_eq!(entry["state"], "stale", "{entry}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("is not signed"),
        "{entry}"
    );
    drop(server);
    let server = start(plugins.path(), &registry).await;
    assert_eq!(
        greets(&server).await,
        2,
        "the refused pull never replaced the files"
    );
}
