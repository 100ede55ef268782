-- taskfleet schema (SQLite): the Administration Server hierarchy's state
-- (storage.HierarchyStore); see the PostgreSQL migration. Every row
-- belongs to one node (a physical or virtual server); at is microseconds
-- since the Unix epoch, UTC.
CREATE TABLE hierarchy_nodes (
    node      TEXT    PRIMARY KEY,
    role      TEXT    NOT NULL,
    parent    TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    set_from  TEXT    NOT NULL DEFAULT '',
    set_epoch INTEGER NOT NULL DEFAULT 0,
    set_seq   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE hierarchy_children (
    node  TEXT NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    child TEXT NOT NULL,
    role  TEXT NOT NULL,
    grp   TEXT NOT NULL,
    PRIMARY KEY (node, child)
);
CREATE TABLE hierarchy_copies (
    node            TEXT    NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    task_id         TEXT    NOT NULL,
    lineage         TEXT    NOT NULL,
    parent_revision INTEGER NOT NULL,
    PRIMARY KEY (node, task_id)
);
CREATE TABLE hierarchy_reports (
    node     TEXT    NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    child    TEXT    NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (node, child)
);
CREATE TABLE hierarchy_figures (
    node       TEXT    NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    task_id    TEXT    NOT NULL,
    server     TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    statistics TEXT    NOT NULL,
    PRIMARY KEY (node, task_id, server)
);
