-- Key material that must outlive any one master key, sealed under the current master key.
-- 'mac_root' keys the HMACs of tokens and backup codes (see docs/operations.md).
CREATE TABLE key_material (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
