//! Reading every login record once, for what a node rebuilds in memory at
//! start (its counts of unexpired records; see `quorumkey-node`'s
//! `pending_records`).

use crate::{COMMITMENTS, LOGIN_EXPIRY, NodeStore, StoreError, db_error};

impl NodeStore {
    /// Calls `visit(key, value, expires_at)` once for each login record
    /// that a sweep at `now` (Unix seconds) would keep (`expires_at` ≥
    /// `now`): the records only in the
    /// write-ahead log, then those in redb, soonest to expire first.
    /// Returns how many it visited.
    ///
    /// Meant for a node's start, before it takes login records: a
    /// checkpoint running meanwhile may make a record visited twice or not
    /// at all.
    pub fn for_each_login_record(
        &self,
        now: u64,
        mut visit: impl FnMut(&[u8], &[u8], u64),
    ) -> Result<usize, StoreError> {
        let mut visited = 0;
        let pending_keys: std::collections::HashSet<Vec<u8>> = {
            let pending = self.pending_logins.read().map_err(|_| self.poisoned("read pending records"))?;
            for (key, (value, expires_at)) in pending.iter().filter(|(_, (_, at))| *at >= now) {
                visit(key, value, *expires_at);
                visited += 1;
            }
            pending.keys().cloned().collect()
        };
        let (Some(expiry), Some(records)) = (self.read_table(LOGIN_EXPIRY)?, self.read_table(COMMITMENTS)?) else {
            return Ok(visited);
        };
        let kept = expiry.range((now, &[][..])..).map_err(|e| db_error("list login expiry")(e.into()))?;
        for entry in kept {
            let (entry, _) = entry.map_err(|e| db_error("list login expiry")(e.into()))?;
            let (expires_at, key) = entry.value();
            if pending_keys.contains(key) {
                continue;
            }
            if let Some(value) = records.get(key).map_err(|e| db_error("read login record")(e.into()))? {
                visit(key, value.value(), expires_at);
                visited += 1;
            }
        }
        Ok(visited)
    }
}
