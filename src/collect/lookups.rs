//! Details looked up once per item and kept (a subscription's SKU, see
//! [`crate::sources::Lookup`]): in memory across polls, and in a small
//! file in `state_dir` across restarts, so that neither repeats the
//! requests. Without `state_dir` they are kept in memory only.
//!
//! The file is a cache: one that is missing, unreadable or of another
//! format is logged and started afresh, at the cost of asking again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::state_file;

/// The current version of the file's format.
const FORMAT_VERSION: u32 = 1;

/// Largest file read: about 100 bytes an entry, so some 160 000 items.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The file on disk.
#[derive(Serialize, Deserialize)]
struct LookupFile {
    version: u32,
    /// Each item's key and its detail, `null` for an item without one.
    answers: BTreeMap<String, Option<String>>,
}

/// The answers kept, by item key: `Some(detail)`, or `None` for an item
/// that has no such detail.
#[derive(Debug)]
pub struct KeptLookups {
    dir: Option<PathBuf>,
    file: &'static str,
    inner: Mutex<Answers>,
}

#[derive(Debug, Default)]
struct Answers {
    by_key: BTreeMap<String, Option<String>>,
    /// Whether `by_key` differs from the file.
    changed: bool,
}

impl KeptLookups {
    /// The answers kept in `dir/file`, or none yet.
    pub fn load(dir: Option<&Path>, file: &'static str) -> Self {
        let by_key = dir.map_or_else(BTreeMap::new, |dir| read_answers(dir, file));
        Self {
            dir: dir.map(Path::to_path_buf),
            file,
            inner: Mutex::new(Answers {
                by_key,
                changed: false,
            }),
        }
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        // Nothing panics while holding the lock; a poisoned map is still whole.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kept answer for `key`, if it has been looked up.
    pub fn get(&self, key: &str) -> Option<Option<String>> {
        self.answers().by_key.get(key).cloned()
    }

    /// Keeps `detail` as the answer for `key`.
    pub fn insert(&self, key: &str, detail: Option<String>) {
        let mut answers = self.answers();
        if answers.by_key.get(key) != Some(&detail) {
            answers.by_key.insert(key.to_owned(), detail);
            answers.changed = true;
        }
    }

    /// Forgets the answers of items no longer seen, so the file does not
    /// grow with subscriptions long gone.
    pub fn retain(&self, seen: impl Fn(&str) -> bool) {
        let mut answers = self.answers();
        let before = answers.by_key.len();
        answers.by_key.retain(|key, _| seen(key));
        if answers.by_key.len() != before {
            answers.changed = true;
        }
    }

    #[cfg(test)]
    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.answers().by_key.len()
    }

    /// Writes the answers to the file if they changed since it was read
    /// or last written. Blocking: call it off the runtime's threads.
    pub fn save(&self) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let content = {
            let mut answers = self.answers();
            if !answers.changed {
                return Ok(());
            }
            answers.changed = false;
            serde_json::to_vec(&LookupFile {
                version: FORMAT_VERSION,
                answers: answers.by_key.clone(),
            })
            .map_err(|err| err.to_string())?
        };
        let written = state_file::create_dir(dir)
            .and_then(|()| state_file::write(dir, self.file, &content))
            .map_err(|err| format!("cannot write {}: {err}", dir.join(self.file).display()));
        if written.is_err() {
            // Tried again after the next poll.
            self.answers().changed = true;
        }
        written
    }
}

fn read_answers(dir: &Path, file: &str) -> BTreeMap<String, Option<String>> {
    state_file::remove_stale_temp_files(dir, file);
    let path = dir.join(file);
    let bytes = match state_file::read(dir, file, MAX_FILE_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return BTreeMap::new(),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read the kept lookups; looking them up again");
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<LookupFile>(&bytes) {
        Ok(kept) if kept.version == FORMAT_VERSION => kept.answers,
        Ok(kept) => {
            tracing::warn!(path = %path.display(), version = kept.version, "the kept lookups are of another format version; looking them up again");
            BTreeMap::new()
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "the kept lookups are not readable; looking them up again");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "subscription-skus.json";

    #[test]
    fn answers_survive_a_restart_and_unchanged_ones_are_not_rewritten() {
        let dir = tempfile::tempdir().expect("a directory");
        let state = dir.path().join("state");
        let kept = KeptLookups::load(Some(&state), FILE);
        assert_eq!(kept.get("a"), None);
        kept.insert("a", Some("sku-1".to_owned()));
        kept.insert("b", None);
        kept.save().expect("saved, creating state_dir");
        let again = KeptLookups::load(Some(&state), FILE);
        assert_eq!(again.get("a"), Some(Some("sku-1".to_owned())));
        assert_eq!(again.get("b"), Some(None), "no SKU is an answer too");
        assert_eq!(again.len(), 2);

        std::fs::remove_file(state.join(FILE)).expect("removed");
        again.insert("a", Some("sku-1".to_owned()));
        again.save().expect("nothing to save");
        assert!(
            !state.join(FILE).exists(),
            "an unchanged answer writes nothing"
        );
        again.retain(|key| key == "a");
        again.save().expect("saved");
        let pruned = KeptLookups::load(Some(&state), FILE);
        assert_eq!((pruned.len(), pruned.get("b")), (1, None));
    }

    #[test]
    fn an_unreadable_file_starts_afresh_and_is_replaced() {
        let dir = tempfile::tempdir().expect("a directory");
        for content in [&b"{not json"[..], br#"{"version":9,"answers":{}}"#] {
            std::fs::write(dir.path().join(FILE), content).expect("written");
            let kept = KeptLookups::load(Some(dir.path()), FILE);
            assert_eq!(kept.len(), 0);
            kept.insert("a", Some("sku".to_owned()));
            kept.save().expect("saved");
            assert_eq!(
                KeptLookups::load(Some(dir.path()), FILE).get("a"),
                Some(Some("sku".to_owned()))
            );
        }
    }

    #[test]
    fn without_state_dir_answers_are_kept_in_memory() {
        let kept = KeptLookups::load(None, FILE);
        kept.insert("a", Some("sku".to_owned()));
        kept.save().expect("nowhere to save, no error");
        assert_eq!(kept.get("a"), Some(Some("sku".to_owned())));
    }

    #[test]
    fn a_failed_save_is_tried_again() {
        let dir = tempfile::tempdir().expect("a directory");
        let blocked = dir.path().join("file-not-dir");
        std::fs::write(&blocked, b"").expect("written");
        let kept = KeptLookups::load(Some(&blocked), FILE);
        kept.insert("a", None);
        let err = kept.save().expect_err("not a directory");
        assert!(err.contains(FILE), "{err}");
        assert!(kept.answers().changed, "still to be saved");
    }
}
