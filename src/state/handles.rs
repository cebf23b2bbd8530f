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

/// Why [`Handles::build`] refused a handle.
pub(crate) enum BuildError {
    /// A second handle with this id.
    DuplicateId(String),
    /// The handle `id` has the file id or create GUID of an earlier one.
    Conflict(String, Conflict),
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

    /// The handles of a snapshot, in file order, with every index built at
    /// once: the checks [`Handles::insert`]'s callers make (a repeated id,
    /// a file id or create GUID an earlier handle holds) in file order, so
    /// the first refusal is the one inserting them one by one would meet;
    /// then the ordered indexes built from sorted runs instead of one
    /// insertion each. `Err` names the refused handle by its position.
    pub(crate) fn build(handles: Vec<DurableHandle>) -> Result<Handles, (usize, BuildError)> {
        let n = handles.len();
        let mut ids: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(n);
        let mut file_ids: HashMap<FileId, usize> = HashMap::with_capacity(n);
        let mut guids: HashMap<Guid, usize> = HashMap::with_capacity(n);
        for (i, h) in handles.iter().enumerate() {
            if !ids.insert(&h.id) {
                return Err((i, BuildError::DuplicateId(h.id.clone())));
            }
            let clash = |field, holder: usize| {
                (i, BuildError::Conflict(h.id.clone(), Conflict { field, holder: handles[holder].id.clone() }))
            };
            if let Some(&holder) = file_ids.get(&h.file_id) {
                return Err(clash("file_id", holder));
            }
            if let Some(holder) = h.create_guid.and_then(|g| guids.get(&g).copied()) {
                return Err(clash("create_guid", holder));
            }
            file_ids.insert(h.file_id, i);
            if let Some(g) = h.create_guid {
                guids.insert(g, i);
            }
        }
        drop((ids, file_ids, guids));
        let mut built = Handles::default();
        built.by_file_id.reserve(n);
        built.by_guid.reserve(n);
        let (mut app, mut file_handle, mut share, mut expiry) =
            (Vec::new(), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let mut by_id = Vec::with_capacity(n);
        for handle in handles {
            let id: Arc<str> = Arc::from(handle.id.as_str());
            built.by_file_id.insert(handle.file_id, id.clone());
            if let Some(guid) = handle.create_guid {
                built.by_guid.insert(guid, id.clone());
            }
            if let Some(a) = handle.app_instance_id {
                app.push((a, id.clone()));
            }
            file_handle.push((handle.file_handle.clone(), id.clone()));
            share.push((handle.share.clone(), id.clone()));
            expiry.push((self::expiry(&handle), id.clone()));
            by_id.push((id, Arc::new(handle)));
        }
        // `from_iter` sorts (a sorted run costs one pass) and builds each
        // tree bottom up.
        built.by_id = by_id.into_iter().collect();
        built.by_app = app.into_iter().collect();
        built.by_file_handle = file_handle.into_iter().collect();
        built.by_share = share.into_iter().collect();
        built.by_expiry = expiry.into_iter().collect();
        Ok(built)
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
