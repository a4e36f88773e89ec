//! `quorumkey lookup`, `quorumkey login` and the token helpers
//! (`dev-token`, `inspect token-commitment`): the client library's calls,
//! printed for people (or as JSON for scripts).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quorumkey_client::{ClientOptions, KeyInfo, Login, QuorumkeyClient};
use quorumkey_crypto::group::point_to_bytes;
use serde_json::json;

use crate::error::CommandError;
use crate::registry_commands::read_network_json;

/// ID tokens are a few kilobytes; a token source longer than this is
/// refused rather than buffered.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Where the ID token of a login comes from.
pub enum TokenSource {
    /// Given.
    Token(String),
    /// Read from a file (`-`: standard input).
    File(PathBuf),
    /// Minted for this email by the devnet's development issuer (through
    /// its authorization-code flow).
    DevEmail(String),
    /// An aggregate or script login's sub-tokens: (sub-verifier, file of
    /// its token; `-` is standard input, once).
    SubTokens(Vec<(String, PathBuf)>),
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
    /// A script login's evidence (field, text).
    pub evidence: Vec<(String, String)>,
}

/// The client of the network `network` describes.
pub fn client(network: &Path) -> Result<QuorumkeyClient, CommandError> {
    Ok(QuorumkeyClient::from_file(network, ClientOptions::default())?)
}

/// Reads one token from `source` (at most 64 KiB), trimming the trailing
/// newline that `echo` or a terminal adds (a token never ends in white
/// space).
pub fn read_token(source: impl std::io::Read) -> Result<String, CommandError> {
    let mut token = String::new();
    source.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut token).map_err(CommandError::Stdin)?;
    if token.len() as u64 > MAX_TOKEN_BYTES {
        return Err(CommandError::TokenTooLong(MAX_TOKEN_BYTES));
    }
    let trimmed = token.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(CommandError::NoToken);
    }
    Ok(trimmed.to_owned())
}

/// The token endpoint of the development issuer a devnet's network.json
/// names.
pub fn dev_token_endpoint(path: &Path) -> Result<String, CommandError> {
    read_network_json(path, "start a devnet or pass --issuer")?
        .dev_issuer
        .map(|issuer| issuer.token_endpoint)
        .ok_or_else(|| CommandError::NoDevIssuer { path: path.to_owned() })
}

fn compressed_hex(key: &KeyInfo) -> String {
    hex::encode(point_to_bytes(&key.public_key.to_projective()))
}

fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// `quorumkey lookup`.
pub async fn lookup(network: &Path, verifier: &str, verifier_id: &str, json: bool) -> Result<(), CommandError> {
    let client = client(network)?;
    let found = client.lookup(verifier, verifier_id).await?;
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
pub async fn resolve(
    client: &QuorumkeyClient,
    request: &LoginRequest,
) -> Result<(String, String, String), CommandError> {
    let dev = client.network().dev_issuer.clone();
    let verifier = match (&request.verifier, &dev) {
        (Some(verifier), _) => verifier.clone(),
        (None, Some(dev)) => dev.verifier.clone(),
        (None, None) => {
            return Err(CommandError::Usage("--verifier is needed (this network has no development issuer)"));
        }
    };
    let (token, default_id) = match &request.token {
        TokenSource::Token(token) => (token.trim().to_owned(), None),
        TokenSource::File(path) => {
            let text = if path.as_os_str() == "-" {
                read_token(std::io::stdin())?
            } else {
                let file =
                    std::fs::File::open(path).map_err(|source| CommandError::Read { path: path.clone(), source })?;
                read_token(file)?
            };
            (text.trim().to_owned(), None)
        }
        TokenSource::SubTokens(_) => {
            return Err(CommandError::Usage("an aggregate or script login has sub-tokens, not one token"));
        }
        TokenSource::DevEmail(email) => {
            let dev = dev.ok_or(CommandError::Usage(
                "--dev-email needs a devnet's network.json (it lists the development issuer)",
            ))?;
            let token = quorumkey_devnet::dev_issuer::authorization_code_login(&dev.issuer, &dev.audience, email)
                .await
                .map_err(CommandError::DevIssuer)?;
            (token, Some(email.trim().to_lowercase()))
        }
    };
    let verifier_id = request
        .verifier_id
        .clone()
        .or(default_id)
        .ok_or(CommandError::Usage("--verifier-id is needed (the user the token is for)"))?;
    Ok((verifier, verifier_id, token))
}

/// Reads a token from `path` (`-`: standard input).
fn read_token_file(path: &Path) -> Result<String, CommandError> {
    let text = if path.as_os_str() == "-" {
        read_token(std::io::stdin())?
    } else {
        let file = std::fs::File::open(path).map_err(|source| CommandError::Read { path: path.to_owned(), source })?;
        read_token(file)?
    };
    Ok(text.trim().to_owned())
}

/// An aggregate or script login: the sub-tokens read, the verifier's kind
/// asked of a node unless evidence says it is a script login.
async fn login_sub_tokens(
    client: &QuorumkeyClient,
    request: &LoginRequest,
    files: &[(String, PathBuf)],
) -> Result<(String, String, KeyInfo, bool, Login), CommandError> {
    let verifier = request.verifier.clone().ok_or(CommandError::Usage("--sub-token needs --verifier"))?;
    let verifier_id =
        request.verifier_id.clone().ok_or(CommandError::Usage("--sub-token needs --verifier-id (the login's user)"))?;
    let mut sub_tokens = Vec::with_capacity(files.len());
    for (name, path) in files {
        sub_tokens.push((name.clone(), read_token_file(path)?));
    }
    let evidence: std::collections::BTreeMap<String, String> = request.evidence.iter().cloned().collect();
    let script = if evidence.is_empty() {
        let node = client.network().nodes.first().ok_or(CommandError::Usage("network.json lists no node"))?;
        let info = quorumkey_client::node_api_client::NodeApiClient::new(node.api.clone())
            .verifier(&verifier)
            .await?
            .ok_or_else(|| CommandError::Script(format!("verifier {verifier} is not registered")))?;
        match info.kind.as_str() {
            "script" => true,
            "aggregate" => false,
            other => {
                return Err(CommandError::Script(format!(
                    "verifier {verifier} is a {other} verifier: log in with one token (--id-token-file), not --sub-token"
                )));
            }
        }
    } else {
        true
    };
    let (key, assigned_now) = client.lookup_or_assign(&verifier, &verifier_id).await?;
    let login = if script {
        client.login_script_key(&verifier, &verifier_id, &sub_tokens, &evidence, &key).await?
    } else {
        client.login_aggregate_key(&verifier, &verifier_id, &sub_tokens, &key).await?
    };
    Ok((verifier, verifier_id, key, assigned_now, login))
}

/// `quorumkey login`.
pub async fn login(request: LoginRequest) -> Result<(), CommandError> {
    let client = client(&request.network)?;
    let (verifier, verifier_id, key, assigned_now, login) = match &request.token {
        TokenSource::SubTokens(files) => login_sub_tokens(&client, &request, files).await?,
        _ => {
            let (verifier, verifier_id, token) = resolve(&client, &request).await?;
            let (key, assigned_now) = client.lookup_or_assign(&verifier, &verifier_id).await?;
            let login = client.login_key(&verifier, &verifier_id, &token, &key).await?;
            (verifier, verifier_id, key, assigned_now, login)
        }
    };
    if login.key != key {
        return Err(CommandError::KeyMismatch);
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

/// `network client-config`: the network.json of the network whose node
/// answers at `node`, once t of its nodes attest it; written to `out` (a
/// new file) or printed.
pub async fn client_config(
    node: &str,
    network_id: Option<&str>,
    out: Option<&Path>,
    timeout: Duration,
) -> Result<(), CommandError> {
    // `HOST:PORT` means http://HOST:PORT, as in a node's rpc_url.
    let node = if node.contains("://") { node.to_owned() } else { format!("http://{node}") };
    let found = quorumkey_client::network_discovery::discover(&node, network_id, timeout).await?;
    let text = serde_json::to_string_pretty(&found.description)? + "\n";
    let agreeing: Vec<String> = found.agreeing.iter().map(u16::to_string).collect();
    let summary = format!(
        "network id  {}{}\nattested by nodes {} (threshold {} of {})",
        found.description.network_id,
        if network_id.is_some() {
            "  (as expected)"
        } else {
            "  (compare it with the id the operators publish, or pass --network-id)"
        },
        agreeing.join(", "),
        found.description.threshold,
        found.description.nodes.len()
    );
    let mut failures: Vec<String> =
        found.failures.iter().map(|(index, reason)| format!("node {index} did not: {reason}")).collect();
    match (&found.description.node_set, &found.node_set_problem) {
        (Some(set), _) => failures.push(format!("node set    epoch {} ({} nodes)", set.epoch, set.nodes.len())),
        (None, Some(problem)) => failures.push(format!("node set    none written: {problem}")),
        (None, None) => {}
    }
    match out {
        Some(path) => {
            crate::operator_commands::write_new_file(path, &text)?;
            println!("{summary}");
            for line in &failures {
                println!("{line}");
            }
            println!("written     {}", path.display());
        }
        None => {
            // The description on standard output, everything else on
            // standard error, so that `> network.json` captures only it.
            eprintln!("{summary}");
            for line in &failures {
                eprintln!("{line}");
            }
            print!("{text}");
        }
    }
    Ok(())
}
