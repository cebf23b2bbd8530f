-- lockwal PostgreSQL schema, migration 1: the store's epoch row and the locks.
--
-- Strings (ids, share, file, owner, client) are bytea holding UTF-8: the
-- model allows any character, NUL included, which text rejects, and bytea
-- sorts byte by byte exactly as Rust's String does (no collation).
-- u64 fields are numeric(20,0) limited to 0..2^64-1: exact over the whole
-- range (bigint rejected 2^64-1 in the implementation this replaces).
-- Timestamps are bigint microseconds since the Unix epoch: the model's range
-- (all of i64) is wider than timestamptz's.

CREATE TABLE lockwal_meta (
    -- Exactly one row.
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Incremented by every open; writers check it (epoch fencing).
    epoch bigint NOT NULL CHECK (epoch >= 0),
    -- The incarnation of this epoch called close().
    clean boolean NOT NULL
);
INSERT INTO lockwal_meta (singleton, epoch, clean) VALUES (true, 0, false);

CREATE TABLE lockwal_locks (
    id bytea PRIMARY KEY,
    share bytea NOT NULL,
    file_id bytea NOT NULL,
    owner_id bytea NOT NULL,
    client_id bytea NOT NULL,
    kind text NOT NULL CHECK (kind IN ('byte_range', 'share', 'lease', 'delegation')),
    acquired_at bigint NOT NULL,
    server_epoch bigint NOT NULL CHECK (server_epoch >= 0),
    -- kind = 'byte_range'
    range_type text CHECK (range_type IN ('shared', 'exclusive')),
    range_offset numeric(20, 0) CHECK (range_offset BETWEEN 0 AND 18446744073709551615),
    range_length numeric(20, 0) CHECK (range_length BETWEEN 0 AND 18446744073709551615),
    range_zero_byte boolean,
    -- kind = 'share'
    share_access text CHECK (share_access IN ('read', 'write', 'read_write')),
    share_deny text CHECK (share_deny IN ('none', 'read', 'write', 'all')),
    -- kind = 'lease'; states are written as in the SMB documents: R, W, H.
    lease_key bytea CHECK (octet_length(lease_key) = 16),
    lease_state text CHECK (lease_state ~ '^R?W?H?$'),
    lease_epoch integer CHECK (lease_epoch BETWEEN 0 AND 65535),
    lease_parent_key bytea CHECK (octet_length(lease_parent_key) = 16),
    lease_is_directory boolean,
    lease_is_traditional_oplock boolean,
    lease_break_to text CHECK (lease_break_to ~ '^R?W?H?$'),
    lease_break_required text CHECK (lease_break_required ~ '^R?W?H?$'),
    lease_break_started_at bigint,
    -- kind = 'delegation'
    deleg_id numeric(20, 0) CHECK (deleg_id BETWEEN 0 AND 18446744073709551615),
    deleg_type text CHECK (deleg_type IN ('read', 'write')),
    deleg_breaking boolean,
    deleg_recalled boolean,
    deleg_revoked boolean,
    deleg_notification_mask bigint CHECK (deleg_notification_mask BETWEEN 0 AND 4294967295),
    -- Each kind has exactly its own fields: an impossible combination (a
    -- lease key on a byte-range lock) cannot be stored.
    CONSTRAINT lockwal_locks_kind_fields CHECK (
        CASE kind
            WHEN 'byte_range' THEN
                num_nonnulls(range_type, range_offset, range_length, range_zero_byte) = 4
                AND num_nonnulls(share_access, share_deny) = 0
                AND num_nonnulls(lease_key, lease_state, lease_epoch, lease_parent_key, lease_is_directory,
                                 lease_is_traditional_oplock, lease_break_to, lease_break_required,
                                 lease_break_started_at) = 0
                AND num_nonnulls(deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked,
                                 deleg_notification_mask) = 0
            WHEN 'share' THEN
                num_nonnulls(range_type, range_offset, range_length, range_zero_byte) = 0
                AND num_nonnulls(share_access, share_deny) = 2
                AND num_nonnulls(lease_key, lease_state, lease_epoch, lease_parent_key, lease_is_directory,
                                 lease_is_traditional_oplock, lease_break_to, lease_break_required,
                                 lease_break_started_at) = 0
                AND num_nonnulls(deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked,
                                 deleg_notification_mask) = 0
            WHEN 'lease' THEN
                num_nonnulls(range_type, range_offset, range_length, range_zero_byte) = 0
                AND num_nonnulls(share_access, share_deny) = 0
                AND num_nonnulls(lease_key, lease_state, lease_epoch, lease_is_directory,
                                 lease_is_traditional_oplock) = 5
                AND num_nonnulls(lease_break_to, lease_break_required, lease_break_started_at) IN (0, 3)
                AND num_nonnulls(deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked,
                                 deleg_notification_mask) = 0
            WHEN 'delegation' THEN
                num_nonnulls(range_type, range_offset, range_length, range_zero_byte) = 0
                AND num_nonnulls(share_access, share_deny) = 0
                AND num_nonnulls(lease_key, lease_state, lease_epoch, lease_parent_key, lease_is_directory,
                                 lease_is_traditional_oplock, lease_break_to, lease_break_required,
                                 lease_break_started_at) = 0
                AND num_nonnulls(deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked,
                                 deleg_notification_mask) = 6
        END
    ),
    -- A zero-byte SMB lock has length 0 (the model's rule, kept here too).
    CONSTRAINT lockwal_locks_zero_byte CHECK (NOT range_zero_byte OR range_length = 0)
);

-- The four secondary indexes of the model: by file, owner, client, share.
CREATE INDEX lockwal_locks_file_id ON lockwal_locks (file_id);
CREATE INDEX lockwal_locks_owner_id ON lockwal_locks (owner_id);
CREATE INDEX lockwal_locks_client_id ON lockwal_locks (client_id);
CREATE INDEX lockwal_locks_share ON lockwal_locks (share);
