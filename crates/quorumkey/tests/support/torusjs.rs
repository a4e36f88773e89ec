//! The unmodified public torus.js client (`tests/torusjs/login.cjs`),
//! installed from npm as the lockfile pins it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// The torus.js test client's directory.
pub fn torusjs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("torusjs")
}

/// Installs torus.js from npm exactly as the lockfile pins it (once).
pub fn install() {
    let dir = torusjs_dir();
    if dir.join("node_modules/@toruslabs/torus.js/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .expect("npm is needed for the torus.js end-to-end test");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// Runs `login.cjs` (torus.js): lookup (assigning a key if needed) and,
/// with a token, the login. Ok: `{"lookup": ..., "login": ...}`.
pub fn torus_js(network: &Path, verifier: &str, verifier_id: &str, token: Option<&str>) -> Result<Value, String> {
    let work = tempfile::tempdir().unwrap();
    let request = work.path().join("request.json");
    let description: Value = serde_json::from_str(&std::fs::read_to_string(network).unwrap()).unwrap();
    let mut body = json!({ "network": description, "verifier": verifier, "verifierId": verifier_id });
    if let Some(token) = token {
        body["idToken"] = json!(token);
    }
    std::fs::write(&request, body.to_string()).unwrap();
    let output = Command::new("node").arg("login.cjs").arg(&request).current_dir(torusjs_dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("login.cjs printed no JSON: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    match answer.get("error") {
        Some(error) => Err(error.as_str().unwrap_or_default().to_owned()),
        None => Ok(answer),
    }
}
