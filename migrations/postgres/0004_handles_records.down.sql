-- Reverts migration 4: drops the durable handles and the records.
DROP TABLE lockwal_records;
DROP TABLE lockwal_handles;
