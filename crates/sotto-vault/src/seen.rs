//! Rollback, equivocation and withholding detection: the client's memory of what it
//! accepted. The client persists [`SeenVersions`] locally (never on the store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::check_id;
use crate::error::{Result, VaultError};
use crate::item::{ItemHeader, OpenedItem, parse_item_header};

/// Current encoding version of persisted [`SeenVersions`].
pub const SEEN_STATE_FORMAT: u32 = 1;

/// What [`SeenVersions::accept`] concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// First version seen of this item, or newer than the last accepted one: recorded.
    New,
    /// Exactly the blob already accepted for this version (a harmless re-fetch).
    Same,
}

/// A finding from comparing the store's listing with what this client knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncFinding {
    /// An item this client accepted (and that is not deleted) is missing from a full
    /// listing: the store withheld or dropped it.
    Withheld {
        /// Item id.
        item_id: Vec<u8>,
        /// Highest version this client accepted.
        last_version: u64,
    },
    /// The listing names an older version than this client accepted: a rollback, detected
    /// before fetching.
    ListedOlderVersion {
        /// Item id.
        item_id: Vec<u8>,
        /// Version in the listing.
        listed: u64,
        /// Highest version this client accepted.
        seen: u64,
    },
}

impl SyncFinding {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SyncFinding::Withheld { .. } => "ITEM_WITHHELD",
            SyncFinding::ListedOlderVersion { .. } => "ROLLBACK_DETECTED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    version: u64,
    epoch: u32,
    deleted: bool,
    /// SHA-256 of the whole accepted blob.
    #[serde(with = "crate::model::hex_array")]
    digest: [u8; 32],
}

/// The highest version accepted per item of one account, with the blob's digest (for
/// equivocation) and epoch (for epoch regression).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenVersions {
    format: u32,
    #[serde(with = "crate::model::hex_bytes")]
    account_id: Vec<u8>,
    /// Item id (hex) → entry.
    items: BTreeMap<String, Entry>,
}

impl SeenVersions {
    /// Empty state for an account.
    pub fn new(account_id: &[u8]) -> Result<Self> {
        check_id(account_id, "account id")?;
        Ok(SeenVersions {
            format: SEEN_STATE_FORMAT,
            account_id: account_id.to_vec(),
            items: BTreeMap::new(),
        })
    }

    /// The account this state belongs to.
    pub fn account_id(&self) -> &[u8] {
        &self.account_id
    }

    /// Serialises for local persistence (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("SeenVersions serialises")
    }

    /// Loads persisted state; it must be for `account_id`.
    pub fn decode(account_id: &[u8], bytes: &[u8]) -> Result<Self> {
        let s: SeenVersions = serde_json::from_slice(bytes)
            .map_err(|_| VaultError::StateInvalid("not valid JSON state"))?;
        if s.format != SEEN_STATE_FORMAT {
            return Err(VaultError::StateInvalid("unknown state format"));
        }
        if s.account_id != account_id {
            return Err(VaultError::StateInvalid("state is for another account"));
        }
        for (k, e) in &s.items {
            let id = hex::decode(k).map_err(|_| VaultError::StateInvalid("bad item id"))?;
            check_id(&id, "item id").map_err(|_| VaultError::StateInvalid("bad item id"))?;
            if e.version == 0 || e.epoch == 0 {
                return Err(VaultError::StateInvalid("bad entry"));
            }
        }
        Ok(s)
    }

    /// Highest accepted version of an item.
    pub fn highest(&self, item_id: &[u8]) -> Option<u64> {
        self.items.get(&hex::encode(item_id)).map(|e| e.version)
    }

    /// Whether the highest accepted version of an item is a tombstone.
    pub fn is_deleted(&self, item_id: &[u8]) -> Option<bool> {
        self.items.get(&hex::encode(item_id)).map(|e| e.deleted)
    }

    /// Item ids this client has accepted, ascending.
    pub fn known_items(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.items
            .keys()
            .map(|k| hex::decode(k).expect("validated hex"))
    }

    /// Checks, without recording, whether an authenticated header and its blob would be
    /// accepted.
    pub fn check(&self, item_id: &[u8], header: &ItemHeader, blob: &[u8]) -> Result<Freshness> {
        let Some(e) = self.items.get(&hex::encode(item_id)) else {
            return Ok(Freshness::New);
        };
        if header.version < e.version {
            return Err(VaultError::RollbackDetected {
                seen: e.version,
                offered: header.version,
            });
        }
        if header.version == e.version {
            // Digests are of public ciphertext: no need for constant time.
            return if digest(blob) == e.digest {
                Ok(Freshness::Same)
            } else {
                Err(VaultError::Equivocation {
                    version: header.version,
                })
            };
        }
        if header.epoch < e.epoch {
            return Err(VaultError::EpochRegression {
                seen: e.epoch,
                offered: header.epoch,
            });
        }
        Ok(Freshness::New)
    }

    /// Accepts an opened (authenticated) item: a version older than the highest accepted
    /// is [`VaultError::RollbackDetected`] (this includes an old blob restored after its
    /// tombstone), the same version with different bytes is [`VaultError::Equivocation`],
    /// and a newer version under an older key epoch is [`VaultError::EpochRegression`].
    /// Call only after [`Vault::open_item`](crate::Vault::open_item) succeeded on `blob`.
    pub fn accept(
        &mut self,
        item_id: &[u8],
        opened: &OpenedItem,
        blob: &[u8],
    ) -> Result<Freshness> {
        let f = self.check(item_id, &opened.header, blob)?;
        if f == Freshness::New {
            self.record(item_id, &opened.header, blob);
        }
        Ok(f)
    }

    /// Records a blob this client itself sealed and the store acknowledged (call after the
    /// write succeeds; a retry must resend the same bytes).
    pub fn record_own_write(&mut self, item_id: &[u8], blob: &[u8]) -> Result<Freshness> {
        check_id(item_id, "item id")?;
        let header = parse_item_header(blob)?;
        let f = self.check(item_id, &header, blob)?;
        if f == Freshness::New {
            self.record(item_id, &header, blob);
        }
        Ok(f)
    }

    fn record(&mut self, item_id: &[u8], header: &ItemHeader, blob: &[u8]) {
        self.items.insert(
            hex::encode(item_id),
            Entry {
                version: header.version,
                epoch: header.epoch,
                deleted: header.deleted,
                digest: digest(blob),
            },
        );
    }

    /// Compares a **complete** listing of the account's items `(item id, version)` from
    /// the store with this state: every accepted, non-deleted item missing from it is
    /// [`SyncFinding::Withheld`], and every listed version older than the accepted one is
    /// [`SyncFinding::ListedOlderVersion`]. (Tombstoned items may legitimately be purged
    /// by the store; if an old version comes back, [`SeenVersions::accept`] still refuses
    /// it.) An incremental "changed since" listing cannot show withholding: run this on
    /// a full listing periodically.
    pub fn check_listing<'a>(
        &self,
        listing: impl IntoIterator<Item = (&'a [u8], u64)>,
    ) -> Vec<SyncFinding> {
        let mut listed: BTreeMap<String, u64> = BTreeMap::new();
        let mut findings = Vec::new();
        for (id, v) in listing {
            let key = hex::encode(id);
            if let Some(e) = self.items.get(&key)
                && v < e.version
            {
                findings.push(SyncFinding::ListedOlderVersion {
                    item_id: id.to_vec(),
                    listed: v,
                    seen: e.version,
                });
            }
            listed.insert(key, v);
        }
        for (k, e) in &self.items {
            if !e.deleted && !listed.contains_key(k) {
                findings.push(SyncFinding::Withheld {
                    item_id: hex::decode(k).expect("validated hex"),
                    last_version: e.version,
                });
            }
        }
        findings
    }
}

fn digest(blob: &[u8]) -> [u8; 32] {
    Sha256::digest(blob).into()
}

impl crate::item::Vault {
    /// Opens a blob and accepts it into `seen` in one step (the usual read path): the
    /// errors of [`Vault::open_item`](crate::Vault::open_item) and of
    /// [`SeenVersions::accept`].
    pub fn open_checked(
        &self,
        seen: &mut SeenVersions,
        item_id: &[u8],
        expected_kind: Option<crate::ItemKind>,
        blob: &[u8],
    ) -> Result<(OpenedItem, Freshness)> {
        if seen.account_id != self.account_id() {
            return Err(VaultError::StateInvalid("state is for another account"));
        }
        let opened = self.open_item(item_id, expected_kind, blob)?;
        let f = seen.accept(item_id, &opened, blob)?;
        Ok((opened, f))
    }
}

impl OpenedItem {
    /// Checks that the authenticated version is the one the store claimed in its listing
    /// or write acknowledgement.
    pub fn expect_version(&self, claimed: u64) -> Result<()> {
        if self.header.version != claimed {
            return Err(VaultError::ItemVersionMismatch {
                claimed,
                found: self.header.version,
            });
        }
        Ok(())
    }
}
