-- taskfleet schema version 10 (SQLite): the device channel's enrollment
-- keys (storage.DeviceKeyStore), one row per device, hashes only, so an
-- enrolled device keeps its key across a server restart. IF NOT EXISTS
-- keeps the migration safe to re-apply.
CREATE TABLE IF NOT EXISTS device_keys (
    device_id  TEXT    NOT NULL PRIMARY KEY,
    hash       BLOB    NOT NULL, -- SHA-256 of the current key
    prev       BLOB    NOT NULL, -- SHA-256 of the key a rotation replaced (zeros: none)
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL,
    used       INTEGER NOT NULL
) WITHOUT ROWID;
