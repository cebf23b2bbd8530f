-- Reverts migration 5: one node again. Ownership is dropped; the epoch row
-- gets back the clean flag of node '' (false when that node never opened,
-- or when another node has opened since it, so the next open runs a grace
-- period rather than trust a flag that is not its own).
ALTER TABLE lockwal_handles DROP COLUMN node_id;
ALTER TABLE lockwal_clients DROP COLUMN node_id;
ALTER TABLE lockwal_locks DROP COLUMN node_id;
DROP TRIGGER lockwal_notify_grace ON lockwal_meta;
DROP FUNCTION lockwal_notify_grace();
ALTER TABLE lockwal_meta DROP COLUMN recovery_epoch;
ALTER TABLE lockwal_meta ADD COLUMN clean boolean NOT NULL DEFAULT false;
UPDATE lockwal_meta m SET clean = coalesce(
    (SELECT n.clean FROM lockwal_nodes n WHERE n.node_id = '' AND n.epoch = m.epoch), false);
ALTER TABLE lockwal_meta ALTER COLUMN clean DROP DEFAULT;
DROP TABLE lockwal_nodes;
DROP FUNCTION lockwal_node();
