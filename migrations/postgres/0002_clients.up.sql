-- lockwal PostgreSQL schema, migration 2: client records (NSM registrations,
-- NFSv4 recovery records, SMB clients). Same encodings as migration 1.
CREATE TABLE lockwal_clients (
    client_id bytea PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('nsm', 'nfs4', 'smb')),
    name bytea NOT NULL,
    verifier bytea NOT NULL,
    principal bytea NOT NULL,
    callback bytea NOT NULL,
    registered_at bigint NOT NULL,
    epoch numeric(20, 0) NOT NULL CHECK (epoch BETWEEN 0 AND 18446744073709551615),
    reclaim_complete boolean NOT NULL
);
