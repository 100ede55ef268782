-- taskfleet schema version 2 (PostgreSQL): the device inventory
-- (scope.Inventory, written through *sqlstore.Inventory).
-- Text keys use COLLATE "C": listings by id are in byte order, as
-- scope.Inventory requires, whatever the database's locale.

-- parent is NULL for a root group. The foreign key is deferred so one
-- PutGroups may insert a child before its parent.
CREATE TABLE admin_groups (
    id     text COLLATE "C" NOT NULL PRIMARY KEY,
    parent text COLLATE "C" REFERENCES admin_groups (id) DEFERRABLE INITIALLY DEFERRED,
    name   text NOT NULL
);
CREATE INDEX admin_groups_parent ON admin_groups (parent);

-- One row per device. The columns are the facts that are queried (group
-- scopes, name lookups) or always known; facts holds the rest as JSON
-- (ips, tags, software, os, applications), where null is "unknown" and an
-- empty list or object is "none". group_id is NULL for an unassigned
-- device. netbios_key and dns_key are the names folded the way
-- scope.ParseAddress folds an address (upper case; lower case without a
-- trailing dot), computed by the store, so a name lookup is an index
-- equality whatever the case or locale. The zero time.Time is stored as
-- 0001-01-01 00:00:00+00.
CREATE TABLE devices (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    group_id     text COLLATE "C" REFERENCES admin_groups (id),
    netbios_name text NOT NULL,
    netbios_key  text COLLATE "C" NOT NULL,
    dns_name     text NOT NULL,
    dns_key      text COLLATE "C" NOT NULL,
    server_id    text NOT NULL,
    server_role  text NOT NULL,
    connected    boolean     NOT NULL,
    last_seen    timestamptz NOT NULL,
    time_zone    text NOT NULL,
    facts        jsonb NOT NULL
);
-- Group scopes (an index-only scan in id order per group) and the foreign
-- key check of DeleteGroup.
CREATE INDEX devices_group ON devices (group_id, id) INCLUDE (server_role);
CREATE INDEX devices_netbios ON devices (netbios_key, id);
CREATE INDEX devices_dns ON devices (dns_key, id);
