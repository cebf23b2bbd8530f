-- Reverts migration 1: drops the locks and the epoch row.
DROP TABLE lockwal_locks;
DROP TABLE lockwal_meta;
