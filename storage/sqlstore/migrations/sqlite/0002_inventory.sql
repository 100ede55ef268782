-- taskfleet schema version 2 (SQLite): the device inventory
-- (scope.Inventory, written through *sqlstore.Inventory).
-- Text compares with BINARY (byte order), so listings by id are in the
-- byte order scope.Inventory requires.

-- parent is NULL for a root group. The foreign key is deferred so one
-- PutGroups may insert a child before its parent.
CREATE TABLE admin_groups (
    id     TEXT NOT NULL PRIMARY KEY,
    parent TEXT REFERENCES admin_groups (id) DEFERRABLE INITIALLY DEFERRED,
    name   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX admin_groups_parent ON admin_groups (parent);

-- One row per device. The columns are the facts that are queried (group
-- scopes, name lookups) or always known; facts holds the rest as JSON
-- (ips, tags, software, os, applications), where null is "unknown" and an
-- empty list or object is "none". group_id is NULL for an unassigned
-- device. netbios_key and dns_key are the names folded the way
-- scope.ParseAddress folds an address (upper case; lower case without a
-- trailing dot), computed by the store, so a name lookup is an index
-- equality whatever the case. last_seen is microseconds since the Unix
-- epoch (UTC), the zero time.Time as its own instant.
CREATE TABLE devices (
    id           TEXT    NOT NULL PRIMARY KEY,
    group_id     TEXT    REFERENCES admin_groups (id),
    netbios_name TEXT    NOT NULL,
    netbios_key  TEXT    NOT NULL,
    dns_name     TEXT    NOT NULL,
    dns_key      TEXT    NOT NULL,
    server_id    TEXT    NOT NULL,
    server_role  TEXT    NOT NULL,
    connected    INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    time_zone    TEXT    NOT NULL,
    facts        BLOB    NOT NULL
) WITHOUT ROWID; -- stored in id order: Devices is a sequential read
-- Group scopes (covering: the key id comes with every index entry) and
-- the foreign key check of DeleteGroup.
CREATE INDEX devices_group ON devices (group_id, server_role);
CREATE INDEX devices_netbios ON devices (netbios_key);
CREATE INDEX devices_dns ON devices (dns_key);
