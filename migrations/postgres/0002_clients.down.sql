-- Reverts migration 2: drops the client records.
DROP TABLE lockwal_clients;
