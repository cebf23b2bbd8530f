use super::Timestamp;
use serde::{Deserialize, Serialize};

/// Which protocol registered a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientKind {
    /// An NSM / NLM monitor registration (NFSv3).
    Nsm,
    /// An NFSv4 client recovery record (what Linux's nfsdcld keeps).
    Nfs4,
    /// An SMB2/3 session or durable-handle owner.
    Smb,
}

/// What a server keeps per client to run recovery after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Key: the client id (NLM caller name, `nfs4:{clientid}`, SMB client GUID).
    pub client_id: String,
    /// Which protocol registered it.
    pub kind: ClientKind,
    /// NSM monitored name, or the NFSv4 long-form client id string.
    pub name: String,
    /// Opaque bytes: the NSM private cookie or the NFSv4 boot verifier.
    pub verifier: Vec<u8>,
    /// The authenticated principal, if any (empty when none).
    pub principal: String,
    /// Opaque callback information (NSM host/program/version/procedure, NFSv4
    /// callback address), encoded by the server.
    pub callback: Vec<u8>,
    /// When the client registered.
    pub registered_at: Timestamp,
    /// The server epoch in which the client registered or was confirmed.
    pub epoch: u64,
    /// The client sent RECLAIM_COMPLETE (NFSv4.1) in this epoch.
    pub reclaim_complete: bool,
}
