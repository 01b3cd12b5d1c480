//! Counters by object (uid), one map per kind of count, so no two kinds
//! share keys and each is forgotten on its own.

use std::collections::HashMap;
use std::sync::Mutex;

/// One kind of count, by object uid.
#[derive(Default)]
pub struct Counts(Mutex<HashMap<String, u32>>);

impl Counts {
    /// Counts one more for `uid`; returns the count.
    pub fn bump(&self, uid: &str) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Starts `uid` over.
    pub fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_object_until_forgotten() {
        let counts = Counts::default();
        assert_eq!(counts.bump("a"), 1);
        assert_eq!(counts.bump("a"), 2);
        assert_eq!(counts.bump("b"), 1);
        counts.forget("a");
        assert_eq!(counts.bump("a"), 1);
        assert_eq!(counts.bump("b"), 2);
    }
}
