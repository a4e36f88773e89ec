//! Group commit of login records on a real store: concurrent inserts share
//! writes, each gets the answer it would get alone, and every record
//! is durable when its insert returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_node::applier::BlockApplier;
use quorumkey_node::login_store::{LoginStore, LoginStoreTask};
use quorumkey_node::observability::HealthCell;
use quorumkey_store::{NewLoginRecord, NodeStore};

/// A store on a fresh file of a 4-node test network, with its login-record
/// writer.
struct Fixture {
    net: TestNetwork,
    _dir: tempfile::TempDir,
    path: PathBuf,
    applier: Arc<BlockApplier>,
    writer: LoginStore,
    task: LoginStoreTask,
}

impl Fixture {
    fn new() -> Self {
        let net = TestNetwork::new(4, 1);
        let _dir = tempfile::tempdir().unwrap();
        let path = _dir.path().join("node.redb");
        let health = HealthCell::new(1, *net.ledger.network_id());
        let applier = Arc::new(BlockApplier::open(net.ledger.clone(), &path, health, &test_store_options()).unwrap());
        let (writer, task) = LoginStore::start(&applier).unwrap();
        Self { net, _dir, path, applier, writer, task }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_share_commits_and_keep_the_first_record() {
    let Fixture { net, _dir, path, applier, writer, task } = Fixture::new();

    // 200 keys; 100 of them inserted twice with different values, all at
    // once.
    let mut inserts = Vec::new();
    for key in 0u32..200 {
        for attempt in 0..if key % 2 == 0 { 2 } else { 1 } {
            let record = NewLoginRecord {
                key: key.to_be_bytes().to_vec(),
                value: format!("{key}/{attempt}").into_bytes(),
                expires_at: 1_000,
            };
            let writer = writer.clone();
            inserts.push(tokio::spawn(async move { (record.clone(), writer.insert(record).await.unwrap()) }));
        }
    }
    // Per key: each insert's value and the record it was told was there.
    type Answers = Vec<(Vec<u8>, Option<Vec<u8>>)>;
    let mut by_key: HashMap<Vec<u8>, Answers> = HashMap::new();
    for insert in inserts {
        let (record, existing) = insert.await.unwrap();
        by_key.entry(record.key).or_default().push((record.value, existing));
    }
    assert_eq!(by_key.len(), 200);
    for (key, answers) in &by_key {
        // Exactly one insert of each key stored its record; any other was
        // told about that one.
        let winners: Vec<&Vec<u8>> = answers.iter().filter(|(_, e)| e.is_none()).map(|(v, _)| v).collect();
        assert_eq!(winners.len(), 1, "key {key:?}: {answers:?}");
        for (_, existing) in answers.iter().filter(|(_, e)| e.is_some()) {
            assert_eq!(existing.as_ref(), Some(winners[0]));
        }
        assert_eq!(applier.store().login_record(key).unwrap().as_ref(), Some(winners[0]));
    }
    let writes = writer.writes();
    assert!((1..150).contains(&writes), "300 concurrent inserts took {writes} writes");

    // Durable: the writer and the store closed, the file reopened.
    drop(writer);
    let expected: HashMap<Vec<u8>, Vec<u8>> = by_key
        .into_iter()
        .map(|(key, answers)| {
            let winner = answers.into_iter().find(|(_, e)| e.is_none()).unwrap().0;
            (key, winner)
        })
        .collect();
    // The login store's threads hold the store until they are stopped.
    tokio::task::spawn_blocking(move || task.stop()).await.unwrap();
    drop(applier);
    let store = NodeStore::open_with(&path, &net.ledger, &test_store_options()).unwrap();
    for (key, value) in &expected {
        assert_eq!(store.login_record(key).unwrap().as_ref(), Some(value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_has_redb_take_the_records_over_in_the_background() {
    let Fixture { net: _, _dir, path, applier, writer, task: _task } = Fixture::new();
    let log = NodeStore::login_log_path(&path);
    // 4,200 records, 200 at a time: a checkpoint is due at 4,096.
    for round in 0u32..21 {
        let inserts: Vec<_> = (0u32..200)
            .map(|i| {
                let writer = writer.clone();
                let record =
                    NewLoginRecord { key: format!("{round}-{i}").into_bytes(), value: vec![1; 300], expires_at: 1_000 };
                tokio::spawn(async move { writer.insert(record).await.unwrap() })
            })
            .collect();
        for insert in inserts {
            assert_eq!(insert.await.unwrap(), None);
        }
    }
    // The checkpoint thread empties the log (new records go to a new one)
    // without anyone asking the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(&log).unwrap().len() > 200 * 400 || NodeStore::sealed_login_log_path(&path).exists() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!applier.store().login_checkpoint_due().unwrap());
    assert_eq!(applier.store().login_record(b"0-0").unwrap(), Some(vec![1; 300]));
    assert_eq!(applier.store().login_record(b"20-199").unwrap(), Some(vec![1; 300]));
}

/// The store options of a test node (a fixed key-encryption key).
fn test_store_options() -> quorumkey_store::StoreOptions {
    quorumkey_store::StoreOptions::new(quorumkey_store::Kek::from_bytes(&[0x42; 32]))
}
