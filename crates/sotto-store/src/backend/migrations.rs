//! Versioned schema migrations, one list per SQL dialect with the same meaning.
//!
//! At start a backend creates `schema_version (version, applied_at)` if missing, reads the
//! highest version, refuses to run if it is newer than [`SCHEMA_VERSION`] (a newer binary has
//! migrated the database), and applies every missing migration in order, each in the same
//! transaction as its `schema_version` row. Migrations are append-only: never edit one that
//! has shipped; add the next.
//!
//! Ids (`accounts.id`, `credentials.id`, `*.account_id`, `*.credential_id`) are the raw 16
//! bytes; item and key ids are the client's text; times are Unix milliseconds; blobs are the
//! client's bytes exactly as sent.

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 3;

/// Version 2 (both dialects, same meaning): pairing slots, the mailbox between a new device
/// that is not yet a credential and an existing device of the account (`docs/store.md`,
/// "Pairing slots"). `state` is one of `requested`, `responded`, `confirmed`, `aborted`,
/// `approved`, `rejected`.
///
/// SQLite migrations: `(version, SQL)`.
pub(crate) const SQLITE: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE accounts (
    id          BLOB    PRIMARY KEY CHECK (length(id) = 16),
    created_at  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    used_bytes  INTEGER NOT NULL DEFAULT 0,
    item_count  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE credentials (
    id          BLOB    PRIMARY KEY CHECK (length(id) = 16),
    account_id  BLOB    NOT NULL REFERENCES accounts(id),
    kind        TEXT    NOT NULL,
    public_key  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX credentials_account ON credentials(account_id);
CREATE TABLE challenges (
    challenge     BLOB    PRIMARY KEY CHECK (length(challenge) = 32),
    account_id    BLOB    NOT NULL REFERENCES accounts(id),
    credential_id BLOB    NOT NULL REFERENCES credentials(id),
    expires_at    INTEGER NOT NULL
);
CREATE INDEX challenges_expiry ON challenges(expires_at);
CREATE INDEX challenges_credential ON challenges(credential_id);
CREATE TABLE sessions (
    token_hash    BLOB    PRIMARY KEY CHECK (length(token_hash) = 32),
    account_id    BLOB    NOT NULL REFERENCES accounts(id),
    credential_id BLOB    NOT NULL REFERENCES credentials(id),
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);
CREATE INDEX sessions_credential ON sessions(credential_id);
CREATE TABLE wrapped_keys (
    account_id  BLOB    NOT NULL REFERENCES accounts(id),
    key_id      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    blob        BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, key_id)
);
CREATE TABLE items (
    account_id  BLOB    NOT NULL REFERENCES accounts(id),
    item_id     TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    deleted     INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    size        INTEGER NOT NULL,
    blob        BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, item_id)
);
CREATE UNIQUE INDEX items_seq ON items(account_id, seq);
"#,
    ),
    (2, SQLITE_PASSKEYS),
    (
        3,
        r#"
CREATE TABLE pairing_slots (
    id            BLOB    PRIMARY KEY CHECK (length(id) = 16),
    account_id    BLOB    NOT NULL REFERENCES accounts(id),
    public_key    BLOB    NOT NULL,
    name          TEXT    NOT NULL,
    request       BLOB    NOT NULL,
    state         TEXT    NOT NULL,
    responder_id  BLOB,
    response      BLOB,
    confirm       BLOB,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX pairing_slots_account ON pairing_slots(account_id, expires_at);
CREATE INDEX pairing_slots_expiry ON pairing_slots(expires_at);
"#,
    ),
];

/// Migration 2 (SQLite): WebAuthn passkeys. A passkey is a `credentials` row of kind
/// `webauthn-passkey` (its `public_key` is the WebAuthn credential id) plus a `passkeys` row
/// with webauthn-rs's serialized `Passkey` (COSE key, signature counter). Pending ceremonies
/// (registration or login) are kept until used or expired; the new-account ceremony names an
/// account that does not exist yet, hence no foreign key on `account_id`.
const SQLITE_PASSKEYS: &str = r#"
CREATE TABLE passkeys (
    credential_id BLOB    PRIMARY KEY REFERENCES credentials(id),
    account_id    BLOB    NOT NULL REFERENCES accounts(id),
    passkey       TEXT    NOT NULL
);
CREATE INDEX passkeys_account ON passkeys(account_id);
CREATE TABLE webauthn_ceremonies (
    id          BLOB    PRIMARY KEY CHECK (length(id) = 16),
    kind        TEXT    NOT NULL,
    account_id  BLOB    NOT NULL CHECK (length(account_id) = 16),
    state       TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies(expires_at);
"#;

/// PostgreSQL migrations: `(version, SQL)`, the same tables as [`SQLITE`].
pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE accounts (
    id          BYTEA   PRIMARY KEY CHECK (length(id) = 16),
    created_at  BIGINT  NOT NULL,
    last_seq    BIGINT  NOT NULL DEFAULT 0,
    used_bytes  BIGINT  NOT NULL DEFAULT 0,
    item_count  BIGINT  NOT NULL DEFAULT 0
);
CREATE TABLE credentials (
    id          BYTEA   PRIMARY KEY CHECK (length(id) = 16),
    account_id  BYTEA   NOT NULL REFERENCES accounts(id),
    kind        TEXT    NOT NULL,
    public_key  BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX credentials_account ON credentials(account_id);
CREATE TABLE challenges (
    challenge     BYTEA   PRIMARY KEY CHECK (length(challenge) = 32),
    account_id    BYTEA   NOT NULL REFERENCES accounts(id),
    credential_id BYTEA   NOT NULL REFERENCES credentials(id),
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX challenges_expiry ON challenges(expires_at);
CREATE INDEX challenges_credential ON challenges(credential_id);
CREATE TABLE sessions (
    token_hash    BYTEA   PRIMARY KEY CHECK (length(token_hash) = 32),
    account_id    BYTEA   NOT NULL REFERENCES accounts(id),
    credential_id BYTEA   NOT NULL REFERENCES credentials(id),
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);
CREATE INDEX sessions_credential ON sessions(credential_id);
CREATE TABLE wrapped_keys (
    account_id  BYTEA   NOT NULL REFERENCES accounts(id),
    key_id      TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    blob        BYTEA   NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (account_id, key_id)
);
CREATE TABLE items (
    account_id  BYTEA   NOT NULL REFERENCES accounts(id),
    item_id     TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    seq         BIGINT  NOT NULL,
    deleted     BOOLEAN NOT NULL,
    size        BIGINT  NOT NULL,
    blob        BYTEA   NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (account_id, item_id)
);
CREATE UNIQUE INDEX items_seq ON items(account_id, seq);
-- Ciphertext does not compress: store out of line without trying.
ALTER TABLE items ALTER COLUMN blob SET STORAGE EXTERNAL;
ALTER TABLE wrapped_keys ALTER COLUMN blob SET STORAGE EXTERNAL;
"#,
    ),
    (2, POSTGRES_PASSKEYS),
    (
        3,
        r#"
CREATE TABLE pairing_slots (
    id            BYTEA   PRIMARY KEY CHECK (length(id) = 16),
    account_id    BYTEA   NOT NULL REFERENCES accounts(id),
    public_key    BYTEA   NOT NULL,
    name          TEXT    NOT NULL,
    request       BYTEA   NOT NULL,
    state         TEXT    NOT NULL,
    responder_id  BYTEA,
    response      BYTEA,
    confirm       BYTEA,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX pairing_slots_account ON pairing_slots(account_id, expires_at);
CREATE INDEX pairing_slots_expiry ON pairing_slots(expires_at);
"#,
    ),
];

/// Migration 2 (PostgreSQL), the same tables as [`SQLITE_PASSKEYS`].
const POSTGRES_PASSKEYS: &str = r#"
CREATE TABLE passkeys (
    credential_id BYTEA   PRIMARY KEY REFERENCES credentials(id),
    account_id    BYTEA   NOT NULL REFERENCES accounts(id),
    passkey       TEXT    NOT NULL
);
CREATE INDEX passkeys_account ON passkeys(account_id);
CREATE TABLE webauthn_ceremonies (
    id          BYTEA   PRIMARY KEY CHECK (length(id) = 16),
    kind        TEXT    NOT NULL,
    account_id  BYTEA   NOT NULL CHECK (length(account_id) = 16),
    state       TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies(expires_at);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_ordered_and_complete() {
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<i64> = list.iter().map(|(v, _)| *v).collect();
            let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
            assert_eq!(versions, expected);
        }
    }
}
