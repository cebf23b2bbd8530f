-- Reverts migration 3. Refused (nothing changes) when a row holds what
-- migration 2 cannot: an SMB byte-range lock, lease bits other than R, W, H,
-- break fields without a break in progress, a break without a start time, a
-- delegation id that is not 8 bytes, a directory delegation, NSM or NFSv4
-- fields of migration 3, or two records of different kinds with one id.
DO $$
BEGIN
    IF EXISTS (
        SELECT FROM lockwal_locks
        WHERE (kind = 'byte_range' AND range_flavor <> 'posix')
           OR (kind = 'lease' AND (lease_state & ~7 <> 0 OR lease_break_to & ~7 <> 0 OR lease_break_required & ~7 <> 0
               OR (NOT lease_breaking AND (lease_break_to <> 0 OR lease_break_required <> 0
                                           OR lease_break_started_at IS NOT NULL))
               OR (lease_breaking AND lease_break_started_at IS NULL)))
           OR (kind = 'delegation' AND (octet_length(deleg_id) <> 8 OR deleg_is_directory))
    ) THEN
        RAISE EXCEPTION 'lockwal: cannot revert migration 3: some locks hold fields migration 2 has no column for';
    END IF;
    IF EXISTS (
        SELECT FROM lockwal_clients
        WHERE nsm_callback_host <> '' OR nsm_program <> 0 OR nsm_version <> 0 OR nsm_procedure <> 0
           OR nfs4_short_id <> 0
    ) OR EXISTS (SELECT FROM lockwal_clients GROUP BY client_id HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'lockwal: cannot revert migration 3: some client records hold fields migration 2 has no column for';
    END IF;
END
$$;

ALTER TABLE lockwal_clients DROP CONSTRAINT lockwal_clients_kind_fields;
ALTER TABLE lockwal_clients DROP COLUMN nsm_callback_host, DROP COLUMN nsm_program, DROP COLUMN nsm_version,
    DROP COLUMN nsm_procedure, DROP COLUMN nfs4_short_id;
ALTER TABLE lockwal_clients DROP CONSTRAINT lockwal_clients_pkey;
ALTER TABLE lockwal_clients ADD PRIMARY KEY (client_id);

ALTER TABLE lockwal_locks DROP CONSTRAINT lockwal_locks_kind_fields;
ALTER TABLE lockwal_locks RENAME COLUMN lease_state TO lease_state_bits;
ALTER TABLE lockwal_locks RENAME COLUMN lease_break_to TO lease_break_to_bits;
ALTER TABLE lockwal_locks RENAME COLUMN lease_break_required TO lease_break_required_bits;
ALTER TABLE lockwal_locks RENAME COLUMN deleg_id TO deleg_id_bytes;
ALTER TABLE lockwal_locks
    ADD COLUMN lease_state text CHECK (lease_state ~ '^R?W?H?$'),
    ADD COLUMN lease_break_to text CHECK (lease_break_to ~ '^R?W?H?$'),
    ADD COLUMN lease_break_required text CHECK (lease_break_required ~ '^R?W?H?$'),
    ADD COLUMN deleg_id numeric(20, 0) CHECK (deleg_id BETWEEN 0 AND 18446744073709551615);
UPDATE lockwal_locks SET
    lease_state = concat(CASE WHEN lease_state_bits & 1 <> 0 THEN 'R' END,
                         CASE WHEN lease_state_bits & 4 <> 0 THEN 'W' END,
                         CASE WHEN lease_state_bits & 2 <> 0 THEN 'H' END),
    lease_break_to = CASE WHEN lease_breaking THEN concat(CASE WHEN lease_break_to_bits & 1 <> 0 THEN 'R' END,
                                                          CASE WHEN lease_break_to_bits & 4 <> 0 THEN 'W' END,
                                                          CASE WHEN lease_break_to_bits & 2 <> 0 THEN 'H' END) END,
    lease_break_required = CASE WHEN lease_breaking THEN concat(CASE WHEN lease_break_required_bits & 1 <> 0 THEN 'R' END,
                                                                CASE WHEN lease_break_required_bits & 4 <> 0 THEN 'W' END,
                                                                CASE WHEN lease_break_required_bits & 2 <> 0 THEN 'H' END) END
WHERE kind = 'lease';
UPDATE lockwal_locks SET
    deleg_id = (SELECT sum(get_byte(deleg_id_bytes, i)::numeric * 256::numeric ^ i) FROM generate_series(0, 7) AS i)
WHERE kind = 'delegation';
ALTER TABLE lockwal_locks DROP COLUMN range_flavor, DROP COLUMN range_share_deny, DROP COLUMN lease_state_bits,
    DROP COLUMN lease_breaking, DROP COLUMN lease_break_to_bits, DROP COLUMN lease_break_required_bits,
    DROP COLUMN deleg_id_bytes, DROP COLUMN deleg_is_directory;

-- Migration 1's rule, as it was.
ALTER TABLE lockwal_locks ADD CONSTRAINT lockwal_locks_kind_fields CHECK (
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
);
