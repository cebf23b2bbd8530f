-- lockwal PostgreSQL schema, migration 3: record fidelity. Byte-range locks
-- carry their semantics (POSIX or SMB, with the SMB open's deny mode);
-- lease states are the full 32-bit MS-SMB2 field and the break fields are
-- kept whether or not a break is in progress; delegation ids are opaque
-- bytes; client records live in one namespace per kind, with the NSM
-- callback and the NFSv4 short client id. Existing rows are converted in
-- place, as the WAL converts a format-1 log (DESIGN.md, "Upgrading").

ALTER TABLE lockwal_locks DROP CONSTRAINT lockwal_locks_kind_fields;

ALTER TABLE lockwal_locks
    ADD COLUMN range_flavor text CHECK (range_flavor IN ('posix', 'smb')),
    ADD COLUMN range_share_deny text CHECK (range_share_deny IN ('none', 'read', 'write', 'all')),
    ADD COLUMN lease_state_bits bigint CHECK (lease_state_bits BETWEEN 0 AND 4294967295),
    ADD COLUMN lease_breaking boolean,
    ADD COLUMN lease_break_to_bits bigint CHECK (lease_break_to_bits BETWEEN 0 AND 4294967295),
    ADD COLUMN lease_break_required_bits bigint CHECK (lease_break_required_bits BETWEEN 0 AND 4294967295),
    ADD COLUMN deleg_id_bytes bytea CHECK (octet_length(deleg_id_bytes) BETWEEN 1 AND 1024),
    ADD COLUMN deleg_is_directory boolean;

UPDATE lockwal_locks SET range_flavor = 'posix' WHERE kind = 'byte_range';

-- 'R?W?H?' as MS-SMB2 bits: R 0x01, H 0x02, W 0x04.
UPDATE lockwal_locks SET
    lease_state_bits = (CASE WHEN lease_state LIKE '%R%' THEN 1 ELSE 0 END)
        | (CASE WHEN lease_state LIKE '%H%' THEN 2 ELSE 0 END)
        | (CASE WHEN lease_state LIKE '%W%' THEN 4 ELSE 0 END),
    lease_breaking = lease_break_to IS NOT NULL,
    lease_break_to_bits = (CASE WHEN lease_break_to LIKE '%R%' THEN 1 ELSE 0 END)
        | (CASE WHEN lease_break_to LIKE '%H%' THEN 2 ELSE 0 END)
        | (CASE WHEN lease_break_to LIKE '%W%' THEN 4 ELSE 0 END),
    lease_break_required_bits = (CASE WHEN lease_break_required LIKE '%R%' THEN 1 ELSE 0 END)
        | (CASE WHEN lease_break_required LIKE '%H%' THEN 2 ELSE 0 END)
        | (CASE WHEN lease_break_required LIKE '%W%' THEN 4 ELSE 0 END)
WHERE kind = 'lease';

-- A u64 delegation id becomes its 8 bytes, little-endian.
UPDATE lockwal_locks SET
    deleg_id_bytes = (
        SELECT decode(string_agg(lpad(to_hex(mod(div(deleg_id, 256::numeric ^ i), 256)::int), 2, '0'), '' ORDER BY i),
                      'hex')
        FROM generate_series(0, 7) AS i
    ),
    deleg_is_directory = false
WHERE kind = 'delegation';

ALTER TABLE lockwal_locks DROP COLUMN lease_state, DROP COLUMN lease_break_to, DROP COLUMN lease_break_required,
    DROP COLUMN deleg_id;
ALTER TABLE lockwal_locks RENAME COLUMN lease_state_bits TO lease_state;
ALTER TABLE lockwal_locks RENAME COLUMN lease_break_to_bits TO lease_break_to;
ALTER TABLE lockwal_locks RENAME COLUMN lease_break_required_bits TO lease_break_required;
ALTER TABLE lockwal_locks RENAME COLUMN deleg_id_bytes TO deleg_id;

ALTER TABLE lockwal_locks ADD CONSTRAINT lockwal_locks_kind_fields CHECK (
    num_nonnulls(range_type, range_offset, range_length, range_zero_byte, range_flavor)
        = CASE kind WHEN 'byte_range' THEN 5 ELSE 0 END
    AND (range_share_deny IS NOT NULL) = (range_flavor IS NOT DISTINCT FROM 'smb')
    AND num_nonnulls(share_access, share_deny) = CASE kind WHEN 'share' THEN 2 ELSE 0 END
    AND num_nonnulls(lease_key, lease_state, lease_epoch, lease_is_directory, lease_is_traditional_oplock,
                     lease_breaking, lease_break_to, lease_break_required)
        = CASE kind WHEN 'lease' THEN 8 ELSE 0 END
    AND (kind = 'lease' OR num_nonnulls(lease_parent_key, lease_break_started_at) = 0)
    AND num_nonnulls(deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked, deleg_notification_mask,
                     deleg_is_directory)
        = CASE kind WHEN 'delegation' THEN 7 ELSE 0 END
);

-- Client records: one namespace per kind.
ALTER TABLE lockwal_clients DROP CONSTRAINT lockwal_clients_pkey;
ALTER TABLE lockwal_clients ADD PRIMARY KEY (kind, client_id);
ALTER TABLE lockwal_clients
    ADD COLUMN nsm_callback_host bytea,
    ADD COLUMN nsm_program bigint CHECK (nsm_program BETWEEN 0 AND 4294967295),
    ADD COLUMN nsm_version bigint CHECK (nsm_version BETWEEN 0 AND 4294967295),
    ADD COLUMN nsm_procedure bigint CHECK (nsm_procedure BETWEEN 0 AND 4294967295),
    ADD COLUMN nfs4_short_id numeric(20, 0) CHECK (nfs4_short_id BETWEEN 0 AND 18446744073709551615);
UPDATE lockwal_clients SET nsm_callback_host = '', nsm_program = 0, nsm_version = 0, nsm_procedure = 0
WHERE kind = 'nsm';
UPDATE lockwal_clients SET nfs4_short_id = 0 WHERE kind = 'nfs4';
ALTER TABLE lockwal_clients ADD CONSTRAINT lockwal_clients_kind_fields CHECK (
    num_nonnulls(nsm_callback_host, nsm_program, nsm_version, nsm_procedure) = CASE kind WHEN 'nsm' THEN 4 ELSE 0 END
    AND num_nonnulls(nfs4_short_id) = CASE kind WHEN 'nfs4' THEN 1 ELSE 0 END
);
