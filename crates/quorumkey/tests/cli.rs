//! Smoke tests of the real `quorumkey` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

fn quorumkey() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quorumkey"))
}

fn run(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = quorumkey()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quorumkey");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("wait for quorumkey");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_subcommands() {
    let (ok, out, _) = run(&["--help"], None);
    assert!(ok);
    assert!(out.contains("inspect") && out.contains("network"), "{out}");
    assert!(out.contains("dev-issuer") && out.contains("dev-token"), "{out}");
    for command in ["demo", "bench", "lookup", "login", "devnet", "devnet-node", "verifier"] {
        assert!(out.contains(command), "{command} in {out}");
        let (ok, help, _) = run(&[command, "--help"], None);
        assert!(ok && help.contains("Usage: quorumkey"), "{command} --help: {help}");
    }
    let (ok, out, _) = run(&["--version"], None);
    assert!(ok && out.starts_with("quorumkey "), "{out}");
}

#[test]
fn token_commitment_from_argument_and_stdin() {
    let expected = "7daa7a21f597b73614736f405adf156138637ed7c689bb73226dc818620bf583\n";
    let (ok, out, _) = run(&["inspect", "token-commitment", "--id-token", "dummy.id.token"], None);
    assert!(ok);
    assert_eq!(out, expected);
    let (ok, out, _) = run(&["inspect", "token-commitment"], Some("dummy.id.token\n"));
    assert!(ok);
    assert_eq!(out, expected);
    let (ok, _, err) = run(&["inspect", "token-commitment"], Some(""));
    assert!(!ok);
    assert!(err.contains("no ID token"), "{err}");
    // A JWT spelled otherwise than nodes accept: the commitment of the
    // accepted spelling, with a note.
    let canonical = "eyJhbGciOiJFUzI1NiJ9.e30.AAA";
    let (ok, out, err) = run(&["inspect", "token-commitment", "--id-token", &format!("{canonical}=")], None);
    assert!(ok && err.contains("another spelling"), "{err}");
    assert_eq!(out, format!("{}\n", quorumkey_crypto::hash::token_commitment_hex(canonical)));
}

#[test]
fn address_from_coordinates_or_sec1() {
    let x = "1b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f";
    let y = "70beaf8f588b541507fed6a642c5ab42dfdf8120a7f639de5122d47a69a8e8d1";
    let (ok, out, _) = run(&["inspect", "address", "--pub-key-x", x, "--pub-key-y", y], None);
    assert!(ok);
    assert!(out.contains("0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"), "{out}");
    let sec1 = format!("04{x}{y}");
    let (ok, out, _) = run(&["inspect", "address", "--public-key", &sec1], None);
    assert!(ok);
    assert!(out.contains("0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"), "{out}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let x = "1b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f";
    let (ok, _, err) = run(&["inspect", "address", "--pub-key-x", x, "--pub-key-y", x], None);
    assert!(!ok);
    assert!(err.contains("not a point on secp256k1"), "{err}");
    let (ok, _, err) = run(&["inspect", "address", "--public-key", "04zz"], None);
    assert!(!ok);
    assert!(err.contains("--public-key"), "{err}");
    let (ok, _, err) = run(&["inspect", "address"], None);
    assert!(!ok);
    assert!(err.contains("required"), "{err}");
}

#[test]
fn network_init_writes_configs_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let out_arg = out.to_str().unwrap();
    // Without a KeyAssign signer, or the explicit choice to serve unsigned
    // requests, nothing is written.
    let (ok, _, stderr) = run(&["network", "init", "--nodes", "4", "--out", out_arg], None);
    assert!(!ok);
    assert!(stderr.contains("--key-assign-signer"), "{stderr}");
    assert!(!out.exists());
    let (ok, stdout, stderr) =
        run(&["network", "init", "--nodes", "4", "--out", out_arg, "--allow-unsigned-key-assign"], None);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nodes       4 (threshold 3)"), "{stdout}");
    assert!(out.join("network.toml").exists());
    for i in 1..=4 {
        assert!(out.join(format!("node-{i}/node.toml")).exists());
        assert!(out.join(format!("node-{i}/consensus.key")).exists());
    }
    let (ok, _, stderr) =
        run(&["network", "init", "--nodes", "4", "--out", out_arg, "--allow-unsigned-key-assign"], None);
    assert!(!ok);
    assert!(stderr.contains("not empty"), "{stderr}");
    let (ok, _, stderr) =
        run(&["network", "init", "--nodes", "0", "--out", out_arg, "--allow-unsigned-key-assign"], None);
    assert!(!ok);
    assert!(stderr.contains("0 is not in 1..=256"), "{stderr}");
}

#[test]
fn operators_make_their_own_keys_and_assemble_the_genesis_from_enrollments() {
    let dir = tempfile::tempdir().unwrap();
    let mut enrollments = Vec::new();
    for i in 1..=4u16 {
        let out = dir.path().join(format!("operator-{i}"));
        let (p2p, rpc) = (format!("10.0.0.{i}:27000"), format!("10.0.0.{i}:17000"));
        let (ok, stdout, stderr) = run(
            &[
                "node",
                "keygen",
                "--out",
                out.to_str().unwrap(),
                "--p2p-address",
                &p2p,
                "--rpc-url",
                &rpc,
                "--allow-unsigned-key-assign",
            ],
            None,
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("consensus_signature"), "{stdout}");
        enrollments.push(out.join("enrollment.toml"));
    }
    let genesis = |enrollments: &[std::path::PathBuf], order: &[usize], out: &std::path::Path| {
        let mut args = vec!["network".to_owned(), "genesis".to_owned(), "--out".to_owned()];
        args.push(out.to_str().unwrap().to_owned());
        for &i in order {
            args.extend(["--enrollment".to_owned(), enrollments[i].to_str().unwrap().to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, None)
    };
    let (first, second) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    let (ok, stdout, stderr) = genesis(&enrollments, &[0, 1, 2, 3], &first);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nodes       4 (threshold 3)"), "{stdout}");
    let id = stdout.lines().find(|line| line.starts_with("network id")).unwrap().to_owned();
    // Another operator, the enrollments in another order: the same network.
    let (ok, again, stderr) = genesis(&enrollments, &[3, 1, 0, 2], &second);
    assert!(ok, "{stderr}");
    assert!(again.contains(&id), "{again}");
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    // No secret left its operator's directory: none is in the genesis.
    let network = std::fs::read_to_string(&first).unwrap();
    for i in 1..=4 {
        for secret in ["consensus.key", "secp256k1.key", "kek.key"] {
            let key = std::fs::read_to_string(dir.path().join(format!("operator-{i}/{secret}"))).unwrap();
            assert!(!network.contains(key.trim()), "operator {i}'s {secret} is in network.toml");
        }
    }
    // An enrollment altered on the way is refused, and nothing is written.
    let tampered = dir.path().join("tampered.toml");
    let text = std::fs::read_to_string(&enrollments[0]).unwrap().replace("10.0.0.1:27000", "10.0.0.9:27000");
    std::fs::write(&tampered, text).unwrap();
    enrollments[0] = tampered;
    let third = dir.path().join("c.toml");
    let (ok, _, stderr) = genesis(&enrollments, &[0, 1, 2, 3], &third);
    assert!(!ok);
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert!(!third.exists());
    // An existing file is not overwritten.
    let (ok, _, stderr) = genesis(&enrollments, &[1, 2, 3], &first);
    assert!(!ok);
    assert!(stderr.contains("exists"), "{stderr}");
}

#[test]
fn dev_issuer_runs_alone_and_dev_token_asks_it() {
    // A free port below the kernel's ephemeral range (an outgoing
    // connection cannot take it meanwhile).
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    let port = (0..2000u16)
        .map(|k| 20_000 + (start - 20_000 + k * 7) % 12_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut issuer = quorumkey()
        .args(["dev-issuer", "--listen", &listen])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://{listen}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let token = loop {
        let (ok, out, err) = run(&["dev-token", "--email", "cli@example.com", "--issuer", &url], None);
        if ok {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "the issuer did not come up: {err}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let (ok, _, err) = run(&["dev-token", "--email", "not-an-email", "--issuer", &url], None);
    assert!(!ok);
    assert!(err.contains("name@domain"), "{err}");
    issuer.kill().unwrap();
    let _ = issuer.wait();
    // Nothing listening, no network.json: clear errors.
    let (ok, _, err) = run(&["dev-token", "--email", "a@b.c", "--issuer", &url], None);
    assert!(!ok);
    assert!(err.contains("cannot reach the development issuer"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("network.json");
    let (ok, _, err) = run(&["dev-token", "--email", "a@b.c", "--network", missing.to_str().unwrap()], None);
    assert!(!ok);
    assert!(err.contains("start a devnet or pass --issuer"), "{err}");
}

#[test]
fn dev_issuer_refuses_a_public_address_without_the_flag() {
    // Every address other machines may reach: refused at once, saying why
    // and how to override.
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8550"] {
        // An issuer that starts never exits: give it 10 s, then stop it.
        let mut child = quorumkey()
            .args(["dev-issuer", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                let _ = child.wait();
                panic!("the development issuer started on {listen} without --allow-public-bind");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        let (ok, err) = (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned());
        assert!(!ok, "{listen} was accepted");
        assert!(err.contains(&format!("refusing to listen on {listen}")), "{listen}: {err}");
        assert!(err.contains("--allow-public-bind") && err.contains("loopback"), "{listen}: {err}");
    }
    let (ok, help, _) = run(&["dev-issuer", "--help"], None);
    assert!(ok && help.contains("--allow-public-bind"), "{help}");
    // With the flag, it serves on 0.0.0.0 (and says what it is).
    let mut issuer = quorumkey()
        .args(["dev-issuer", "--listen", "0.0.0.0:0", "--allow-public-bind"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(issuer.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.starts_with("development issuer http://0.0.0.0:"), "{first}");
    issuer.kill().unwrap();
    let _ = issuer.wait();
}

/// The README's first command, end to end: a local network, the key pool,
/// a sign-in, the full login, a verified signature, a clean stop.
#[test]
fn demo_runs_the_whole_system_and_exits_cleanly() {
    let (ok, out, err) = run(&["demo", "--email", "readme@example.com"], None);
    assert!(ok, "demo failed:\n{out}\n{err}");
    for expected in [
        "5 nodes, threshold 3",
        "readme@example.com at the development issuer",
        "a new key from the pool",
        "address     0x",
        "verified    yes",
        "the network is stopped and its directory removed",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    let used = out.lines().filter(|line| line.contains("(used)")).count();
    assert_eq!(used, 3, "exactly t shares used:\n{out}");
}

/// `quorumkey bench` in a tiny configuration: every phase runs and the
/// report has every figure next to its floor (the figures of a debug build
/// mean nothing; `cargo run --release -- bench` measures).
#[test]
fn bench_reports_every_figure_with_its_floor() {
    let args = [
        "bench",
        "--new-users",
        "2",
        "--logins",
        "4",
        "--seconds",
        "2",
        "--concurrency",
        "2",
        "--batches",
        "2",
        "--batch-keys",
        "16",
    ];
    let (ok, out, err) = run(&args, None);
    assert!(ok, "bench failed:\n{out}\n{err}");
    for expected in [
        "login floor",
        "login, existing user",
        "login, key known",
        "script login",
        "new user",
        "sustained logins",
        "DKG",
        "refresh (reshare)",
        "0 failed",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    // Each login figure against the floor and against the least time the
    // cores could do its cryptography in (the two logins, and both with
    // storage); a script login against a jwt login; new users, sustained
    // logins, the DKG and a refresh against theirs.
    assert_eq!(out.matches("ratio ").count(), 11, "{out}");
    assert_eq!(out.matches("least possible").count(), 3, "{out}");
    let dkg = out.lines().find(|line| line.starts_with("DKG")).unwrap();
    let rate: f64 = dkg.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rate > 0.0, "the DKG rate was measured: {dkg}");
    let refresh = out.lines().find(|line| line.starts_with("refresh (reshare)")).unwrap();
    let rate: f64 = refresh.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(rate > 0.0, "the refresh rate was measured: {refresh}");
}

/// On a machine without CA certificates (a minimal container), the
/// verifier commands still reach a node: the node API client falls back to
/// the roots compiled in instead of panicking (reqwest's OS-root verifier
/// refuses to build without any).
#[test]
fn node_commands_work_on_a_machine_without_ca_certificates() {
    let empty = tempfile::tempdir().unwrap();
    // rustls-native-certs reads only these when they are set.
    let output = quorumkey()
        .args(["verifier", "list", "--node", "http://127.0.0.1:1"])
        .env("SSL_CERT_FILE", empty.path().join("none.pem"))
        .env("SSL_CERT_DIR", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("http://127.0.0.1:1/"), "the error is about reaching the node: {stderr}");
}

#[test]
fn test_script_runs_an_example_on_its_sample_login() {
    let guest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/assemblyscript");
    let wasm = guest.join("build/same-email.wasm");
    if !wasm.exists() {
        let npm = |args: &[&str]| Command::new("npm").args(args).current_dir(&guest).status().unwrap();
        if !guest.join("node_modules/assemblyscript/package.json").exists() {
            assert!(npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"]).success());
        }
        assert!(npm(&["run", "build"]).success());
    }
    let module = wasm.to_str().unwrap().to_owned();
    let sample = guest.join("examples/same-email.input.json");
    let (ok, stdout, stderr) =
        run(&["verifier", "test-script", "--module", &module, "--input", sample.to_str().unwrap()], None);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("verifier_id  alice@example.com"), "{stdout}");
    assert!(stdout.contains("fuel         "), "{stdout}");
    // A refusal is an error, with the script's reason.
    let other = guest.join("examples/wallet-with-oauth.input.json");
    let (ok, _, stderr) =
        run(&["verifier", "test-script", "--module", &module, "--input", other.to_str().unwrap()], None);
    assert!(!ok && stderr.contains("refused the login: sign in with both providers"), "{stderr}");
    // A budget too small.
    let (ok, _, stderr) = run(
        &["verifier", "test-script", "--module", &module, "--input", sample.to_str().unwrap(), "--fuel", "100"],
        None,
    );
    assert!(!ok && stderr.contains("ran out of fuel (100 units)"), "{stderr}");
    // Not a script.
    let (ok, _, stderr) = run(
        &["verifier", "test-script", "--module", sample.to_str().unwrap(), "--input", sample.to_str().unwrap()],
        None,
    );
    assert!(!ok && stderr.contains("not valid WebAssembly"), "{stderr}");
}
