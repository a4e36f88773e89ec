//! `quorumkey demo`: the whole system on this machine, start to finish. A
//! local network of real node processes on 127.0.0.1 in a temporary
//! directory; the key pool filled by the DKG; a demo user signed in at the
//! development issuer (authorization-code flow); the key assigned and
//! retrieved through the full commit-then-reveal login with every share
//! checked; the key proven by signing a message and verifying it against
//! the looked-up public key; a short report; a clean shutdown.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_devnet::dev_issuer::authorization_code_login;
use quorumkey_devnet::supervisor::{Devnet, DevnetOptions};
use quorumkey_node::config::NetworkDkg;

use crate::error::CommandError;

/// The demo's key pool: small batches, so the first keys are ready fast.
const DEMO_BATCH_KEYS: u16 = 64;

/// How to run the demo.
pub struct DemoOptions {
    /// Number of nodes.
    pub nodes: u16,
    /// Keep the network's directory here instead of a temporary one.
    pub keep: Option<PathBuf>,
    /// The demo user's email.
    pub email: String,
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Runs the demo; the network is stopped whatever happens.
pub async fn run(options: DemoOptions) -> Result<(), CommandError> {
    let started = Instant::now();
    let temporary = tempfile::tempdir().map_err(CommandError::TempDir)?;
    let dir = options.keep.clone().unwrap_or_else(|| temporary.path().join("devnet"));
    let binary = std::env::current_exe().map_err(CommandError::CurrentExe)?;
    let dkg = NetworkDkg {
        batch_keys: Some(DEMO_BATCH_KEYS),
        pool_target: Some(2 * u32::from(DEMO_BATCH_KEYS)),
        low_water: Some(u32::from(DEMO_BATCH_KEYS)),
        ..NetworkDkg::default()
    };
    let devnet_options =
        DevnetOptions::on_free_ports(options.nodes, dir.clone(), binary, dkg).ok_or(CommandError::NoFreePorts)?;
    println!("quorumkey demo: {} nodes on 127.0.0.1 in {}", options.nodes, dir.display());
    let mut devnet = Devnet::launch(&devnet_options)?;
    // Ctrl-C (or SIGTERM) stops the nodes too, instead of orphaning them.
    let outcome = tokio::select! {
        outcome = demo(&mut devnet, &options) => outcome,
        () = quorumkey_node::run::shutdown_signal() => Err(CommandError::Interrupted),
    };
    let stopping = spinner("stopping the network");
    devnet.stop().await;
    stopping.finish_and_clear();
    match &outcome {
        Ok(()) => println!(
            "done in {:.1} s; the network is stopped{}",
            started.elapsed().as_secs_f64(),
            match &options.keep {
                Some(dir) => format!(" and kept in {}", dir.display()),
                None => " and its directory removed".to_owned(),
            }
        ),
        Err(_) => println!("the network is stopped; node logs were in {}", dir.display()),
    }
    drop(temporary);
    outcome
}

async fn demo(devnet: &mut Devnet, options: &DemoOptions) -> Result<(), CommandError> {
    let bar = spinner("starting the nodes and consensus");
    devnet.wait_for_height(1, Duration::from_secs(120)).await?;
    let network_path = devnet.write_network_json()?;
    bar.finish_with_message(format!("{} nodes finalize blocks", options.nodes));

    // The key pool, behind a progress bar.
    let status = devnet.client(1).ok_or(CommandError::Usage("node 1 is missing"))?;
    let bar = ProgressBar::new(u64::from(DEMO_BATCH_KEYS));
    bar.set_style(
        ProgressStyle::with_template("{spinner} DKG: {pos}/{len} keys ready {bar:30} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        devnet.check_alive()?;
        if let Ok(now) = status.status().await {
            bar.set_position(now.ready_keys.min(u64::from(DEMO_BATCH_KEYS)));
            bar.set_message(format!("height {}", now.height));
            if now.ready_keys > 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(CommandError::NoKeys(Duration::from_secs(180)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish();

    // Sign in, like a web app, at the development issuer.
    let client = QuorumkeyClient::from_file(&network_path, ClientOptions::default())?;
    let dev = client.network().dev_issuer.clone().ok_or(CommandError::NoDevIssuer { path: network_path.clone() })?;
    let sign_in = Instant::now();
    let token =
        authorization_code_login(&dev.issuer, &dev.audience, &options.email).await.map_err(CommandError::DevIssuer)?;
    let sign_in = sign_in.elapsed();
    let verifier_id = options.email.trim().to_lowercase();

    // Assign and log in.
    let assign = Instant::now();
    let (key, assigned_now) = client.lookup_or_assign(&dev.verifier, &verifier_id).await?;
    let assign = assign.elapsed();
    let login = client.login_key(&dev.verifier, &verifier_id, &token, &key).await?;
    if login.key != key {
        return Err(CommandError::KeyMismatch);
    }

    // Prove it: sign with the rebuilt key, verify with the looked-up one.
    let signer = SigningKey::from_slice(login.private_key.as_slice()).map_err(|_| CommandError::KeyMismatch)?;
    let message = format!("quorumkey demo: {} owns {}", verifier_id, key.address);
    let signature = RecoverableSignature::sign_keccak(&signer, message.as_bytes());
    signature.verify_keccak(&key.public_key, message.as_bytes()).map_err(CommandError::SignatureCheck)?;

    println!();
    println!("network     {} nodes, threshold {}, {}", options.nodes, client.threshold(), network_path.display());
    println!("sign-in     {} at the development issuer ({:.0} ms)", options.email, sign_in.as_secs_f64() * 1000.0);
    println!(
        "assignment  {} ({:.0} ms)",
        if assigned_now { "a new key from the pool, finalized by consensus" } else { "the user's existing key" },
        assign.as_secs_f64() * 1000.0
    );
    crate::client_commands::print_login(&dev.verifier, &verifier_id, assigned_now, &login);
    println!("message     {message:?}");
    println!("signature   {}", signature.to_torus_hex());
    println!(
        "verified    yes: signed with the key rebuilt from {} shares, checked against the looked-up public key",
        client.threshold()
    );
    Ok(())
}
