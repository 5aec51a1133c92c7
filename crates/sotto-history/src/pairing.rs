//! Pairing a device on another machine through the store's pairing slots (docs/history.md,
//! "Pairing a device"; the cryptography is the vault's SPAKE2 exchange, docs/vault.md §8).
//!
//! ```text
//! new device (requester)                  store slot                 existing device (approver)
//! request_pairing: root secret, id,  ──▶  requested  ──▶  list_pairing_requests
//!   vault request, shows the code                          approve_pairing(code typed):
//! await_approval: opens the response ◀──  responded  ◀──   checks id = H(account, key),
//!   posts the confirmation           ──▶  confirmed  ──▶   checks the confirmation, registers
//!   logs in, wraps keys for itself   ◀──  approved   ◀──   the key, adds it to the directory
//! ```
//!
//! The requester's store key is bound into the authenticated exchange through its
//! credential id: `credential_id = SHA-256(label || account id || Ed25519 public key)[..16]`
//! is part of the vault request and of the transcript the confirmation authenticates, and the
//! approver registers exactly that key under exactly that id. A store that substitutes the key
//! in the slot is caught before anything is sent (`PAIRING_KEY_MISMATCH`); one that
//! substitutes the whole request (its own key, id and SPAKE2 message) cannot produce the
//! confirmation (`PAIRING_CONFIRM_FAILED`), and nothing is registered.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};
use sotto_vault::{
    ApproveRandomness, CredentialKeys, CredentialKind, DeviceEntry, PairingCode, Requester,
    VaultError, approve, pairing::PairingRequest as VaultRequest,
};
use zeroize::Zeroizing;

use crate::{
    DeviceState, HistoryClient, HistoryError, Result, now_ms, state,
    state::{random, store_signing_key},
    store::{self, PairingSlotInfo, StoreClient},
};

/// Label of the paired credential id derivation.
pub const PAIRED_CREDENTIAL_LABEL: &[u8] = b"sotto-history/v1/paired-credential";
/// How often the two sides poll the slot.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The credential id of a paired device: the first 16 bytes of
/// `SHA-256("sotto-history/v1/paired-credential" || account id (16) || Ed25519 key (32))`.
/// It commits the vault's authenticated pairing transcript (which contains the id) to the
/// store key the approver registers.
pub fn paired_credential_id(account_id: &[u8; 16], store_key: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(PAIRED_CREDENTIAL_LABEL);
    h.update(account_id);
    h.update(store_key);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A pairing request waiting for approval, on the new device. Holds the single-use SPAKE2
/// state in memory: it cannot be resumed by another process.
pub struct PairingRequest {
    dir: PathBuf,
    state: DeviceState,
    root: Zeroizing<[u8; 32]>,
    requester: Requester,
    code: PairingCode,
    slot: String,
    store: StoreClient,
}

impl std::fmt::Debug for PairingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingRequest")
            .field("slot", &self.slot)
            .field("credential_id", &self.state.credential_id)
            .finish_non_exhaustive()
    }
}

/// A pending request as the approver sees it.
#[derive(Clone, Debug)]
pub struct PendingPairing {
    /// Slot id: pass it to [`HistoryClient::approve_pairing`].
    pub slot_id: String,
    /// The name the new device gave itself (unauthenticated until the pairing succeeds).
    pub name: String,
    /// The credential id in the request (hex).
    pub credential_id: String,
    /// Whether that id matches the store key in the slot (if not, the store tampered).
    pub key_matches: bool,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms).
    pub expires_at: i64,
}

fn decode(field: &str) -> Result<Vec<u8>> {
    Base64::decode_vec(field).map_err(|_| HistoryError::Protocol("bad base64 in pairing slot"))
}

fn store_key(slot: &PairingSlotInfo) -> Result<[u8; 32]> {
    decode(&slot.public_key)?
        .try_into()
        .map_err(|_| HistoryError::Protocol("pairing key is not 32 bytes"))
}

/// `(request's credential id, whether it matches the slot's key)`.
fn check_binding(account: &[u8; 16], slot: &PairingSlotInfo) -> Result<(VaultRequest, bool)> {
    let req = VaultRequest::parse(&decode(&slot.request)?)?;
    let expected = paired_credential_id(account, &store_key(slot)?);
    let matches = req.credential.credential_id == expected;
    Ok((req, matches))
}

impl PairingRequest {
    /// Starts pairing this machine as a new device of `account_id` on `store_url`: a new
    /// device secret (kept in memory until approval), a vault pairing request posted to a
    /// new slot. Show [`code`](Self::code) to the user, then call
    /// [`await_approval`](Self::await_approval).
    pub async fn start(
        store_url: &str,
        dir: &Path,
        account_id: &str,
        device_name: &str,
    ) -> Result<Self> {
        if state::exists(dir) {
            return Err(HistoryError::AccountExists);
        }
        let acct = store::decode16(account_id)
            .map_err(|_| HistoryError::InvalidArgument("not an account id"))?;
        let root = Zeroizing::new(random::<32>());
        let signing = store_signing_key(&root);
        let public = signing.verifying_key().to_bytes();
        let cred_id = paired_credential_id(&acct, &public);
        let keys = CredentialKeys::derive(&state::root_secret(&root), &acct, &cred_id)?;
        let (requester, code, request) = Requester::start(&keys, random(), random());
        let store = StoreClient::new(store_url, account_id)?;
        let slot = store.create_pairing(&public, device_name, &request).await?;
        Ok(PairingRequest {
            dir: dir.to_path_buf(),
            state: DeviceState {
                format: 1,
                store_url: store_url.trim_end_matches('/').to_string(),
                account_id: account_id.to_string(),
                credential_id: hex::encode(cred_id),
                device_name: device_name.to_string(),
            },
            root,
            requester,
            code,
            slot,
            store,
        })
    }

    /// The code to show ("dddd dddd" via [`PairingCode::display`]).
    pub fn code(&self) -> &PairingCode {
        &self.code
    }

    /// The slot id.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// This device's credential id once approved (hex).
    pub fn credential_id(&self) -> &str {
        &self.state.credential_id
    }

    /// Waits (up to `timeout`) for an existing device to answer, opens its response (every
    /// epoch's account key), posts the confirmation, waits for the approval, then writes the
    /// device state, logs in and uploads this device's wrapped keys. Errors:
    /// `PAIRING_AUTH_FAILED` (wrong code typed, or the store tampered; the slot is aborted),
    /// `PAIRING_REJECTED`, `PAIRING_TIMEOUT`, the store's `pairing_expired`. On any error
    /// nothing is written to the state directory.
    pub async fn await_approval(self, timeout: Duration) -> Result<HistoryClient> {
        let deadline = Instant::now() + timeout;
        let slot = self.slot.clone();
        let response = loop {
            let info = self.store.requester_slot(&slot).await?;
            match info.state.as_str() {
                "requested" => {}
                "responded" => {
                    break decode(
                        info.response
                            .as_deref()
                            .ok_or(HistoryError::Protocol("responded slot without response"))?,
                    )?;
                }
                "rejected" | "aborted" => return Err(HistoryError::PairingRejected),
                _ => return Err(HistoryError::Protocol("unexpected pairing state")),
            }
            if Instant::now() >= deadline {
                return Err(HistoryError::PairingTimeout);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let (paired, confirm) = match self.requester.finish(&response) {
            Ok(x) => x,
            Err(e) => {
                // Tell the approver now rather than letting it time out; best effort.
                let _ = self.store.abort_pairing(&slot).await;
                return Err(e.into());
            }
        };
        self.store.confirm_pairing(&slot, confirm).await?;
        loop {
            let info = self.store.requester_slot(&slot).await?;
            match info.state.as_str() {
                "confirmed" => {}
                "approved" => break,
                "rejected" => return Err(HistoryError::PairingRejected),
                _ => return Err(HistoryError::Protocol("unexpected pairing state")),
            }
            if Instant::now() >= deadline {
                return Err(HistoryError::PairingTimeout);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        HistoryClient::write_new_device(&self.dir, &self.state, &self.root)?;
        let signing = store_signing_key(&self.root);
        let client = HistoryClient::login(
            &self.dir,
            self.state,
            &self.root,
            &signing,
            Some(paired.vault),
        )
        .await?;
        client.upload_wrapped_keys_for_self().await?;
        Ok(client)
    }
}

impl HistoryClient {
    /// Starts pairing a new device (see [`PairingRequest::start`]).
    pub async fn request_pairing(
        store_url: &str,
        dir: &Path,
        account_id: &str,
        device_name: &str,
    ) -> Result<PairingRequest> {
        PairingRequest::start(store_url, dir, account_id, device_name).await
    }

    /// Pending pairing requests of this account (state `requested`, unexpired).
    pub async fn list_pairing_requests(&self) -> Result<Vec<PendingPairing>> {
        let acct = store::decode16(&self.state.account_id)?;
        let mut out = Vec::new();
        for slot in self.store.pairings().await? {
            if slot.state != "requested" || slot.account_id != self.state.account_id {
                continue;
            }
            // Anyone who knows the account id can post a slot: one that does not even parse
            // is skipped, so it cannot hide the real request from the list.
            let Ok((req, key_matches)) = check_binding(&acct, &slot) else {
                continue;
            };
            out.push(PendingPairing {
                credential_id: hex::encode(&req.credential.credential_id),
                slot_id: slot.slot_id,
                name: display_name(&slot.name),
                key_matches,
                created_at: slot.created_at,
                expires_at: slot.expires_at,
            });
        }
        Ok(out)
    }

    /// Approves the pairing request in `slot` with the code the user typed (read on the new
    /// device): answers with every epoch's account key sealed under the SPAKE2 exchange,
    /// waits (up to `timeout`) for the new device's confirmation, and only if it verifies
    /// registers the new device's store key and adds it to the encrypted device directory.
    /// Returns the new device's credential id. Errors: `PAIRING_CODE_INVALID`,
    /// `PAIRING_KEY_MISMATCH` (the slot's key is not the one the request commits to),
    /// `PAIRING_CONFIRM_FAILED` (wrong code, or tampering; the new device is not added),
    /// `PAIRING_TIMEOUT`. Failures after the response close the slot as rejected.
    pub async fn approve_pairing(
        &mut self,
        slot: &str,
        typed_code: &str,
        timeout: Duration,
    ) -> Result<String> {
        let code = PairingCode::parse(typed_code)?;
        let acct = store::decode16(&self.state.account_id)?;
        let info = self.store.approver_slot(slot).await?;
        if info.state != "requested" {
            return Err(HistoryError::Store {
                status: 409,
                code: "pairing_state".into(),
            });
        }
        let (req, key_matches) = check_binding(&acct, &info)?;
        if !key_matches {
            let _ = self.store.finish_pairing(slot, false).await;
            return Err(HistoryError::PairingKeyMismatch);
        }
        let key = store_key(&info)?;
        let (pending, response) = approve(
            &self.vault,
            &self.cred,
            &decode(&info.request)?,
            &code,
            ApproveRandomness {
                spake_seed: random(),
                ephemeral: random(),
                nonce: random(),
            },
        )?;
        self.store.respond_pairing(slot, response).await?;
        let deadline = Instant::now() + timeout;
        let confirm = loop {
            let info = self.store.approver_slot(slot).await?;
            match info.state.as_str() {
                "responded" => {}
                "confirmed" => {
                    break decode(info.confirm.as_deref().ok_or(HistoryError::Protocol(
                        "confirmed slot without confirmation",
                    ))?)?;
                }
                // The new device could not open the response: wrong code or tampering.
                "aborted" => {
                    let _ = self.store.finish_pairing(slot, false).await;
                    return Err(VaultError::PairingConfirmFailed.into());
                }
                _ => return Err(HistoryError::Protocol("unexpected pairing state")),
            }
            if Instant::now() >= deadline {
                let _ = self.store.finish_pairing(slot, false).await;
                return Err(HistoryError::PairingTimeout);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let device = match pending.finish(&confirm) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.store.finish_pairing(slot, false).await;
                return Err(e.into());
            }
        };
        let id_hex = hex::encode(&device.credential_id);
        debug_assert_eq!(device.credential_id, req.credential.credential_id);
        self.store.add_credential_with_id(&key, &id_hex).await?;
        let name = display_name(&info.name);
        self.update_directory(|d| {
            d.upsert(DeviceEntry {
                credential: device.clone(),
                kind: CredentialKind::Device,
                name: name.clone(),
                added_at: now_ms(),
            });
            true
        })
        .await?;
        self.store.finish_pairing(slot, true).await?;
        Ok(id_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the derivation documented in docs/history.md (computed independently with
    /// Python's hashlib).
    #[test]
    fn paired_credential_id_vector() {
        assert_eq!(
            hex::encode(paired_credential_id(&[1; 16], &[2; 32])),
            "b95f4895e55c513542f8b631837bcefc"
        );
        assert_ne!(
            paired_credential_id(&[1; 16], &[2; 32]),
            paired_credential_id(&[3; 16], &[2; 32]),
            "bound to the account"
        );
    }
}

/// The requesting device's name as shown and stored: it is not authenticated (the store can
/// change it), so control and invisible formatting characters (bidi overrides, zero-width
/// characters) become U+FFFD instead of disguising one name as another; at most 64 chars.
pub(crate) fn display_name(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if is_hidden(c) { '\u{FFFD}' } else { c })
        .collect()
}

/// Control characters and the invisible format characters usable to spoof a name.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{FEFF}')
        || ('\u{200B}'..='\u{200F}').contains(&c)
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2060}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn hidden_characters_are_shown_not_obeyed() {
        assert_eq!(display_name("phone"), "phone");
        assert_eq!(display_name("my\u{202E}enohp"), "my\u{FFFD}enohp");
        assert_eq!(display_name("lap\u{200B}top\n"), "lap\u{FFFD}top\u{FFFD}");
        assert_eq!(display_name(&"x".repeat(100)).chars().count(), 64);
    }
}
