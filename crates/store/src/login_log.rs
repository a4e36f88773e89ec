//! The login records' write-ahead log: what makes a login record durable.
//!
//! A node answers a `CommitmentRequest` only once its record is durable. A
//! durable redb transaction per group of records was most of a login's
//! commitment step on a shared disk (several pages and an fsync, plus
//! redb's per-commit work, with every node committing at once). Instead
//! the records are appended here, in one write and one `fdatasync`, and
//! kept in memory (readers look there first) until a checkpoint inserts
//! them into redb in bulk, in one durable transaction.
//!
//! Two kinds of checkpoint. A background checkpoint (once a few thousand
//! records are pending; the node runs it on its own thread) must not hold
//! up new records: under the log's lock it only seals the log (renames it
//! to `<log>.sealed` and starts a new one) and copies the pending records;
//! the redb transaction, which takes tens of milliseconds for a few
//! thousand records and grows with the table, runs while appends go on to
//! the new log; then the sealed log is deleted. A full checkpoint (at
//! every sweep of expired records, once a minute, and on opening) holds
//! the log's lock throughout and empties both files, so a record the
//! sweep forgets cannot come back from a log after a crash.
//!
//! On opening, the store replays the sealed log, then the log, into redb:
//! every entry up to the first torn or corrupt one (a write cut short at
//! the tail), inserted if absent, the first of each key winning. Every
//! entry is a record the store accepted, so remembering it is safe. If a
//! log cannot be sealed, emptied or deleted after a checkpoint, the store
//! takes no new record until it is reopened; the replay then finds records
//! redb already holds, or ones the checkpoint's sweep forgot (expired: the
//! next sweep forgets them again).
//!
//! Written by hand: a length-prefixed, checksummed append-only file is a
//! few dozen lines, and no well-kept crate offers just that without a
//! storage engine around it.
//!
//! Entry format: `len: u32 LE` (of the payload), `crc32: u32 LE` (of the
//! payload), then the payload: `expires_at: u64 LE`, `key_len: u32 LE`,
//! the key, the value.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::NewLoginRecord;

/// Bytes before an entry's payload.
const HEADER: usize = 8;
/// Bytes of a payload before its key.
const PAYLOAD_HEADER: usize = 12;
/// Largest payload replay accepts: a length beyond it is a corrupt entry
/// (records are a few hundred bytes).
const MAX_PAYLOAD: usize = 1 << 20;

/// The log file, positioned after its last whole entry.
#[derive(Debug)]
pub(crate) struct LoginLog {
    file: File,
    len: u64,
}

impl LoginLog {
    /// Opens (or creates) the log at `path`; returns it with the records
    /// it holds, in the order they were written. A torn or corrupt tail is
    /// cut off, so new entries follow the last whole one.
    pub(crate) fn open(path: &Path) -> std::io::Result<(Self, Vec<NewLoginRecord>)> {
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, whole) = decode(&bytes);
        let len = whole as u64;
        if whole < bytes.len() {
            file.set_len(len)?;
            file.sync_all()?;
        }
        Ok((Self { file, len }, records))
    }

    /// Appends `records` and makes them durable (one write, one
    /// `fdatasync`). On error nothing may be taken as durable; the
    /// position stays where it was, so the next append overwrites whatever
    /// part of this one reached the file.
    pub(crate) fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a NewLoginRecord>) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(512);
        for record in records {
            encode(record, &mut bytes)?;
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Empties the log (after a durable redb commit holds every record in
    /// it).
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    /// Starts a background checkpoint: the log at `path` becomes the
    /// sealed log at `sealed` (its records stay durable there until redb
    /// holds them) and this log continues in a new, empty file at `path`.
    /// Both renames are durable when it returns. On error this log may be
    /// the sealed file: the caller must stop appending to it.
    pub(crate) fn seal(&mut self, path: &Path, sealed: &Path) -> std::io::Result<()> {
        std::fs::rename(path, sealed)?;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        sync_parent(path)?;
        self.file = file;
        self.len = 0;
        Ok(())
    }
}

/// The records of the sealed log at `path` (see [`LoginLog::seal`]), in
/// the order they were written, up to the first torn or corrupt entry;
/// none if there is no sealed log.
pub(crate) fn read_sealed(path: &Path) -> std::io::Result<Vec<NewLoginRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode(&bytes).0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Deletes the sealed log at `path`, durably (after a durable redb commit
/// holds every record in it); nothing to do if there is none.
pub(crate) fn remove_sealed(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the entries of `path`'s directory durable (a rename, a new or a
/// deleted file).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

fn encode(record: &NewLoginRecord, out: &mut Vec<u8>) -> std::io::Result<()> {
    let payload_len = PAYLOAD_HEADER + record.key.len() + record.value.len();
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "login record too large for the log");
    if payload_len > MAX_PAYLOAD {
        return Err(too_big());
    }
    let key_len = u32::try_from(record.key.len()).map_err(|_| too_big())?;
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&record.expires_at.to_le_bytes());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&record.value);
    let payload = &out[start + HEADER..];
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The records in `bytes` up to the first incomplete or corrupt entry, and
/// how many bytes they take.
fn decode(bytes: &[u8]) -> (Vec<NewLoginRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, next)) = decode_one(bytes, at) {
        records.push(record);
        at = next;
    }
    (records, at)
}

fn decode_one(bytes: &[u8], at: usize) -> Option<(NewLoginRecord, usize)> {
    let u32_at = |i: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?)) };
    let len = usize::try_from(u32_at(at)?).ok()?;
    if !(PAYLOAD_HEADER..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let crc = u32_at(at + 4)?;
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let expires_at = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let key_len = usize::try_from(u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?)).ok()?;
    let key = payload.get(PAYLOAD_HEADER..PAYLOAD_HEADER.checked_add(key_len)?)?;
    let value = &payload[PAYLOAD_HEADER + key_len..];
    Some((NewLoginRecord { key: key.to_vec(), value: value.to_vec(), expires_at }, at + HEADER + len))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(key: &[u8], value: &[u8], expires_at: u64) -> NewLoginRecord {
        NewLoginRecord { key: key.to_vec(), value: value.to_vec(), expires_at }
    }

    fn encoded(records: &[NewLoginRecord]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for r in records {
            encode(r, &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn appended_records_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, found) = LoginLog::open(&path).unwrap();
        assert!(found.is_empty());
        let first = [record(b"a", b"one", 5), record(b"", b"", 0)];
        let second = [record(b"b", &[7; 300], u64::MAX)];
        log.append(&first).unwrap();
        log.append(&second).unwrap();
        let len = log.len();
        drop(log);
        let (log, found) = LoginLog::open(&path).unwrap();
        assert_eq!(found, [&first[..], &second[..]].concat());
        assert_eq!(log.len(), len);
    }

    #[test]
    fn a_cleared_log_is_empty_and_takes_new_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, _) = LoginLog::open(&path).unwrap();
        log.append(&[record(b"old", b"x", 1)]).unwrap();
        log.clear().unwrap();
        assert_eq!(log.len(), 0);
        log.append(&[record(b"new", b"y", 2)]).unwrap();
        drop(log);
        assert_eq!(LoginLog::open(&path).unwrap().1, [record(b"new", b"y", 2)]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let whole = encoded(&[record(b"k1", b"v1", 1), record(b"k2", b"v2", 2)]);
        let torn = encoded(&[record(b"k3", b"v3", 3)]);
        std::fs::write(&path, [&whole[..], &torn[..torn.len() - 3]].concat()).unwrap();
        let (mut log, found) = LoginLog::open(&path).unwrap();
        assert_eq!(found, [record(b"k1", b"v1", 1), record(b"k2", b"v2", 2)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole.len() as u64);
        log.append(&[record(b"k4", b"v4", 4)]).unwrap();
        drop(log);
        assert_eq!(LoginLog::open(&path).unwrap().1.len(), 3);
    }

    #[test]
    fn a_record_too_large_is_refused_and_the_log_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = LoginLog::open(&dir.path().join("log")).unwrap();
        assert!(log.append(&[record(b"k", &vec![0; MAX_PAYLOAD], 1)]).is_err());
        assert_eq!(log.len(), 0);
    }

    proptest! {
        /// Whatever the bytes after some whole entries (a torn write, a
        /// flipped bit, garbage), decoding returns exactly the entries
        /// before the damage and never panics.
        #[test]
        fn damage_loses_only_what_follows_it(
            entries in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(any::<u8>(), 0..300), any::<u64>()),
                1..8,
            ),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let records: Vec<NewLoginRecord> = entries.iter().map(|(k, v, e)| record(k, v, *e)).collect();
            let bytes = encoded(&records);
            let (all, len) = decode(&bytes);
            prop_assert_eq!(&all, &records);
            prop_assert_eq!(len, bytes.len());

            // Cut anywhere, then damage one byte after the cut's last whole entry.
            let cut = cut.index(bytes.len() + 1);
            let (kept, kept_len) = decode(&bytes[..cut]);
            prop_assert_eq!(&kept[..], &records[..kept.len()]);
            prop_assert!(kept_len <= cut);
            let mut damaged = bytes.clone();
            let at = flip.index(damaged.len());
            damaged[at] ^= 0x5a;
            let (before, _) = decode(&damaged);
            let intact = records.iter().scan(0, |end, r| { *end += HEADER + PAYLOAD_HEADER + r.key.len() + r.value.len(); Some(*end) })
                .take_while(|end| *end <= at).count();
            prop_assert_eq!(&before[..], &records[..intact]);

            let (with_garbage, _) = decode(&[&bytes[..], &tail[..]].concat());
            prop_assert_eq!(&with_garbage[..records.len()], &records[..]);
        }
    }
}
