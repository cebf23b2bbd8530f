use super::Timestamp;
use serde::{Deserialize, Serialize};

/// Which protocol registered a client, and the namespace its record lives
/// in: a client id is unique within its kind, so an NSM registration and an
/// NFSv4 record may share an id. Ordered as declared (records list by kind,
/// then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClientKind {
    /// An NSM / NLM monitor registration (NFSv3).
    Nsm,
    /// An NFSv4 client recovery record (what Linux's nfsdcld keeps).
    Nfs4,
    /// An SMB2/3 session or durable-handle owner.
    Smb,
}

impl ClientKind {
    /// Every kind, in order.
    pub const ALL: [ClientKind; 3] = [ClientKind::Nsm, ClientKind::Nfs4, ClientKind::Smb];
}

/// What a server keeps per client to run recovery after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Key within the kind's namespace: the NLM caller name, the NFSv4
    /// long-form client id (or `nfs4:{clientid}`), the SMB client GUID.
    pub client_id: String,
    /// NSM monitored name, the NFSv4 long-form client id string, or the
    /// SMB client name.
    pub name: String,
    /// Opaque bytes: the NSM 16-byte private cookie or the NFSv4 8-byte
    /// boot verifier.
    pub verifier: Vec<u8>,
    /// The authenticated principal, if any (empty when none).
    pub principal: String,
    /// Opaque callback information the server encodes (the NFSv4 callback
    /// program and address); NSM's callback has typed fields in
    /// [`NsmDetails`].
    pub callback: Vec<u8>,
    /// When the client registered.
    pub registered_at: Timestamp,
    /// The server epoch in which the client registered or was confirmed.
    pub epoch: u64,
    /// The client finished reclaiming in this epoch (NFSv4.1
    /// RECLAIM_COMPLETE).
    pub reclaim_complete: bool,
    /// The kind, with the fields only that kind has.
    pub details: ClientDetails,
}

/// A client record's kind and the fields only that kind has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientDetails {
    /// An NSM registration (SM_MON).
    Nsm(NsmDetails),
    /// An NFSv4 client.
    Nfs4(Nfs4Details),
    /// An SMB client.
    Smb,
}

/// The callback an NSM registration asks for (`my_id` of SM_MON): where
/// to send SM_NOTIFY's RPC when the monitored host reboots.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NsmDetails {
    /// `my_name`: the host to call back.
    pub callback_host: String,
    /// `my_prog`: the RPC program to call.
    pub program: u32,
    /// `my_vers`: its version.
    pub version: u32,
    /// `my_proc`: its procedure.
    pub procedure: u32,
}

/// The fields only an NFSv4 client has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Nfs4Details {
    /// The 64-bit client id the server assigned (SETCLIENTID /
    /// EXCHANGE_ID), next to the long-form id string in `name`.
    pub short_id: u64,
}

impl ClientRecord {
    /// The namespace the record lives in.
    pub fn kind(&self) -> ClientKind {
        self.details.kind()
    }
}

impl ClientDetails {
    /// The kind these details belong to.
    pub fn kind(&self) -> ClientKind {
        match self {
            ClientDetails::Nsm(_) => ClientKind::Nsm,
            ClientDetails::Nfs4(_) => ClientKind::Nfs4,
            ClientDetails::Smb => ClientKind::Smb,
        }
    }
}

/// Which client records to list. Filters AND together; the empty query
/// matches every record. Results come back sorted by kind, then client id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuery {
    /// Only records of this kind.
    pub kind: Option<ClientKind>,
    /// Only records whose `reclaim_complete` is this (`Some(false)` with
    /// kind NFSv4: the clients that have not sent RECLAIM_COMPLETE).
    pub reclaim_complete: Option<bool>,
}

impl ClientQuery {
    /// The query that matches every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Records of one kind.
    pub fn by_kind(kind: ClientKind) -> Self {
        Self { kind: Some(kind), ..Self::default() }
    }

    /// Does `record` match every filter?
    pub fn matches(&self, record: &ClientRecord) -> bool {
        self.kind.is_none_or(|k| k == record.kind())
            && self.reclaim_complete.is_none_or(|r| r == record.reclaim_complete)
    }
}

/// Which client records a bulk delete removes: every record that matches
/// every filter given (all `None`: every record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSelector {
    /// Only records of this namespace; `None` for every namespace.
    pub kind: Option<ClientKind>,
    /// Only the record with this id (an idempotent delete: 0 or 1).
    pub client_id: Option<String>,
    /// Only records with this name (an SM_NOTIFY from a rebooted peer
    /// removes the registrations of its monitored name).
    pub name: Option<String>,
}

impl ClientSelector {
    /// Every record of `kind`.
    pub fn all(kind: ClientKind) -> Self {
        Self { kind: Some(kind), client_id: None, name: None }
    }

    /// The record `client_id` of `kind`, if it exists.
    pub fn id(kind: ClientKind, client_id: impl Into<String>) -> Self {
        Self { kind: Some(kind), client_id: Some(client_id.into()), name: None }
    }

    /// The records of `kind` named `name`.
    pub fn named(kind: ClientKind, name: impl Into<String>) -> Self {
        Self { kind: Some(kind), client_id: None, name: Some(name.into()) }
    }

    /// Does `record` match?
    pub fn matches(&self, record: &ClientRecord) -> bool {
        self.kind.is_none_or(|k| k == record.kind())
            && self.client_id.as_deref().is_none_or(|id| id == record.client_id)
            && self.name.as_deref().is_none_or(|n| n == record.name)
    }
}
