//! Signed plugins: `wasmgate plugins keygen | sign | verify`, and a policy
//! that requires a signature by a trusted key. The signed component serves;
//! an unsigned one, one whose signature is over another component, and one
//! signed by an untrusted key are refused with a clear reason while the
//! previous version keeps serving.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::mcp::greets;
use crate::support::{TestServer, test_plugins_dir};

const ADMIN: &str = "admin-token-for-signatures";
const GREETER: &str = "name = \"greeter\"\nversion = \"1.0.0\"\nkind = \"tool\"\n";

fn wasmgate(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A new key pair in `dir`: (secret key file, public key).
fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let secret = dir.join(name);
    let (ok, public) = wasmgate(&["plugins", "keygen", "--out", path(&secret)]);
    assert!(ok, "{public}");
    (secret, public.trim().to_string())
}

/// Version `version` of the greeter, signed with `key` (if any), as
/// upload parts: component, signature.
fn greeter(dir: &Path, version: u8, key: Option<&Path>) -> (Vec<u8>, Option<Vec<u8>>) {
    let file = dir.join(format!("greeter-v{version}.wasm"));
    std::fs::copy(
        test_plugins_dir().join(format!("greeter-v{version}.wasm")),
        &file,
    )
    .unwrap();
    let signature = key.map(|key| {
        let (ok, text) = wasmgate(&["plugins", "sign", "--key", path(key), path(&file)]);
        assert!(ok, "{text}");
        std::fs::read(file.with_extension("sig")).unwrap()
    });
    (std::fs::read(&file).unwrap(), signature)
}

async fn upload(
    server: &TestServer,
    wasm: Vec<u8>,
    signature: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("component", reqwest::multipart::Part::bytes(wasm))
        .part("manifest", reqwest::multipart::Part::text(GREETER));
    if let Some(signature) = signature {
        form = form.part("signature", reqwest::multipart::Part::bytes(signature));
    }
    let response = reqwest::Client::new()
        .put(server.url("/admin/plugins/greeter"))
        .bearer_auth(ADMIN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[test]
fn the_cli_signs_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(dir.path(), "key");
    let (_, other) = keygen(dir.path(), "other");
    assert!(public.starts_with("ed25519:"), "{public}");
    let (ok, _) = wasmgate(&["plugins", "keygen", "--out", path(&secret)]);
    assert!(!ok, "keygen never overwrites a key");

    greeter(dir.path(), 1, Some(&secret));
    let file = dir.path().join("greeter-v1.wasm");
    let (ok, text) = wasmgate(&["plugins", "verify", "--key", &public, path(&file)]);
    assert!(ok && text.contains("verified"), "{text}");
    let (ok, text) = wasmgate(&["plugins", "verify", "--key", &other, path(&file)]);
    assert!(!ok && text.contains("not signed by this key"), "{text}");

    // One byte changed: the signature no longer holds.
    let mut wasm = std::fs::read(&file).unwrap();
    *wasm.last_mut().unwrap() ^= 1;
    std::fs::write(&file, wasm).unwrap();
    let (ok, text) = wasmgate(&["plugins", "verify", "--key", &public, path(&file)]);
    assert!(!ok && text.contains("tampered"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_requires_signatures_serves_only_signed_components() {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(keys.path(), "trusted");
    let (stranger, _) = keygen(keys.path(), "stranger");

    let dir = tempfile::tempdir().unwrap();
    let (v1, v1_signature) = greeter(keys.path(), 1, Some(&secret));
    std::fs::write(dir.path().join("greeter.wasm"), &v1).unwrap();
    std::fs::write(
        dir.path().join("greeter.sig"),
        v1_signature.clone().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("greeter.toml"), GREETER).unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("trusted_keys = [\"{public}\"]\n\n[plugins.greeter]\nrequire_signature = true\n"),
    )
    .unwrap();
    let server = TestServer::start_with(dir.path(), &[("WASMGATE_ADMIN_TOKEN", ADMIN)])
        .ready()
        .await;
    assert_eq!(greets(&server).await, 1, "the signed component serves");

    // Refused, each with its reason; version 1 keeps serving.
    let (v2, v2_by_stranger) = greeter(keys.path(), 2, Some(&stranger));
    let refusals = [
        (None, "is not signed"),
        (
            v1_signature.clone(),
            "not one of a trusted key over this component",
        ),
        (
            v2_by_stranger,
            "not one of a trusted key over this component",
        ),
    ];
    for (signature, reason) in refusals {
        let (status, body) = upload(&server, v2.clone(), signature).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{reason}: {body}"
        );
        assert_eq!(
            greets(&server).await,
            1,
            "the previous version keeps serving"
        );
    }

    // Signed by the trusted key: version 2 serves.
    let (v2, v2_signature) = greeter(keys.path(), 2, Some(&secret));
    let (status, body) = upload(&server, v2, v2_signature).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(greets(&server).await, 2);
}
