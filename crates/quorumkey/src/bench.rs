//! `quorumkey bench`: a fresh local network (real node processes on
//! 127.0.0.1, sharing this machine's cores with the clients), measured:
//!
//! - DKG keys per second while the pool fills, against the DKG floor;
//! - new-user latency (assignment through consensus, then the login);
//! - login latency for existing users, p50 and p99, against the login
//!   floor (every cryptographic operation a login requires, once, times
//!   its cost here) and against the least time this machine's cores could
//!   do that work in (a stricter lower bound); the same with the key
//!   already known (no lookup), alternating with them;
//! - a script login (`docs/verifiers.md`, "script": the same token as a
//!   sub-token, and a script that names its user) against a plain jwt
//!   login, both with the key known, alternating: what a script costs a
//!   login end to end;
//! - sustained logins per second with C concurrent clients, against the
//!   crypto limit of this machine (its cores divided by a login's
//!   cryptography).
//!
//! Floors are measured in this process (this machine's speed drifts by up
//! to a third within a minute): the login floor just before and just
//! after each login phase, while the network idles; the DKG floor before
//! and after the network runs. Every figure is printed with its ratio to
//! its floor.

use crate::error::CommandError;
use quorumkey_client::ClientError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_devnet::dev_issuer::{MintRequest, request_token};
use quorumkey_devnet::supervisor::{Devnet, DevnetOptions};
use quorumkey_ledger::DkgSettings;
use quorumkey_login::Method;
use quorumkey_node::config::{HttpSettings, NetworkDkg, RpcSettings};
use quorumkey_node::observability::{METRIC_LOGIN_RECORD_COMMIT, METRIC_RPC_LATENCY};

use crate::floors::{DkgFloor, LoginFloor, dkg_floor, durable_write, login_floor};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Nodes in the network.
    pub nodes: u16,
    /// Concurrent clients in the sustained phase.
    pub concurrency: usize,
    /// Length of the sustained phase.
    pub duration: Duration,
    /// Logins of existing users measured one at a time.
    pub logins: usize,
    /// New users measured one at a time.
    pub new_users: usize,
    /// DKG batches to fill the pool with (measured while they run).
    pub batches: u32,
    /// Keys per batch (`None`: the network's default).
    pub batch_keys: Option<u16>,
}

/// The CPU model and core count.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpu}, {} cores", cores())
}

/// This machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The `p` percentile (0 to 1, nearest rank) of `sorted`; zero if empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How many times `floor` the `measured` time is.
fn ratio(measured: Duration, floor: Duration) -> f64 {
    measured.as_secs_f64() / floor.as_secs_f64().max(1e-9)
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn us(duration: Duration) -> String {
    format!("{:.0} us", duration.as_secs_f64() * 1e6)
}

async fn mint(token_endpoint: &str, email: &str) -> Result<String, CommandError> {
    Ok(request_token(token_endpoint, &MintRequest::for_email(email)).await.map_err(CommandError::DevIssuer)?.id_token)
}

/// This machine's CPU time so far, all processes (busy: user, system and
/// interrupts; not idle, I/O wait or time the hypervisor took), and the
/// time the cores were there; from `/proc/stat` (`None` elsewhere).
fn machine_cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle, iowait, steal.
    let idle = ticks.get(3)? + ticks.get(4)? + ticks.get(7)?;
    // USER_HZ is 100 on Linux.
    let tick = |n: u64| Duration::from_millis(n * 10);
    Some((tick(total - idle), tick(total)))
}

/// Series → (sum, count): see [`node_histograms`].
type Histograms = std::collections::HashMap<String, (f64, f64)>;

/// Histograms summed over every node, from their metrics: for each
/// series (name plus labels, e.g.
/// `quorumkey_rpc_request_seconds{method="ShareRequest"}`), the sum of
/// its observations and their count; `None` if a node did not answer.
async fn node_histograms(apis: &[String]) -> Option<Histograms> {
    let http = reqwest::Client::new();
    let mut totals = Histograms::new();
    for api in apis {
        let text = http.get(format!("{}/metrics", api.trim_end_matches('/'))).send().await.ok()?.text().await.ok()?;
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<f64>() else { continue };
            // `name_sum{labels}` or `name_sum` -> `name{labels}`.
            let (head, labels) = series.split_once('{').map_or((series, ""), |(h, l)| (h, l));
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}") };
            if let Some(name) = head.strip_suffix("_sum") {
                totals.entry(format!("{name}{labels}")).or_default().0 += value;
            } else if let Some(name) = head.strip_suffix("_count") {
                totals.entry(format!("{name}{labels}")).or_default().1 += value;
            }
        }
    }
    Some(totals)
}

/// The mean observation of `series` between two [`node_histograms`]
/// readings.
fn mean_between(before: Option<&Histograms>, after: Option<&Histograms>, series: &str) -> Option<Duration> {
    let (sum0, count0) = before?.get(series).copied().unwrap_or_default();
    let (sum1, count1) = *after?.get(series)?;
    (count1 > count0).then(|| Duration::from_secs_f64((sum1 - sum0) / (count1 - count0)))
}

/// Runs the benchmark and prints its report.
pub async fn run(options: BenchOptions) -> Result<(), CommandError> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; measure with `cargo run --release -- bench`");
    }
    let batch_keys =
        options.batch_keys.unwrap_or_else(|| DkgSettings::default_for(usize::from(options.nodes)).batch_keys);
    eprintln!("measuring the DKG floor ...");
    let dkg_before = dkg_floor(options.nodes, batch_keys)?;

    let temporary = tempfile::tempdir().map_err(CommandError::TempDir)?;
    let pool = u32::from(batch_keys) * options.batches.max(1);
    // Batches back to back until the pool holds `pool` keys, then idle.
    let dkg = NetworkDkg {
        batch_keys: Some(batch_keys),
        pool_target: Some(pool),
        low_water: Some(pool),
        ..NetworkDkg::default()
    };
    let binary = std::env::current_exe().map_err(CommandError::CurrentExe)?;
    let mut devnet_options = DevnetOptions::on_free_ports(options.nodes, temporary.path().join("devnet"), binary, dkg)
        .ok_or(CommandError::NoFreePorts)?;
    // The benchmark is one client address sending everything.
    devnet_options.rpc = RpcSettings::unlimited();
    devnet_options.http = HttpSettings::one_address_load();
    let mut devnet = Devnet::launch(&devnet_options)?;
    let genesis = devnet.network().genesis().map_err(CommandError::Genesis)?;
    let ledger = quorumkey_ledger::Ledger::new(genesis).map_err(|e| CommandError::Genesis(e.to_string()))?;
    let outcome = tokio::select! {
        outcome = measure(&mut devnet, &options, pool) => outcome,
        () = quorumkey_node::run::shutdown_signal() => Err(CommandError::Interrupted),
    };
    devnet.stop().await;
    let measured = outcome?;
    eprintln!("measuring the DKG floor again ...");
    let dkg = dkg_before.mean(&dkg_floor(options.nodes, batch_keys)?);
    let write = durable_write(temporary.path(), &ledger)?;
    report(&options, batch_keys, &measured, &dkg, write);
    report_budget(&ledger.genesis().policy, &measured);
    Ok(())
}

struct Measured {
    /// The login floor of the sequential logins and of the sustained
    /// phase: each the mean of measurements just before and just after it
    /// (this machine's speed drifts by up to a third within a minute).
    login_floors: [LoginFloor; 2],
    dkg_keys: u64,
    dkg_time: Duration,
    new_users: Vec<Duration>,
    logins: Vec<Duration>,
    /// Logins with the key already known (no lookup).
    known_key: Vec<Duration>,
    /// The machine's CPU per login with the key known.
    known_key_cpu: Option<Duration>,
    /// The existing users' logins, step by step (sorted per step).
    steps: [Vec<Duration>; 3],
    /// The nodes' mean login-record write during those logins.
    node_commit: Option<Duration>,
    /// The nodes' mean time in the commitment and the share handlers
    /// during those logins.
    node_handlers: [Option<Duration>; 2],
    /// The machine's CPU per login during those logins (all processes),
    /// and the share of the cores' time that was busy.
    login_cpu: Option<(Duration, f64)>,
    /// Script logins and jwt logins alternating (both with the key known),
    /// sorted.
    script_vs_jwt: [Vec<Duration>; 2],
    sustained_ok: u64,
    sustained_failed: u64,
    sustained_time: Duration,
    first_failure: Option<String>,
    threshold: usize,
    /// A refresh of every share: keys handed over, and the time from the
    /// first reshare batch opened to the last finished.
    reshare_keys: u64,
    reshare_time: Duration,
    reshare_batches: u64,
}

async fn measure(devnet: &mut Devnet, options: &BenchOptions, pool: u32) -> Result<Measured, CommandError> {
    devnet.wait_for_height(1, Duration::from_secs(120)).await?;
    let network_path = devnet.write_network_json()?;
    let status = devnet.client(1).ok_or(CommandError::Usage("node 1 is missing"))?;

    // DKG: from the first finished batch to a full pool.
    eprintln!("DKG: filling a pool of {pool} keys ...");
    let waited_from = Instant::now();
    let deadline = waited_from + Duration::from_secs(600);
    let (mut first, mut first_at, mut last, mut last_at) = (0u64, Instant::now(), 0u64, Instant::now());
    loop {
        devnet.check_alive()?;
        let now = status.status().await?;
        if now.total_keys > last {
            if last == 0 {
                (first, first_at) = (now.total_keys, Instant::now());
            }
            (last, last_at) = (now.total_keys, Instant::now());
        }
        if now.total_keys >= u64::from(pool) {
            break;
        }
        if Instant::now() > deadline {
            return Err(CommandError::PoolShort { made: now.total_keys, pool, within: Duration::from_secs(600) });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From the first batch seen finished to the last; if every batch
    // finished between two polls (a tiny pool), from the start of the wait.
    let (dkg_keys, dkg_time) =
        if last > first { (last - first, last_at - first_at) } else { (last, last_at - waited_from) };

    let client = QuorumkeyClient::from_file(&network_path, ClientOptions::default())?;
    let dev = client.network().dev_issuer.clone().ok_or(CommandError::NoDevIssuer { path: network_path.clone() })?;
    let verifier = dev.verifier.clone();

    // New users, one at a time: assignment through consensus, then login.
    eprintln!("{} new users ...", options.new_users);
    let mut new_users = Vec::with_capacity(options.new_users);
    for i in 0..options.new_users {
        let user = format!("new-{i}@bench.example");
        let token = mint(&dev.token_endpoint, &user).await?;
        let started = Instant::now();
        client.lookup_or_assign(&verifier, &user).await?;
        client.login(&verifier, &user, &token).await?;
        new_users.push(started.elapsed());
    }

    // Existing users, one login at a time.
    let users: Vec<String> = (0..options.new_users.max(1)).map(|i| format!("new-{i}@bench.example")).collect();
    if options.new_users == 0 {
        client.lookup_or_assign(&verifier, &users[0]).await?;
    }
    let node_apis: Vec<String> = client.network().nodes.iter().map(|node| node.api.clone()).collect();
    // Their keys, for the logins of an application that already knows
    // the user's key (`login_key`: no lookup).
    let mut keys = Vec::with_capacity(users.len());
    for user in &users {
        let not_assigned = || ClientError::NotAssigned { verifier: verifier.clone(), verifier_id: user.clone() };
        keys.push(client.lookup(&verifier, user).await?.ok_or_else(not_assigned)?);
    }
    eprintln!("{} logins of existing users, and as many with the key known ...", options.logins);
    // Tokens first, so that the machine's CPU below is the logins' alone.
    let mut tokens = Vec::with_capacity(2 * options.logins);
    for i in 0..2 * options.logins {
        tokens.push(mint(&dev.token_endpoint, &users[i / 2 % users.len()]).await?);
    }
    let histograms_before = node_histograms(&node_apis).await;
    let floor_before = login_floor(options.nodes)?;
    // The two kinds alternate, so the machine's drifting speed touches
    // both alike; each login's CPU is the machine's between two readings
    // around it (10 ms ticks: unbiased, and fine over hundreds of logins).
    let loop_before = machine_cpu();
    let mut logins = Vec::with_capacity(options.logins);
    let mut known_key = Vec::with_capacity(options.logins);
    let mut busy = [Some(Duration::ZERO); 2];
    let mut steps: [Vec<Duration>; 3] = Default::default();
    for (i, token) in tokens.iter().enumerate() {
        let (user, key, knows_key) = (&users[i / 2 % users.len()], &keys[i / 2 % users.len()], i % 2 == 1);
        let cpu_before = machine_cpu();
        let started = Instant::now();
        let login = if knows_key {
            client.login_key(&verifier, user, token, key).await
        } else {
            client.login(&verifier, user, token).await
        }?;
        let took = started.elapsed();
        let spent = machine_cpu().zip(cpu_before).map(|((after, _), (before, _))| after.saturating_sub(before));
        busy[usize::from(knows_key)] = busy[usize::from(knows_key)].zip(spent).map(|(sum, spent)| sum + spent);
        if knows_key {
            known_key.push(took);
            continue;
        }
        logins.push(took);
        let timings = login.timings;
        for (step, took) in steps.iter_mut().zip([timings.lookup, timings.commitment, timings.reveal]) {
            step.push(took);
        }
    }

    let loop_after = machine_cpu();
    let histograms_after = node_histograms(&node_apis).await;
    let floor_between = login_floor(options.nodes)?;
    // Every process's CPU per login (nodes, client, and whatever else
    // runs), and how busy the cores were.
    let busy_share = match (loop_before, loop_after) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some((busy1 - busy0).as_secs_f64() / (total1 - total0).as_secs_f64())
        }
        _ => None,
    };
    let per_login = |sum: Option<Duration>| sum.filter(|_| options.logins > 0).map(|sum| sum / options.logins as u32);
    let login_cpu = per_login(busy[0]).zip(busy_share);
    let known_key_cpu = per_login(busy[1]);
    let node_mean = |series: &str| mean_between(histograms_before.as_ref(), histograms_after.as_ref(), series);
    let node_commit = node_mean(METRIC_LOGIN_RECORD_COMMIT);
    let node_handlers = [
        node_mean(&format!("{METRIC_RPC_LATENCY}{{method=\"{}\"}}", Method::Commitment.name())),
        node_mean(&format!("{METRIC_RPC_LATENCY}{{method=\"{}\"}}", Method::Share.name())),
    ];

    let script_vs_jwt = script_logins(&client, &dev, &verifier, &users, &keys, options.logins).await?;

    // Sustained: tokens minted first, then C clients log in until the
    // time is up (or the tokens run out).
    let budget = options.concurrency * 400;
    eprintln!(
        "sustained: minting {budget} tokens, then {} clients for {:?} ...",
        options.concurrency, options.duration
    );
    let mut tokens = VecDeque::with_capacity(budget);
    for i in 0..budget {
        let user = users[i % users.len()].clone();
        tokens.push_back((user.clone(), mint(&dev.token_endpoint, &user).await?));
    }
    let tokens = Arc::new(Mutex::new(tokens));
    let client = Arc::new(client);
    let started = Instant::now();
    let deadline = started + options.duration;
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (tokens, client, verifier) = (tokens.clone(), client.clone(), verifier.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut first_failure) = (0u64, 0u64, None);
                while Instant::now() < deadline {
                    let next = tokens.lock().map(|mut queue| queue.pop_front()).unwrap_or(None);
                    let Some((user, token)) = next else { break };
                    match client.login(&verifier, &user, &token).await {
                        Ok(_) => ok += 1,
                        Err(error) => {
                            failed += 1;
                            first_failure.get_or_insert_with(|| error.to_string());
                        }
                    }
                }
                (ok, failed, first_failure)
            })
        })
        .collect();
    let (mut sustained_ok, mut sustained_failed, mut first_failure) = (0, 0, None);
    for worker in workers {
        let (ok, failed, failure) = worker.await.map_err(CommandError::Task)?;
        sustained_ok += ok;
        sustained_failed += failed;
        first_failure = first_failure.or(failure);
    }
    let sustained_time = started.elapsed();
    let floor_after = login_floor(options.nodes)?;
    let (reshare_keys, reshare_time, reshare_batches) = measure_refresh(devnet).await?;
    new_users.sort();
    logins.sort();
    known_key.sort();
    for step in &mut steps {
        step.sort();
    }
    Ok(Measured {
        login_floors: [floor_before.mean(&floor_between), floor_between.mean(&floor_after)],
        dkg_keys,
        dkg_time,
        new_users,
        logins,
        known_key,
        known_key_cpu,
        steps,
        node_commit,
        node_handlers,
        login_cpu,
        script_vs_jwt,
        sustained_ok,
        sustained_failed,
        sustained_time,
        first_failure,
        threshold: client.threshold(),
        reshare_keys,
        reshare_time,
        reshare_batches,
    })
}

/// A refresh of every share, as the operators make one (a proposal for the
/// same set, signed with 2f + 1 of the devnet's node keys): the keys
/// handed over, and the time from the handover's start (its keys fixed,
/// the first batch opened) until every batch finished (the new set then
/// waits for the next epoch boundary, which is not the handover's work).
async fn measure_refresh(devnet: &mut Devnet) -> Result<(u64, Duration, u64), CommandError> {
    use crate::epoch_commands::{propose, sign, submit};
    let api = devnet.client(1).ok_or(CommandError::Usage("node 1 is missing"))?;
    let work = tempfile::tempdir().map_err(CommandError::TempDir)?;
    let proposal_path = work.path().join("refresh.toml");
    let network_file = devnet.dir().join(quorumkey_node::config::NETWORK_FILE);
    let proposal = propose(&api, Some(&network_file), &[], &[], &proposal_path).await?;
    let quorum = proposal.nodes.len() - (proposal.nodes.len() - 1) / 3;
    let mut signatures = Vec::with_capacity(quorum);
    for index in 1..=quorum {
        let node_config = quorumkey_node::run::node_config_path(devnet.dir(), index as u16);
        signatures.push(sign(&node_config, &proposal, Some(&api)).await?);
    }
    eprintln!("refresh: handing every key over to the same five nodes ...");
    submit(&api, &proposal, &signatures).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut started: Option<Instant> = None;
    loop {
        devnet.check_alive()?;
        let answer = api.epoch().await?;
        match answer.handover {
            Some(handover) if handover.stage == "resharing" => {
                started.get_or_insert_with(Instant::now);
            }
            Some(handover) if handover.stage == "ready" => {
                let took = started.map_or(Duration::ZERO, |at| at.elapsed());
                return Ok((handover.keys, took, handover.batches));
            }
            Some(_) => {}
            None if answer.epoch > 0 => {
                return Err(CommandError::Epoch("the refresh was in force before the bench saw it finish".to_owned()));
            }
            None => {}
        }
        if Instant::now() > deadline {
            return Err(CommandError::Epoch("the refresh did not finish within 600 s".to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The verifier script of the bench: it accepts its one sub-token's user,
/// so that a script login names whom the same token's jwt login names.
/// Assembled from:
///
/// ```text
/// (module
///   (import "quorumkey" "sub_verifier_id" (func $id (param i32 i32 i32) (result i32)))
///   (import "quorumkey" "accept" (func $accept (param i32 i32)))
///   (memory (export "memory") 1)
///   (func (export "verify") (result i32) (local $len i32)
///     (local.set $len (call $id (i32.const 0) (i32.const 0) (i32.const 256)))
///     (if (i32.lt_s (local.get $len) (i32.const 1)) (then unreachable))
///     (if (i32.gt_s (local.get $len) (i32.const 256)) (then unreachable))
///     (call $accept (i32.const 0) (local.get $len))
///     (i32.const 0)))
/// ```
pub const BENCH_SCRIPT: [u8; 153] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x11, 0x03, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60,
    0x02, 0x7f, 0x7f, 0x00, 0x60, 0x00, 0x01, 0x7f, 0x02, 0x30, 0x02, 0x09, 0x71, 0x75, 0x6f, 0x72, 0x75, 0x6d, 0x6b,
    0x65, 0x79, 0x0f, 0x73, 0x75, 0x62, 0x5f, 0x76, 0x65, 0x72, 0x69, 0x66, 0x69, 0x65, 0x72, 0x5f, 0x69, 0x64, 0x00,
    0x00, 0x09, 0x71, 0x75, 0x6f, 0x72, 0x75, 0x6d, 0x6b, 0x65, 0x79, 0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00,
    0x01, 0x03, 0x02, 0x01, 0x02, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72,
    0x79, 0x02, 0x00, 0x06, 0x76, 0x65, 0x72, 0x69, 0x66, 0x79, 0x00, 0x02, 0x0a, 0x2c, 0x01, 0x2a, 0x01, 0x01, 0x7f,
    0x41, 0x00, 0x41, 0x00, 0x41, 0x80, 0x02, 0x10, 0x00, 0x21, 0x00, 0x20, 0x00, 0x41, 0x01, 0x48, 0x04, 0x40, 0x00,
    0x0b, 0x20, 0x00, 0x41, 0x80, 0x02, 0x4a, 0x04, 0x40, 0x00, 0x0b, 0x41, 0x00, 0x20, 0x00, 0x10, 0x01, 0x41, 0x00,
    0x0b,
];

/// The script verifier of the bench.
const BENCH_SCRIPT_VERIFIER: &str = "bench-script";

/// `logins` script logins alternating with as many jwt logins of the same
/// users (both with the key known): the bench script, published and
/// registered with the development issuer's configuration as its one
/// sub-verifier, each user assigned a key there first. Sorted: [script,
/// jwt].
async fn script_logins(
    client: &QuorumkeyClient,
    dev: &quorumkey_login::network::NetworkJsonDevIssuer,
    verifier: &str,
    users: &[String],
    keys: &[quorumkey_client::KeyInfo],
    logins: usize,
) -> Result<[Vec<Duration>; 2], CommandError> {
    use quorumkey_crypto::k256::elliptic_curve::Generate as _;
    eprintln!("{logins} script logins, alternating with as many jwt logins ...");
    let node = client.network().nodes.first().ok_or(CommandError::Usage("network.json lists no node"))?;
    let node = quorumkey_client::node_api_client::NodeApiClient::new(node.api.clone());
    let owner = quorumkey_crypto::k256::ecdsa::SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
    let module = quorumkey_client::registry::publish_script(&node, &BENCH_SCRIPT, &owner).await?;
    let jwt: serde_json::Value =
        serde_json::from_str(&quorumkey_devnet::dev_issuer::dev_verifier_config(&dev.issuer, &dev.audience))?;
    let config = serde_json::json!({"type": "script", "module": hex::encode(module), "fuel": 100_000,
                                    "memory_pages": 1, "sub_verifiers": {"dev": jwt}});
    quorumkey_client::registry::register(&node, BENCH_SCRIPT_VERIFIER, &serde_json::to_vec(&config)?, &owner).await?;
    let mut script_keys = Vec::with_capacity(users.len());
    for user in users {
        script_keys.push(client.lookup_or_assign(BENCH_SCRIPT_VERIFIER, user).await?.0);
    }
    let mut tokens = Vec::with_capacity(2 * logins);
    for i in 0..2 * logins {
        tokens.push(mint(&dev.token_endpoint, &users[i / 2 % users.len()]).await?);
    }
    let (mut script, mut jwt) = (Vec::with_capacity(logins), Vec::with_capacity(logins));
    let no_evidence = std::collections::BTreeMap::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let user = i / 2 % users.len();
        let started = Instant::now();
        if i % 2 == 0 {
            let subs = [("dev".to_owned(), token)];
            client
                .login_script_key(BENCH_SCRIPT_VERIFIER, &users[user], &subs, &no_evidence, &script_keys[user])
                .await?;
            script.push(started.elapsed());
        } else {
            client.login_key(verifier, &users[user], &token, &keys[user]).await?;
            jwt.push(started.elapsed());
        }
    }
    script.sort();
    jwt.sort();
    Ok([script, jwt])
}

fn report(options: &BenchOptions, batch_keys: u16, measured: &Measured, dkg: &DkgFloor, durable_write: Duration) {
    let cores = cores() as f64;
    let build = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!(
        "quorumkey bench: {} nodes (threshold {}), one process each, on {} ({build})",
        options.nodes,
        measured.threshold,
        machine()
    );
    let [login, sustained_floor] = &measured.login_floors;
    let (floor, least) = (login.cpu(), login.least_time(cores as usize));
    println!(
        "login floor (cryptography, measured here just before and after the logins): node: commitment signature {}, {} signature checks (the reveal quorum) {}, token {}, share check + encryption {}; client {} -> every operation of a login once (the floor): {}; the least time {cores} cores can do them in (the critical path {}, or the work a login waits for spread over the cores): {}",
        us(login.commitment),
        login.quorum,
        us(login.signatures),
        us(login.token),
        us(login.share),
        us(login.client),
        us(floor),
        us(login.critical_path()),
        us(least),
    );
    let (p50, p99) = (percentile(&measured.logins, 0.50), percentile(&measured.logins, 0.99));
    println!(
        "login, existing user    p50 {}  p99 {}  ({} logins)   floor {}   ratio p50/floor {:.2}  (goal <= 2)   least possible here {}: ratio {:.1}",
        ms(p50),
        ms(p99),
        measured.logins.len(),
        ms(floor),
        ratio(p50, floor),
        ms(least),
        ratio(p50, least)
    );
    let [lookup, commitment, reveal] = &measured.steps;
    println!(
        "  steps, p50: lookup + public shares {} (at the same time as) commitments until the reveal quorum signed {}; then the reveal until t checked shares, interpolated {}",
        ms(percentile(lookup, 0.50)),
        ms(percentile(commitment, 0.50)),
        ms(percentile(reveal, 0.50)),
    );
    if let [Some(commitment), Some(share)] = measured.node_handlers {
        println!(
            "  a node's own time per request during those logins (from its metrics, mean): commitment {}, reveal (share request) {}",
            ms(commitment),
            ms(share)
        );
    }
    if let [script, jwt] = &measured.script_vs_jwt
        && !script.is_empty()
    {
        let (script_p50, jwt_p50) = (percentile(script, 0.50), percentile(jwt, 0.50));
        println!(
            "script login (key known)  p50 {}  p99 {}  ({} logins; the same token as a sub-token, a script naming its user)   jwt login alternating with them p50 {}: the script login costs {} more (ratio {:.2})",
            ms(script_p50),
            ms(percentile(script, 0.99)),
            script.len(),
            ms(jwt_p50),
            ms(script_p50.saturating_sub(jwt_p50)),
            ratio(script_p50, jwt_p50)
        );
    }
    if let Some((cpu, busy)) = measured.login_cpu {
        println!(
            "  the machine's CPU per login during those logins (every process; not the hypervisor's steal): {} (its cryptography: {}); the cores were {:.0}% busy",
            ms(cpu),
            ms(login.cpu()),
            busy * 100.0
        );
    }
    if let Some(commit) = measured.node_commit {
        println!(
            "  a node's login-record write during those logins (log append + fdatasync; all nodes write at once, on this machine's one disk and two cores): mean {}",
            ms(commit)
        );
    }
    // Not cryptography, but as unavoidable: a node makes its commitment
    // record durable before it answers, and the token's nullifier before it
    // serves the share.
    let writes = durable_write * 2;
    println!(
        "  with storage: a durable write (a login record: log append + fdatasync) takes {} here; a login waits for two (the commitment's record, then the token's nullifier) -> floor {} (ratio {:.2}), least possible {} (ratio {:.1})",
        ms(durable_write),
        ms(floor + writes),
        ratio(p50, floor + writes),
        ms(least + writes),
        ratio(p50, least + writes)
    );
    let (k50, k99) = (percentile(&measured.known_key, 0.50), percentile(&measured.known_key, 0.99));
    println!(
        "login, key known        p50 {}  p99 {}  ({} logins, alternating with the above; no lookup: an application that keeps the user's key)   floor {}   ratio {:.2}   least possible {}: ratio {:.1}",
        ms(k50),
        ms(k99),
        measured.known_key.len(),
        ms(floor),
        ratio(k50, floor),
        ms(least),
        ratio(k50, least)
    );
    if let Some(cpu) = measured.known_key_cpu {
        println!("  the machine's CPU per login with the key known: {}", ms(cpu));
    }
    let (n50, n99) = (percentile(&measured.new_users, 0.50), percentile(&measured.new_users, 0.99));
    println!(
        "new user (assign+login) p50 {}  p99 {}  ({} users)   floor {} (a login's; the assignment waits for consensus)   ratio {:.1}",
        ms(n50),
        ms(n99),
        measured.new_users.len(),
        ms(floor),
        ratio(n50, floor)
    );
    let rate = measured.sustained_ok as f64 / measured.sustained_time.as_secs_f64().max(1e-9);
    let limit = cores / sustained_floor.cpu().as_secs_f64().max(1e-12);
    println!(
        "sustained logins        {rate:.0}/s with {} clients over {:.1} s ({} ok, {} failed)   crypto limit {limit:.0}/s on {cores} cores (a login's cryptography {}, measured just before and after)   ratio {:.2}  (goal >= 0.5)",
        options.concurrency,
        measured.sustained_time.as_secs_f64(),
        measured.sustained_ok,
        measured.sustained_failed,
        us(sustained_floor.cpu()),
        rate / limit
    );
    if let Some(failure) = &measured.first_failure {
        println!("  first failure: {failure}");
    }
    let keys_per_second = measured.dkg_keys as f64 / measured.dkg_time.as_secs_f64().max(1e-9);
    let dkg_limit = cores / dkg.per_key_ops.as_secs_f64().max(1e-12);
    println!(
        "DKG                     {keys_per_second:.0} keys/s ({} keys in {:.1} s, batches of {batch_keys})   floor {dkg_limit:.0} keys/s   ratio {:.2}",
        measured.dkg_keys,
        measured.dkg_time.as_secs_f64(),
        keys_per_second / dkg_limit
    );
    // A refresh's required cryptography per key, all nodes (t = t' from n):
    // t dealers' commitments to t - 1 coefficients (k·G each), and every
    // node's check of t dealings of t points each.
    let n = u32::from(options.nodes);
    let t = n / 2 + 1;
    let reshare_per_key = dkg.fixed_base * (t * (t - 1)) + dkg.check_point * (n * t * t);
    let reshare_rate = measured.reshare_keys as f64 / measured.reshare_time.as_secs_f64().max(1e-9);
    let reshare_limit = cores / reshare_per_key.as_secs_f64().max(1e-12);
    println!(
        "refresh (reshare)       {reshare_rate:.0} keys/s ({} keys in {:.1} s, {} batches)   floor {reshare_limit:.0} keys/s   ratio {:.2}   10,000,000 keys in {:.0} min",
        measured.reshare_keys,
        measured.reshare_time.as_secs_f64(),
        measured.reshare_batches,
        reshare_rate / reshare_limit,
        1e7 / reshare_rate.max(1e-9) / 60.0
    );
}

/// How fast the network's assignment budget can drain the pool, against
/// how fast the DKG measured above refills it.
fn report_budget(policy: &quorumkey_ledger::NetworkPolicy, measured: &Measured) {
    let window = policy.window_ms as f64 / 1000.0;
    let drain = f64::from(policy.assignments_per_window) / window;
    let refill = measured.dkg_keys as f64 / measured.dkg_time.as_secs_f64().max(1e-9);
    println!(
        "assignment budget       at most {drain:.0} keys/s drained ({} per {window:.0} s window; {} per verifier, {} per node)   DKG refill {refill:.0} keys/s   refill/drain {:.0}",
        policy.assignments_per_window,
        policy.assignments_per_verifier,
        policy.assignments_per_node,
        refill / drain
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test")]
mod tests {
    use super::*;

    #[test]
    fn the_bench_script_is_a_valid_module_that_names_its_sub_tokens_user() {
        let script = quorumkey_script::ScriptModule::compile(&BENCH_SCRIPT).unwrap();
        let input = quorumkey_script::ScriptInput {
            sub_tokens: vec![quorumkey_script::SubTokenInput {
                name: "dev".to_owned(),
                verifier_id: "alice@example.com".to_owned(),
                claims: serde_json::Map::new(),
            }],
            ..Default::default()
        };
        let budget = quorumkey_script::ScriptBudget { fuel: 100_000, memory_pages: 1 };
        let outcome = quorumkey_script::run_script(&script, &input, budget).unwrap();
        assert_eq!(outcome.verifier_id, "alice@example.com");
        // No sub-token: it traps rather than name nobody.
        let empty = quorumkey_script::ScriptInput::default();
        assert!(quorumkey_script::run_script(&script, &empty, budget).is_err());
    }
}
