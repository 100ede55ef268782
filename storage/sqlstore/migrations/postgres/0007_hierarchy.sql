-- taskfleet schema (PostgreSQL): the Administration Server hierarchy's
-- state (storage.HierarchyStore). Every row belongs to one node (a
-- physical or virtual server sharing the database); a node's report and
-- task-set versions make each report count once across restarts. Paths
-- and lineages are JSON arrays; statistics are JSON the store does not
-- interpret. Additive: nothing else reads these tables.
CREATE TABLE hierarchy_nodes (
    node      text COLLATE "C" PRIMARY KEY,
    role      text   NOT NULL,
    parent    text COLLATE "C" NOT NULL,
    epoch     bigint NOT NULL,
    set_from  text COLLATE "C" NOT NULL DEFAULT '',
    set_epoch bigint NOT NULL DEFAULT 0,
    set_seq   bigint NOT NULL DEFAULT 0
);
CREATE TABLE hierarchy_children (
    node  text COLLATE "C" NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    child text COLLATE "C" NOT NULL,
    role  text NOT NULL,
    grp   text COLLATE "C" NOT NULL,
    PRIMARY KEY (node, child)
);
CREATE TABLE hierarchy_copies (
    node            text COLLATE "C" NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    task_id         text COLLATE "C" NOT NULL,
    lineage         text   NOT NULL,
    parent_revision bigint NOT NULL,
    PRIMARY KEY (node, task_id)
);
CREATE TABLE hierarchy_reports (
    node     text COLLATE "C" NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    child    text COLLATE "C" NOT NULL,
    epoch    bigint  NOT NULL,
    seq      bigint  NOT NULL,
    complete boolean NOT NULL,
    at       timestamptz NOT NULL,
    PRIMARY KEY (node, child)
);
CREATE TABLE hierarchy_figures (
    node       text COLLATE "C" NOT NULL REFERENCES hierarchy_nodes (node) ON DELETE CASCADE,
    task_id    text COLLATE "C" NOT NULL,
    server     text COLLATE "C" NOT NULL,
    role       text        NOT NULL,
    path       text        NOT NULL,
    epoch      bigint      NOT NULL,
    seq        bigint      NOT NULL,
    at         timestamptz NOT NULL,
    statistics text        NOT NULL,
    PRIMARY KEY (node, task_id, server)
);
