-- lockwal PostgreSQL schema, migration 5: several nodes on one database.
--
-- A node is named by its connections: every connection of a store opened
-- with a node id sets the setting `lockwal.node` to it (the startup
-- options, or SET LOCAL in a caller's transaction); `lockwal_node()` reads
-- it, '' when unset: the node of a store opened without a node id, which
-- is how single-node stores keep working unchanged.
CREATE FUNCTION lockwal_node() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(current_setting('lockwal.node', true), '') $$;

-- One row per node: its incarnation's epoch (the fence: a node's writes
-- share-lock its row and match its epoch, so reopening node A fences the
-- previous handle of A and no other node) and whether that incarnation
-- shut down cleanly. Epochs are unique: every open takes the next value of
-- lockwal_meta.epoch, so an epoch names one incarnation of one node.
CREATE TABLE lockwal_nodes (
    node_id text COLLATE "C" PRIMARY KEY CHECK (node_id = '' OR node_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    epoch bigint NOT NULL CONSTRAINT lockwal_nodes_epoch_key UNIQUE CHECK (epoch >= 0),
    clean boolean NOT NULL,
    -- Microseconds since the Unix epoch of the incarnation's open.
    opened_at bigint NOT NULL,
    -- The node's clients must reclaim what they held (its previous
    -- incarnation stopped uncleanly, or it owns locks): the cluster is in
    -- grace until no node needs it (DESIGN.md, "Cluster-wide grace").
    need_grace boolean NOT NULL DEFAULT false,
    -- The node's lease: it renews renewed_at (microseconds, the database's
    -- clock) while it is open; once renewed_at + lease_ms has passed,
    -- another node may take it over. 0: no lease (node '', which is never
    -- taken over while open).
    lease_ms bigint NOT NULL DEFAULT 0 CHECK (lease_ms >= 0),
    renewed_at bigint NOT NULL DEFAULT 0
);

-- The single node of a store written by migration 4 becomes node '' (when
-- it ever opened: epoch 0 is a store no one opened yet).
INSERT INTO lockwal_nodes (node_id, epoch, clean, opened_at)
    SELECT '', epoch, clean, (extract(epoch FROM now()) * 1000000)::bigint FROM lockwal_meta WHERE epoch > 0;

-- lockwal_meta keeps the cluster's newest epoch and its recovery epoch: 0
-- when no grace period is in force, else the epoch of the open that started
-- it (nonzero: every open takes an epoch of 1 or more). It is 0 exactly when
-- no node needs grace. The clean flag is per node.
ALTER TABLE lockwal_meta DROP COLUMN clean;
ALTER TABLE lockwal_meta ADD COLUMN recovery_epoch bigint NOT NULL DEFAULT 0 CHECK (recovery_epoch >= 0);

-- Nodes watching the grace (PostgresLockStore::watch_grace) hear of each
-- change of the recovery epoch when the changing transaction commits: a
-- notification on channel lockwal_grace, payload "<schema> <recovery epoch>".
CREATE FUNCTION lockwal_notify_grace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.recovery_epoch IS DISTINCT FROM OLD.recovery_epoch THEN
        PERFORM pg_notify('lockwal_grace', TG_TABLE_SCHEMA || ' ' || NEW.recovery_epoch);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lockwal_notify_grace AFTER UPDATE OF recovery_epoch ON lockwal_meta
    FOR EACH ROW EXECUTE FUNCTION lockwal_notify_grace();

-- Ownership: every lock, client record and durable handle belongs to the
-- node that last wrote it. Existing rows belong to node '', whichever node
-- runs this migration (the column is added with the constant default, then
-- given the writing node's; regression
-- `migration_5_by_a_named_node_leaves_existing_rows_to_node_without_an_id`).
ALTER TABLE lockwal_locks ADD COLUMN node_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE lockwal_clients ADD COLUMN node_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE lockwal_handles ADD COLUMN node_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE lockwal_locks ALTER COLUMN node_id SET DEFAULT lockwal_node();
ALTER TABLE lockwal_clients ALTER COLUMN node_id SET DEFAULT lockwal_node();
ALTER TABLE lockwal_handles ALTER COLUMN node_id SET DEFAULT lockwal_node();
CREATE INDEX lockwal_locks_node_id ON lockwal_locks (node_id, server_epoch);
CREATE INDEX lockwal_clients_node_id ON lockwal_clients (node_id);
CREATE INDEX lockwal_handles_node_id ON lockwal_handles (node_id);
