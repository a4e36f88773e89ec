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
//! Running out of file descriptors (a flood of connections) must not stop
//! the log: sealing needs no new descriptor. The next log file
//! (`<log>.next`) is created ahead and kept open, and the log's directory
//! is kept open to make renames and deletions durable; a seal takes the
//! spare and creates the next one when it can. If no spare can be had, the
//! background checkpoint runs as a full one instead (appends wait for its
//! redb transaction), and the next one tries again: records are never
//! refused for want of a descriptor.
//!
//! On opening, the store replays the sealed log, then the log, into redb,
//! the first of each key winning. Every entry is a record the store
//! accepted (or was accepting when it stopped), so remembering it is safe.
//! Damage loses as little as the framing allows:
//! - whatever follows the last intact entry of the log being written is a
//!   torn tail, as a write cut short by a crash leaves it, and is cut off;
//! - an entry whose framing is intact but whose checksum fails is skipped,
//!   and the entries after it are kept; where a length is damaged (the
//!   framing lost), decoding goes on from the next intact entry and the
//!   bytes up to it are skipped as one damaged region. Either is reported
//!   ([`crate::LoginLogDamage`], with its offset, never its content). If it
//!   was *acknowledged* (an intact entry of a later append follows it in
//!   the same file, and an append begins only once the one before returned
//!   from its `fdatasync`; or it is in a sealed log, cut to its
//!   acknowledged length before sealing) a record the node answered for is
//!   lost, and the store refuses to open until no token it could
//!   hold is accepted any more, unless the operator accepts the loss (see
//!   [`crate::StoreOptions`] and the store's README for why).
//!
//! If a log cannot be sealed, emptied or deleted after a checkpoint for
//! another reason, the store takes no new record until it is reopened; the
//! replay then finds records redb already holds, or ones the checkpoint's
//! sweep forgot (expired: the next sweep forgets them again).
//!
//! Written by hand: a length-prefixed, checksummed append-only file is a
//! few dozen lines, and no well-kept crate offers just that without a
//! storage engine around it.
//!
//! Entry format: `len: u32 LE` (of the payload; its top bit marks the last
//! entry of one append), `crc32: u32 LE` (of the payload), then the
//! payload: `expires_at: u64 LE`, `key_len: u32 LE`, the key, the value.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::NewLoginRecord;

/// Bytes before an entry's payload.
const HEADER: usize = 8;
/// Bytes of a payload before its key.
const PAYLOAD_HEADER: usize = 12;
/// Largest payload replay accepts: a length beyond it is a corrupt entry
/// (records are a few hundred bytes).
const MAX_PAYLOAD: usize = 1 << 20;
/// The top bit of an entry's length: the last entry of one append.
const GROUP_END: u32 = 1 << 31;

/// The log file, positioned after its last whole entry.
#[derive(Debug)]
pub(crate) struct LoginLog {
    file: File,
    len: u64,
    /// The next log file, open ahead of need (see the module's text).
    spare: Option<File>,
    spare_path: PathBuf,
}

/// An entry skipped on reading: its framing was intact, its checksum not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Its first byte in the file.
    pub(crate) offset: u64,
    /// Its bytes, header included.
    pub(crate) len: u64,
    /// It was made durable and answered for (see the module's text).
    pub(crate) acknowledged: bool,
    /// The latest expiry of the entries after it in the file.
    pub(crate) later_expiry: Option<u64>,
}

/// What a log file holds.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The intact records, in the order they were written.
    pub(crate) records: Vec<NewLoginRecord>,
    /// Bytes up to the end of the last entry kept (a torn tail follows).
    pub(crate) whole: usize,
    /// Entries skipped.
    pub(crate) skipped: Vec<Skipped>,
}

impl Decoded {
    /// The latest expiry of its records.
    pub(crate) fn latest_expiry(&self) -> Option<u64> {
        self.records.iter().map(|record| record.expires_at).max()
    }
}

/// Why a log was not sealed.
#[derive(Debug)]
pub(crate) enum SealFailure {
    /// Nothing changed; the log goes on as it was (no descriptor for the
    /// next log, or the rename was refused).
    NotSealed(std::io::Error),
    /// The log may be the sealed file now: the caller must stop appending.
    Broken(std::io::Error),
}

fn create_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(truncate).mode(0o600).open(path)?;
    make_private(&file)?;
    Ok(file)
}

/// Mode 0600 for a file made before it was created so.
pub(crate) fn make_private(file: &File) -> std::io::Result<()> {
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Where the spare next log of the log at `path` lives: `<path>.next`.
pub(crate) fn spare_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

impl LoginLog {
    /// Opens (or creates, mode 0600) the log at `path`; returns it with
    /// what it holds. A torn tail is cut off, so new entries follow the
    /// last whole one.
    pub(crate) fn open(path: &Path) -> std::io::Result<(Self, Decoded)> {
        let mut file = create_private(path, false)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let decoded = decode(&bytes, false);
        let len = decoded.whole as u64;
        if decoded.whole < bytes.len() {
            file.set_len(len)?;
            file.sync_all()?;
        }
        let spare_path = spare_path(path);
        let spare = create_private(&spare_path, true).ok();
        Ok((Self { file, len, spare, spare_path }, decoded))
    }

    /// Appends `records` and makes them durable (one write, one
    /// `fdatasync`). On error nothing may be taken as durable; the
    /// position stays where it was, so the next append overwrites whatever
    /// part of this one reached the file.
    pub(crate) fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a NewLoginRecord>) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(512);
        let mut last = None;
        for record in records {
            last = Some(bytes.len());
            encode(record, &mut bytes)?;
        }
        let Some(last) = last else { return Ok(()) };
        bytes[last + 3] |= (GROUP_END >> 24) as u8;
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

    /// Whether a spare next log is open (a seal needs no new descriptor).
    #[cfg(test)]
    pub(crate) fn has_spare(&self) -> bool {
        self.spare.is_some()
    }

    /// Empties the log (after a durable redb commit holds every record in
    /// it). Needs no new descriptor.
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    /// Starts a background checkpoint: the log at `path` becomes the
    /// sealed log at `sealed` (its records stay durable there until redb
    /// holds them) and this log continues in the spare file, now at
    /// `path`. `dir` is the log's directory, open, to make both renames
    /// durable. Needs no new descriptor if a spare is open; afterwards it
    /// opens the next spare if it can.
    pub(crate) fn seal(&mut self, path: &Path, sealed: &Path, dir: &File) -> Result<(), SealFailure> {
        let spare = match self.spare.take() {
            Some(spare) => spare,
            None => create_private(&self.spare_path, true).map_err(SealFailure::NotSealed)?,
        };
        // The sealed log holds acknowledged appends only: cut whatever a
        // failed append left past them (replay takes a damaged entry in a
        // sealed log for an acknowledged one).
        let cut = match self.file.metadata() {
            Ok(metadata) if metadata.len() > self.len => {
                self.file.set_len(self.len).and_then(|()| self.file.sync_data())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        let renamed = cut.and_then(|()| std::fs::rename(path, sealed));
        if let Err(e) = renamed {
            self.spare = Some(spare);
            return Err(SealFailure::NotSealed(e));
        }
        if let Err(e) = std::fs::rename(&self.spare_path, path) {
            // Put the log back where it was if possible.
            return match std::fs::rename(sealed, path) {
                Ok(()) => {
                    self.spare = Some(spare);
                    Err(SealFailure::NotSealed(e))
                }
                Err(_) => Err(SealFailure::Broken(e)),
            };
        }
        dir.sync_all().map_err(SealFailure::Broken)?;
        self.file = spare;
        self.len = 0;
        self.spare = create_private(&self.spare_path, true).ok();
        Ok(())
    }
}

/// What the sealed log at `path` (see [`LoginLog::seal`]) holds; nothing
/// if there is none.
pub(crate) fn read_sealed(path: &Path) -> std::io::Result<Decoded> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode(&bytes, true)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Decoded::default()),
        Err(e) => Err(e),
    }
}

/// Deletes the sealed log at `path`, durably (after a durable redb commit
/// holds every record in it), `dir` being its directory, open; nothing to
/// do if there is none. Needs no new descriptor.
pub(crate) fn remove_sealed(path: &Path, dir: &File) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => dir.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The directory of `path`, open (to make its entries durable).
pub(crate) fn open_dir_of(path: &Path) -> std::io::Result<File> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
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

/// One framed entry.
struct Framed {
    offset: usize,
    next: usize,
    group_end: bool,
    /// `None`: the checksum (or the payload's own framing) is wrong.
    record: Option<NewLoginRecord>,
}

/// What `bytes` hold: every intact entry, the damaged entries skipped (an
/// entry whose checksum fails; where a length is damaged, the bytes up to
/// the next intact entry), and the length up to the tail that is cut:
/// whatever follows the last intact entry of a log still written (`sealed`
/// false; a write cut short).
fn decode(bytes: &[u8], sealed: bool) -> Decoded {
    let mut framed = Vec::new();
    let mut at = 0;
    let intact_at = |p: usize| decode_one(bytes, p).is_some_and(|e| e.record.is_some());
    while at < bytes.len() {
        if let Some(mut entry) = decode_one(bytes, at) {
            // An entry that fails its checksum may have a damaged length
            // too: an intact entry starting inside the span it claims ends
            // the damaged region there, so a wrong length never swallows
            // intact entries (nor sends decoding into their payloads).
            if entry.record.is_none()
                && let Some(intact) = (at + 1..entry.next).find(|&p| intact_at(p))
            {
                entry.next = intact;
                entry.group_end = false;
            }
            at = entry.next;
            framed.push(entry);
            continue;
        }
        // The framing is broken here (a damaged length). If an intact
        // entry follows, the damage is in the middle: the bytes up to it
        // are one damaged region, and decoding goes on from it.
        let Some(next) = (at + 1..bytes.len()).find(|&p| intact_at(p)) else {
            // A sealed log was cut to its acknowledged length: even a
            // damaged tail held acknowledged entries.
            if sealed {
                framed.push(Framed { offset: at, next: bytes.len(), group_end: false, record: None });
            }
            break;
        };
        framed.push(Framed { offset: at, next, group_end: false, record: None });
        at = next;
    }
    // A log still written: damage after its last intact entry is the tail
    // of a write that may not have completed.
    let kept = if sealed {
        framed.len()
    } else {
        framed.iter().rposition(|entry| entry.record.is_some()).map_or(0, |last| last + 1)
    };
    framed.truncate(kept);
    let whole = framed.last().map_or(0, |entry| entry.next);
    let mut decoded = Decoded { records: Vec::with_capacity(framed.len()), whole, skipped: Vec::new() };
    // Scanning backwards: the latest expiry after each entry, and whether
    // an intact entry of a later append follows it.
    let mut later_expiry: Option<u64> = None;
    let mut later_append_intact = false;
    let mut this_append_intact = false;
    let mut skipped = Vec::new();
    let mut records = Vec::with_capacity(framed.len());
    for entry in framed.into_iter().rev() {
        if entry.group_end {
            // Entries before this one belong to earlier appends.
            later_append_intact |= this_append_intact;
            this_append_intact = false;
        }
        match entry.record {
            Some(record) => {
                this_append_intact = true;
                later_expiry = later_expiry.max(Some(record.expires_at));
                records.push(record);
            }
            None => skipped.push(Skipped {
                offset: entry.offset as u64,
                len: (entry.next - entry.offset) as u64,
                acknowledged: sealed || later_append_intact,
                later_expiry,
            }),
        }
    }
    records.reverse();
    skipped.reverse();
    decoded.records = records;
    decoded.skipped = skipped;
    decoded
}

fn decode_one(bytes: &[u8], at: usize) -> Option<Framed> {
    let u32_at = |i: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?)) };
    let raw_len = u32_at(at)?;
    let len = usize::try_from(raw_len & !GROUP_END).ok()?;
    if !(PAYLOAD_HEADER..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let crc = u32_at(at + 4)?;
    let next = at.checked_add(HEADER + len)?;
    let payload = bytes.get(at + HEADER..next)?;
    let record = (crc32fast::hash(payload) == crc).then(|| decode_payload(payload)).flatten();
    Some(Framed { offset: at, next, group_end: raw_len & GROUP_END != 0, record })
}

fn decode_payload(payload: &[u8]) -> Option<NewLoginRecord> {
    let expires_at = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let key_len = usize::try_from(u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?)).ok()?;
    let key = payload.get(PAYLOAD_HEADER..PAYLOAD_HEADER.checked_add(key_len)?)?;
    let value = &payload[PAYLOAD_HEADER + key_len..];
    Some(NewLoginRecord { key: key.to_vec(), value: value.to_vec(), expires_at })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(key: &[u8], value: &[u8], expires_at: u64) -> NewLoginRecord {
        NewLoginRecord { key: key.to_vec(), value: value.to_vec(), expires_at }
    }

    /// The bytes `append` writes for `groups`, one append each, and where
    /// each entry starts and ends.
    fn encoded_groups(groups: &[Vec<NewLoginRecord>]) -> (Vec<u8>, Vec<(usize, usize)>) {
        let (mut bytes, mut spans) = (Vec::new(), Vec::new());
        for group in groups {
            let mut last = 0;
            for r in group {
                last = bytes.len();
                encode(r, &mut bytes).unwrap();
                spans.push((last, bytes.len()));
            }
            if !group.is_empty() {
                bytes[last + 3] |= 0x80;
            }
        }
        (bytes, spans)
    }

    fn encoded(records: &[NewLoginRecord]) -> Vec<u8> {
        encoded_groups(&[records.to_vec()]).0
    }

    #[test]
    fn appended_records_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, found) = LoginLog::open(&path).unwrap();
        assert!(found.records.is_empty());
        let first = [record(b"a", b"one", 5), record(b"", b"", 0)];
        let second = [record(b"b", &[7; 300], u64::MAX)];
        log.append(&first).unwrap();
        log.append(&second).unwrap();
        let len = log.len();
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, encoded_groups(&[first.to_vec(), second.to_vec()]).0, "one group mark per append");
        let (log, found) = LoginLog::open(&path).unwrap();
        assert_eq!(found.records, [&first[..], &second[..]].concat());
        assert!(found.skipped.is_empty());
        assert_eq!(log.len(), len);
    }

    #[test]
    fn logs_are_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (log, _) = LoginLog::open(&path).unwrap();
        assert!(log.has_spare());
        for file in [path.clone(), spare_path(&path)] {
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "{}", file.display());
        }
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
        assert_eq!(LoginLog::open(&path).unwrap().1.records, [record(b"new", b"y", 2)]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let whole = encoded(&[record(b"k1", b"v1", 1), record(b"k2", b"v2", 2)]);
        let torn = encoded(&[record(b"k3", b"v3", 3)]);
        std::fs::write(&path, [&whole[..], &torn[..torn.len() - 3]].concat()).unwrap();
        let (mut log, found) = LoginLog::open(&path).unwrap();
        assert_eq!(found.records, [record(b"k1", b"v1", 1), record(b"k2", b"v2", 2)]);
        assert!(found.skipped.is_empty(), "a torn tail is not damage");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole.len() as u64);
        log.append(&[record(b"k4", b"v4", 4)]).unwrap();
        drop(log);
        assert_eq!(LoginLog::open(&path).unwrap().1.records.len(), 3);
    }

    #[test]
    fn a_corrupt_entry_in_the_middle_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let groups = vec![
            vec![record(b"k1", b"v1", 10), record(b"k2", b"v2", 11)],
            vec![record(b"k3", b"v3", 12)],
            vec![record(b"k4", b"v4", 13), record(b"k5", b"v5", 14)],
        ];
        let (mut bytes, spans) = encoded_groups(&groups);
        // k2 (acknowledged: the second append came after it) and k4 (in
        // the last append, followed by an intact entry of the same one).
        for entry in [1, 3] {
            bytes[spans[entry].1 - 1] ^= 0x01;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (log, found) = LoginLog::open(&path).unwrap();
        let keys: Vec<&[u8]> = found.records.iter().map(|r| r.key.as_slice()).collect();
        assert_eq!(keys, [&b"k1"[..], b"k3", b"k5"]);
        assert_eq!(
            found.skipped,
            [
                Skipped {
                    offset: spans[1].0 as u64,
                    len: (spans[1].1 - spans[1].0) as u64,
                    acknowledged: true,
                    later_expiry: Some(14)
                },
                Skipped {
                    offset: spans[3].0 as u64,
                    len: (spans[3].1 - spans[3].0) as u64,
                    acknowledged: false,
                    later_expiry: Some(14)
                },
            ]
        );
        assert_eq!(log.len(), bytes.len() as u64, "nothing cut");
        // In a sealed log every damaged entry was acknowledged.
        let sealed = decode(&bytes, true);
        assert!(sealed.skipped.iter().all(|s| s.acknowledged));
    }

    #[test]
    fn a_damaged_last_entry_is_a_torn_tail() {
        let groups = vec![vec![record(b"k1", b"v1", 1)], vec![record(b"k2", b"v2", 2)]];
        let (mut bytes, spans) = encoded_groups(&groups);
        bytes[spans[1].1 - 1] ^= 0x01;
        let found = decode(&bytes, false);
        assert_eq!(found.records, [record(b"k1", b"v1", 1)]);
        assert!(found.skipped.is_empty());
        assert_eq!(found.whole, spans[0].1);
        // Sealed: kept as damage (cut to its acknowledged length before).
        let sealed = decode(&bytes, true);
        assert_eq!(sealed.skipped.len(), 1);
        assert_eq!(sealed.skipped[0].later_expiry, None);
        assert_eq!(sealed.whole, bytes.len());
    }

    #[test]
    fn a_damaged_length_in_a_sealed_log_is_reported_to_its_end() {
        let groups = vec![vec![record(b"k1", b"v1", 1)], vec![record(b"k2", b"v2", 2)]];
        let (mut bytes, spans) = encoded_groups(&groups);
        bytes[spans[1].0] ^= 0x7f;
        // A log still written: a torn tail.
        assert!(decode(&bytes, false).skipped.is_empty());
        let sealed = decode(&bytes, true);
        assert_eq!(sealed.records, [record(b"k1", b"v1", 1)]);
        assert_eq!(
            sealed.skipped,
            [Skipped {
                offset: spans[1].0 as u64,
                len: (spans[1].1 - spans[1].0) as u64,
                acknowledged: true,
                later_expiry: None
            }]
        );
    }

    #[test]
    fn sealing_cuts_what_a_failed_append_left() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sealed) = (dir.path().join("log"), dir.path().join("log.sealed"));
        let (mut log, _) = LoginLog::open(&path).unwrap();
        log.append(&[record(b"k1", b"v1", 1)]).unwrap();
        let acknowledged = log.len();
        // What a failed append leaves past the acknowledged length.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0x55; 40]).unwrap();
        let directory = open_dir_of(&path).unwrap();
        log.seal(&path, &sealed, &directory).unwrap();
        assert_eq!(std::fs::metadata(&sealed).unwrap().len(), acknowledged);
        assert_eq!(read_sealed(&sealed).unwrap().records, [record(b"k1", b"v1", 1)]);
        assert!(log.has_spare(), "the next spare is ready");
        log.append(&[record(b"k2", b"v2", 2)]).unwrap();
        drop(log);
        assert_eq!(LoginLog::open(&path).unwrap().1.records, [record(b"k2", b"v2", 2)]);
    }

    #[test]
    fn a_record_too_large_is_refused_and_the_log_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = LoginLog::open(&dir.path().join("log")).unwrap();
        assert!(log.append(&[record(b"k", &vec![0; MAX_PAYLOAD], 1)]).is_err());
        assert_eq!(log.len(), 0);
    }

    fn groups_strategy() -> impl Strategy<Value = Vec<Vec<NewLoginRecord>>> {
        prop::collection::vec(
            prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(any::<u8>(), 0..300), any::<u64>())
                    .prop_map(|(k, v, e)| record(&k, &v, e)),
                1..4,
            ),
            1..6,
        )
    }

    proptest! {
        /// A damaged length loses only its own entry: the entries before it
        /// survive, and so does every entry after it, even one inside the
        /// bytes the damaged length claims (an intact entry there ends the
        /// damaged region); the damage is reported from the damaged entry's
        /// offset.
        #[test]
        fn a_damaged_length_loses_only_its_own_entry(
            groups in groups_strategy(),
            entry in any::<prop::sample::Index>(),
            at in 0usize..4,
            mask in 1u8..=255,
        ) {
            let records: Vec<NewLoginRecord> = groups.concat();
            let (clean, spans) = encoded_groups(&groups);
            let entry = entry.index(records.len());
            let mut bytes = clean.clone();
            bytes[spans[entry].0 + at] ^= mask;
            let claimed = u32::from_le_bytes(bytes[spans[entry].0..spans[entry].0 + 4].try_into().unwrap()) & !GROUP_END;
            let claimed_end = spans[entry].0 + HEADER + claimed as usize;
            // A damaged length that still spans its own entry exactly (only
            // the group mark changed) loses nothing.
            prop_assume!(claimed_end != spans[entry].1);
            let lost_from = spans[entry].0;
            let expected: Vec<NewLoginRecord> =
                (0..records.len()).filter(|&i| i != entry).map(|i| records[i].clone()).collect();
            let found = decode(&bytes, false);
            prop_assert_eq!(&found.records, &expected);
            if expected.len() > entry {
                prop_assert_eq!(found.skipped.first().map(|s| s.offset), Some(lost_from as u64));
            }
        }

        /// Random bytes of random entries corrupted where the framing
        /// stays intact (the checksum or the payload): every other entry
        /// survives, in order; each damaged one is reported at its offset
        /// (acknowledged if an intact entry of a later append follows it),
        /// except damage after the last intact entry, which is a torn tail
        /// and cut.
        #[test]
        fn a_corrupt_entry_loses_only_itself(
            groups in groups_strategy(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255), 1..5),
        ) {
            let records: Vec<NewLoginRecord> = groups.concat();
            let (clean, spans) = encoded_groups(&groups);
            let group_of: Vec<usize> = groups.iter().enumerate().flat_map(|(g, group)| std::iter::repeat_n(g, group.len())).collect();
            let mut bytes = clean.clone();
            for (entry, at, mask) in damage {
                let (start, end) = spans[entry.index(records.len())];
                // The checksum or the payload: bytes 4.. of the entry.
                bytes[start + 4 + at.index(end - start - 4)] ^= mask;
            }
            // (Two flips of one byte may cancel out.)
            let corrupt: std::collections::BTreeSet<usize> =
                (0..records.len()).filter(|&i| bytes[spans[i].0..spans[i].1] != clean[spans[i].0..spans[i].1]).collect();
            let last_intact = (0..records.len()).rev().find(|i| !corrupt.contains(i));
            let found = decode(&bytes, false);
            let survivors: Vec<NewLoginRecord> =
                (0..records.len()).filter(|i| !corrupt.contains(i)).map(|i| records[i].clone()).collect();
            prop_assert_eq!(&found.records, &survivors);
            let reported: Vec<u64> = found.skipped.iter().map(|s| s.offset).collect();
            let expected: Vec<u64> = corrupt.iter().filter(|&&i| Some(i) < last_intact).map(|&i| spans[i].0 as u64).collect();
            prop_assert_eq!(reported, expected);
            for skipped in &found.skipped {
                let entry = spans.iter().position(|(start, _)| *start as u64 == skipped.offset).unwrap();
                let acknowledged = (entry + 1..records.len()).any(|i| !corrupt.contains(&i) && group_of[i] > group_of[entry]);
                prop_assert_eq!(skipped.acknowledged, acknowledged);
                let later = (entry + 1..records.len()).filter(|i| !corrupt.contains(i)).map(|i| records[i].expires_at).max();
                prop_assert_eq!(skipped.later_expiry, later);
            }
            prop_assert_eq!(found.whole, last_intact.map_or(0, |i| spans[i].1));
        }

        /// Whatever the bytes after some whole entries (a torn write, a
        /// broken length, garbage), decoding keeps every intact entry
        /// before the damage and never panics.
        #[test]
        fn broken_framing_loses_only_what_follows_it(
            groups in groups_strategy(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let records: Vec<NewLoginRecord> = groups.concat();
            let (bytes, spans) = encoded_groups(&groups);
            let all = decode(&bytes, false);
            prop_assert_eq!(&all.records, &records);
            prop_assert_eq!(all.whole, bytes.len());

            // Cut anywhere.
            let cut = cut.index(bytes.len() + 1);
            let kept = decode(&bytes[..cut], false);
            let whole_before_cut = spans.iter().take_while(|(_, end)| *end <= cut).count();
            prop_assert_eq!(&kept.records[..], &records[..whole_before_cut]);
            prop_assert!(kept.whole <= cut);

            // One damaged byte anywhere: everything before its entry stays.
            let mut damaged = bytes.clone();
            let at = flip.index(damaged.len());
            damaged[at] ^= 0x5a;
            let before = decode(&damaged, false);
            let intact = spans.iter().take_while(|(_, end)| *end <= at).count();
            prop_assert_eq!(&before.records[..intact], &records[..intact]);

            let with_garbage = decode(&[&bytes[..], &tail[..]].concat(), false);
            prop_assert_eq!(&with_garbage.records[..records.len()], &records[..]);
        }
    }
}
