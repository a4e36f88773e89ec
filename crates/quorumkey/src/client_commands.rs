//! `quorumkey lookup` and `quorumkey login`: the client library's calls,
//! printed for people (or as JSON for scripts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use quorumkey_client::{ClientOptions, KeyInfo, Login, QuorumkeyClient};
use quorumkey_crypto::group::point_to_bytes;
use serde_json::json;

/// Where the ID token of a login comes from.
pub enum TokenSource {
    /// Given.
    Token(String),
    /// Read from a file (`-`: standard input).
    File(PathBuf),
    /// Minted for this email by the devnet's development issuer (through
    /// its authorization-code flow).
    DevEmail(String),
}

/// A login as the command line asks for it.
pub struct LoginRequest {
    /// network.json.
    pub network: PathBuf,
    /// The verifier (default: the devnet's development verifier).
    pub verifier: Option<String>,
    /// The user (default: the dev email).
    pub verifier_id: Option<String>,
    /// The token.
    pub token: TokenSource,
    /// Print JSON.
    pub json: bool,
    /// Print the private key too.
    pub show_private_key: bool,
}

pub fn client(network: &Path) -> Result<QuorumkeyClient, String> {
    QuorumkeyClient::from_file(network, ClientOptions::default()).map_err(|e| e.to_string())
}

fn compressed_hex(key: &KeyInfo) -> String {
    hex::encode(point_to_bytes(&key.public_key.to_projective()))
}

fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// `quorumkey lookup`.
pub async fn lookup(network: &Path, verifier: &str, verifier_id: &str, json: bool) -> Result<(), String> {
    let client = client(network)?;
    let found = client.lookup(verifier, verifier_id).await.map_err(|e| e.to_string())?;
    match (found, json) {
        (Some(key), true) => println!(
            "{}",
            json!({"assigned": true, "verifier": verifier, "verifier_id": verifier_id, "key_index": key.key_index,
                   "public_key": compressed_hex(&key), "address": key.address})
        ),
        (None, true) => {
            println!("{}", json!({"assigned": false, "verifier": verifier, "verifier_id": verifier_id}));
        }
        (Some(key), false) => {
            println!("user        {verifier_id} at {verifier}");
            println!("key         #{}", key.key_index);
            println!("public key  {}", compressed_hex(&key));
            println!("address     {}", key.address);
        }
        (None, false) => println!("{verifier_id} at {verifier} has no key yet (quorumkey login assigns one)"),
    }
    Ok(())
}

/// Resolves the verifier, user and token of a login request.
pub async fn resolve(client: &QuorumkeyClient, request: &LoginRequest) -> Result<(String, String, String), String> {
    let dev = client.network().dev_issuer.clone();
    let verifier = match (&request.verifier, &dev) {
        (Some(verifier), _) => verifier.clone(),
        (None, Some(dev)) => dev.verifier.clone(),
        (None, None) => return Err("--verifier is needed (this network has no development issuer)".to_owned()),
    };
    let (token, default_id) = match &request.token {
        TokenSource::Token(token) => (token.trim().to_owned(), None),
        TokenSource::File(path) => {
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| e.to_string())?;
                text
            } else {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
            };
            (text.trim().to_owned(), None)
        }
        TokenSource::DevEmail(email) => {
            let dev = dev.ok_or("--dev-email needs a devnet's network.json (it lists the development issuer)")?;
            let token =
                quorumkey_devnet::dev_issuer::authorization_code_login(&dev.issuer, &dev.audience, email).await?;
            (token, Some(email.trim().to_lowercase()))
        }
    };
    let verifier_id =
        request.verifier_id.clone().or(default_id).ok_or("--verifier-id is needed (the user the token is for)")?;
    Ok((verifier, verifier_id, token))
}

/// `quorumkey login`.
pub async fn login(request: LoginRequest) -> Result<(), String> {
    let client = client(&request.network)?;
    let (verifier, verifier_id, token) = resolve(&client, &request).await?;
    let (key, assigned_now) = client.lookup_or_assign(&verifier, &verifier_id).await.map_err(|e| e.to_string())?;
    let login = client.login_key(&verifier, &verifier_id, &token, &key).await.map_err(|e| e.to_string())?;
    if login.key != key {
        return Err("the login's key differs from the looked-up key".to_owned());
    }
    if request.json {
        println!("{}", login_json(&verifier, &verifier_id, assigned_now, &login, request.show_private_key));
    } else {
        print_login(&verifier, &verifier_id, assigned_now, &login);
        if request.show_private_key {
            println!("private key {}", hex::encode(login.private_key.as_slice()));
        } else {
            println!("private key (not shown; --show-private-key prints it)");
        }
    }
    Ok(())
}

fn login_json(
    verifier: &str,
    verifier_id: &str,
    assigned_now: bool,
    login: &Login,
    private: bool,
) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = login
        .nodes
        .iter()
        .map(|report| {
            let step = |outcome: &Option<Result<Duration, String>>| match outcome {
                Some(Ok(took)) => json!({"ok": true, "ms": took.as_secs_f64() * 1000.0}),
                Some(Err(reason)) => json!({"ok": false, "error": reason}),
                None => serde_json::Value::Null,
            };
            json!({"node": report.node, "commitment": step(&report.commitment), "rate_limited": report.rate_limited,
                   "share": step(&report.share), "used": report.used})
        })
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out = json!({
        "verifier": verifier, "verifier_id": verifier_id, "assigned_now": assigned_now,
        "key_index": login.key.key_index, "public_key": compressed_hex(&login.key), "address": login.key.address,
        "nodes": nodes,
        "timings_ms": {"lookup": ms(login.timings.lookup), "commitment": ms(login.timings.commitment),
                       "reveal": ms(login.timings.reveal), "total": ms(login.timings.total)},
    });
    if private {
        out["private_key"] = json!(hex::encode(login.private_key.as_slice()));
    }
    out
}

/// The human report of a login.
pub fn print_login(verifier: &str, verifier_id: &str, assigned_now: bool, login: &Login) {
    let fresh = if assigned_now { " (key assigned now)" } else { "" };
    println!("user        {verifier_id} at {verifier}{fresh}");
    println!("key         #{}", login.key.key_index);
    println!("public key  {}", compressed_hex(&login.key));
    println!("address     {}", login.key.address);
    for (position, report) in login.nodes.iter().enumerate() {
        let label = if position == 0 { "nodes" } else { "" };
        let mut commitment = match &report.commitment {
            Some(Ok(took)) => format!("commitment {}", millis(*took)),
            Some(Err(reason)) => format!("commitment FAILED: {reason}"),
            None => "commitment: not waited for (the reveal quorum signed first)".to_owned(),
        };
        if report.rate_limited > 0 {
            commitment.push_str(&format!(" (after {} rate-limit refusals)", report.rate_limited));
        }
        let share = match &report.share {
            Some(Ok(took)) => format!("share {} (used)", millis(*took)),
            Some(Err(reason)) => format!("share FAILED: {reason}"),
            None => "share not needed".to_owned(),
        };
        println!("{label:<11} {}  {commitment}, {share}", report.node);
    }
    let t = login.timings;
    println!(
        "timings     lookup {} · commitment {} · reveal {} · total {}",
        millis(t.lookup),
        millis(t.commitment),
        millis(t.reveal),
        millis(t.total)
    );
}
