//! The durable handles of a state, with an index per lookup: unique maps
//! for the file id and the create GUID, ordered sets for the app instance,
//! the file handle, the share and the expiry instant. Every lookup and
//! every expiry is proportional to its answer.

use crate::model::{DurableHandle, FileId, Guid, HandleQuery, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The handles by id, and their indexes. Each handle is one allocation
/// (an `Arc`, so a snapshot's view copies pointers) and every index holds
/// its id as one shared `Arc<str>`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handles {
    by_id: BTreeMap<Arc<str>, Arc<DurableHandle>>,
    by_file_id: HashMap<FileId, Arc<str>>,
    by_guid: HashMap<Guid, Arc<str>>,
    by_app: BTreeSet<(Guid, Arc<str>)>,
    by_file_handle: BTreeSet<(Vec<u8>, Arc<str>)>,
    by_share: BTreeSet<(String, Arc<str>)>,
    by_expiry: BTreeSet<(Timestamp, Arc<str>)>,
}

/// Which unique key of a handle another handle holds.
pub(crate) struct Conflict {
    pub(crate) field: &'static str,
    pub(crate) holder: String,
}

impl Handles {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&DurableHandle> {
        self.by_id.get(id).map(|h| &**h)
    }

    pub(crate) fn id_by_file_id(&self, file_id: &FileId) -> Option<&str> {
        self.by_file_id.get(file_id).map(|id| &**id)
    }

    pub(crate) fn id_by_guid(&self, guid: &Guid) -> Option<&str> {
        self.by_guid.get(guid).map(|id| &**id)
    }

    /// Every handle, sorted by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &DurableHandle> {
        self.by_id.values().map(|h| &**h)
    }

    /// Every handle as its shared allocation, sorted by id (a snapshot's
    /// view).
    pub(crate) fn shared(&self) -> impl Iterator<Item = &Arc<DurableHandle>> {
        self.by_id.values()
    }

    /// The handles `query` selects, sorted by id.
    pub(crate) fn list(&self, query: &HandleQuery) -> Vec<DurableHandle> {
        let empty = || Arc::<str>::from("");
        let ids: Vec<&Arc<str>> = match query {
            HandleQuery::All => return self.iter().cloned().collect(),
            HandleQuery::AppInstance(guid) => {
                self.by_app.range((*guid, empty())..).take_while(|(g, _)| g == guid).map(|(_, id)| id).collect()
            }
            HandleQuery::FileHandle(fh) => self
                .by_file_handle
                .range((fh.clone(), empty())..)
                .take_while(|(f, _)| f == fh)
                .map(|(_, id)| id)
                .collect(),
            HandleQuery::Share(share) => self
                .by_share
                .range((share.clone(), empty())..)
                .take_while(|(s, _)| s == share)
                .map(|(_, id)| id)
                .collect(),
        };
        ids.into_iter().map(|id| (*self.by_id[id]).clone()).collect()
    }

    /// The handle that holds `handle`'s file id or create GUID, other than
    /// the one with its id.
    pub(crate) fn conflict(&self, handle: &DurableHandle) -> Option<Conflict> {
        let other = |holder: Option<&Arc<str>>| holder.filter(|h| ***h != *handle.id).map(|h| h.to_string());
        if let Some(holder) = other(self.by_file_id.get(&handle.file_id)) {
            return Some(Conflict { field: "file_id", holder });
        }
        let guid = handle.create_guid.and_then(|g| other(self.by_guid.get(&g)));
        guid.map(|holder| Conflict { field: "create_guid", holder })
    }

    /// Inserts `handle` (its unique keys free, see [`Handles::conflict`]),
    /// returning the handle it replaced.
    pub(crate) fn insert(&mut self, handle: DurableHandle) -> Option<DurableHandle> {
        let prev = self.remove(&handle.id);
        let id: Arc<str> = Arc::from(handle.id.as_str());
        let displaced = self.by_file_id.insert(handle.file_id, id.clone());
        debug_assert!(displaced.is_none(), "a file id is held by one handle");
        if let Some(guid) = handle.create_guid {
            let displaced = self.by_guid.insert(guid, id.clone());
            debug_assert!(displaced.is_none(), "a create GUID is held by one handle");
        }
        if let Some(app) = handle.app_instance_id {
            self.by_app.insert((app, id.clone()));
        }
        self.by_file_handle.insert((handle.file_handle.clone(), id.clone()));
        self.by_share.insert((handle.share.clone(), id.clone()));
        self.by_expiry.insert((expiry(&handle), id.clone()));
        self.by_id.insert(id, Arc::new(handle));
        prev
    }

    /// Removes the handle `id` with its index entries.
    pub(crate) fn remove(&mut self, id: &str) -> Option<DurableHandle> {
        let (id, handle) = self.by_id.remove_entry(id)?;
        self.by_file_id.remove(&handle.file_id);
        if let Some(guid) = handle.create_guid {
            self.by_guid.remove(&guid);
        }
        if let Some(app) = handle.app_instance_id {
            self.by_app.remove(&(app, id.clone()));
        }
        self.by_file_handle.remove(&(handle.file_handle.clone(), id.clone()));
        self.by_share.remove(&(handle.share.clone(), id.clone()));
        self.by_expiry.remove(&(expiry(&handle), id));
        Some(Arc::unwrap_or_clone(handle))
    }

    /// The ids of the handles expired at `now`, in expiry order.
    pub(crate) fn expired(&self, now: Timestamp) -> Vec<String> {
        self.by_expiry.range(..(now, Arc::from(""))).map(|(_, id)| id.to_string()).collect()
    }

    /// Checks that every index holds exactly the handles' keys (tests).
    pub(crate) fn check_invariants(&self) {
        let mut copy = Handles::default();
        for (id, handle) in &self.by_id {
            assert_eq!(**id, *handle.id, "a handle is filed under its own id");
            assert!(copy.conflict(handle).is_none(), "handle {:?} shares a unique key", handle.id);
            copy.insert((**handle).clone());
        }
        assert_eq!(copy.by_file_id, self.by_file_id);
        assert_eq!(copy.by_guid, self.by_guid);
        assert_eq!(copy.by_app, self.by_app);
        assert_eq!(copy.by_file_handle, self.by_file_handle);
        assert_eq!(copy.by_share, self.by_share);
        assert_eq!(copy.by_expiry, self.by_expiry);
    }
}

/// The instant a handle expires from (validated handles never overflow).
fn expiry(handle: &DurableHandle) -> Timestamp {
    handle.expires_at().unwrap_or(Timestamp::from_unix_micros(i64::MAX))
}
