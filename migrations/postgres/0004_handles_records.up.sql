-- lockwal PostgreSQL schema, migration 4: durable handles and records.
-- Same encodings as migrations 1 to 3 (strings are bytea holding UTF-8, u64
-- numeric(20,0), timestamps bigint microseconds since the Unix epoch,
-- narrower integers with range checks), every field of the model in a column
-- of its own so that operators can read the rows.

-- SMB2/3 durable and persistent handles (model::DurableHandle).
CREATE TABLE lockwal_handles (
    id bytea PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND 1024),
    -- A reconnect finds one open by either key: both are unique.
    file_id bytea NOT NULL CONSTRAINT lockwal_handles_file_id_key UNIQUE CHECK (octet_length(file_id) = 16),
    original_file_id bytea NOT NULL CHECK (octet_length(original_file_id) = 16),
    path bytea NOT NULL CHECK (octet_length(path) <= 1024),
    share bytea NOT NULL CHECK (octet_length(share) BETWEEN 1 AND 1024),
    file_handle bytea NOT NULL CHECK (octet_length(file_handle) BETWEEN 1 AND 1024),
    desired_access bigint NOT NULL CHECK (desired_access BETWEEN 0 AND 4294967295),
    granted_access bigint NOT NULL CHECK (granted_access BETWEEN 0 AND 4294967295),
    share_access bigint NOT NULL CHECK (share_access BETWEEN 0 AND 4294967295),
    create_options bigint NOT NULL CHECK (create_options BETWEEN 0 AND 4294967295),
    oplock_level smallint NOT NULL CHECK (oplock_level BETWEEN 0 AND 255),
    -- The lease, when the open held one: all three or none.
    lease_key bytea CHECK (octet_length(lease_key) = 16),
    lease_state bigint CHECK (lease_state BETWEEN 0 AND 4294967295),
    lease_epoch integer CHECK (lease_epoch BETWEEN 0 AND 65535),
    create_guid bytea CONSTRAINT lockwal_handles_create_guid_key UNIQUE CHECK (octet_length(create_guid) = 16),
    app_instance_id bytea CHECK (octet_length(app_instance_id) = 16),
    persistent boolean NOT NULL,
    version text NOT NULL CHECK (version IN ('v1', 'v2')),
    -- The model's `user` (a reserved word in SQL).
    user_name bytea NOT NULL CHECK (octet_length(user_name) <= 1024),
    session_key_hash bytea NOT NULL CHECK (octet_length(session_key_hash) = 32),
    client_guid bytea NOT NULL CHECK (octet_length(client_guid) = 16),
    created_at bigint NOT NULL,
    disconnected_at bigint NOT NULL,
    timeout_ms numeric(20, 0) NOT NULL CHECK (timeout_ms BETWEEN 0 AND 18446744073709551615),
    server_start_time bigint NOT NULL,
    -- A delete-on-close open (model::DeletePending): both or none.
    delete_parent_handle bytea CHECK (octet_length(delete_parent_handle) <= 1024),
    delete_file_name bytea CHECK (octet_length(delete_file_name) BETWEEN 1 AND 1024),
    is_directory boolean NOT NULL,
    position numeric(20, 0) NOT NULL CHECK (position BETWEEN 0 AND 18446744073709551615),
    allocation_size numeric(20, 0) NOT NULL CHECK (allocation_size BETWEEN 0 AND 18446744073709551615),
    -- The instant from which the handle is expired (DurableHandle::expires_at),
    -- microseconds since the Unix epoch: derived, so it always agrees with the
    -- two fields it comes from. The store refuses a handle for which it
    -- overflows.
    expires_at bigint GENERATED ALWAYS AS ((disconnected_at + timeout_ms * 1000)::bigint) STORED,
    CONSTRAINT lockwal_handles_lease CHECK (num_nonnulls(lease_key, lease_state, lease_epoch) IN (0, 3)),
    CONSTRAINT lockwal_handles_delete_pending CHECK (num_nonnulls(delete_parent_handle, delete_file_name) IN (0, 2))
);

-- The list queries, each in id order; the scavenger's expiry range.
CREATE INDEX lockwal_handles_app_instance_id ON lockwal_handles (app_instance_id, id)
    WHERE app_instance_id IS NOT NULL;
CREATE INDEX lockwal_handles_file_handle ON lockwal_handles (file_handle, id);
CREATE INDEX lockwal_handles_share ON lockwal_handles (share, id);
CREATE INDEX lockwal_handles_expires_at ON lockwal_handles (expires_at);

-- The server's own records: keyspaces of opaque keys to values, in key order
-- (bytea compares as memcmp, the model's bytewise order).
CREATE TABLE lockwal_records (
    space text COLLATE "C" NOT NULL CHECK (space ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    key bytea NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 1024),
    value bytea NOT NULL CHECK (octet_length(value) <= 65536),
    PRIMARY KEY (space, key)
);
