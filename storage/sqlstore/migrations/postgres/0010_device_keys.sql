-- taskfleet schema version 10 (PostgreSQL): the device channel's enrollment
-- keys (storage.DeviceKeyStore), one row per device, hashes only, so an
-- enrolled device keeps its key across a server restart. IF NOT EXISTS
-- keeps the migration safe to re-apply.
CREATE TABLE IF NOT EXISTS device_keys (
    device_id  text COLLATE "C" NOT NULL PRIMARY KEY,
    hash       bytea       NOT NULL, -- SHA-256 of the current key
    prev       bytea       NOT NULL, -- SHA-256 of the key a rotation replaced (zeros: none)
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked    boolean     NOT NULL,
    used       boolean     NOT NULL
);
