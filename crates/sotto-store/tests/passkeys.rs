//! WebAuthn passkeys against the real store over HTTP, with 1Password's software
//! authenticator (`passkey-authenticator` + `passkey-client`) playing the user's passkey,
//! PRF (hmac-secret) included. Every test runs on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use passkey_authenticator::{
    Authenticator, MemoryStore, UiHint, UserCheck, UserValidationMethod,
    extensions::HmacSecretConfig,
};
use passkey_client::{Client, DefaultClientData, WebauthnError};
use passkey_crypto::AvailableBackend;
use passkey_types::{
    Passkey as SoftPasskey,
    ctap2::{Aaguid, Ctap2Error},
    webauthn,
};
use reqwest::Method;
use serde_json::{Value, json};
use sotto_store::{Limits, PasskeyConfig, Store};
use sotto_vault::{
    AccountKey, CredentialKeys, ItemKind, RootSecret, Vault, prf_salt, seal_account_key,
};
use url::Url;

use common::{Db, Device, TestClock, TestServer, expect_error, failure, random_bytes};

const RP_ID: &str = "sotto.example";
const ORIGIN: &str = "https://chat.sotto.example";

/// The software authenticator's user: present, and verified when asked.
struct User;

#[async_trait::async_trait]
impl UserValidationMethod for User {
    type PasskeyItem = SoftPasskey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, SoftPasskey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence,
            verification,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

type SoftClient = Client<MemoryStore, User, AvailableBackend, public_suffix::PublicSuffixList, ()>;

/// A fresh software passkey device: hmac-secret (PRF) on, signature counter on.
fn authenticator() -> SoftClient {
    let mut auth = Authenticator::new(
        Aaguid::new_empty(),
        MemoryStore::new(),
        User,
        AvailableBackend,
    )
    .hmac_secret(HmacSecretConfig::new_with_uv_only());
    auth.set_make_credentials_with_signature_counter(true);
    Client::new(auth)
}

fn b64u(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// A store with passkeys enabled, served in-process.
async fn passkey_server(db: &Db) -> TestServer {
    let clock = Arc::new(TestClock::default());
    let store = Store::with_clock(db.backend().await, Limits::default(), clock.clone())
        .unwrap()
        .with_passkeys(&PasskeyConfig::new(RP_ID, ORIGIN))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = store.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    TestServer {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        clock,
    }
}

/// `credential.toJSON()` of a registration, as a browser sends it (no PRF results).
fn created_json(c: &webauthn::CreatedPublicKeyCredential) -> Value {
    json!({
        "id": b64u(&c.raw_id),
        "rawId": b64u(&c.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64u(&c.response.client_data_json),
            "attestationObject": b64u(&c.response.attestation_object),
        },
        "clientExtensionResults": {},
    })
}

/// `credential.toJSON()` of an assertion, without the PRF results (they stay on the client).
fn asserted_json(c: &webauthn::AuthenticatedPublicKeyCredential) -> Value {
    json!({
        "id": b64u(&c.raw_id),
        "rawId": b64u(&c.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64u(&c.response.client_data_json),
            "authenticatorData": b64u(&c.response.authenticator_data),
            "signature": b64u(&c.response.signature),
            "userHandle": c.response.user_handle.as_ref().map(|h| b64u(h)),
        },
        "clientExtensionResults": {},
    })
}

/// `navigator.credentials.create(options)` with `extensions.prf = {}` added, as the web
/// client does at enrolment so the credential gets a PRF.
async fn create(
    client: &mut SoftClient,
    options: &Value,
    origin: &str,
) -> Result<webauthn::CreatedPublicKeyCredential, WebauthnError> {
    let mut options: webauthn::CredentialCreationOptions =
        serde_json::from_value(options.clone()).unwrap();
    let mut ext = options.public_key.extensions.take().unwrap_or_default();
    ext.prf = Some(webauthn::AuthenticationExtensionsPrfInputs {
        eval: None,
        eval_by_credential: None,
    });
    options.public_key.extensions = Some(ext);
    client
        .register(&Url::parse(origin).unwrap(), options, DefaultClientData)
        .await
}

/// `navigator.credentials.get(options)` with `extensions.prf.eval.first = prf_salt()`.
async fn get(
    client: &mut SoftClient,
    options: &Value,
    origin: &str,
) -> Result<webauthn::AuthenticatedPublicKeyCredential, WebauthnError> {
    get_with(client, options, origin, true).await
}

/// `navigator.credentials.get(options)`, with or without the PRF evaluation.
async fn get_with(
    client: &mut SoftClient,
    options: &Value,
    origin: &str,
    prf: bool,
) -> Result<webauthn::AuthenticatedPublicKeyCredential, WebauthnError> {
    let mut options: webauthn::CredentialRequestOptions =
        serde_json::from_value(options.clone()).unwrap();
    let mut ext = options.public_key.extensions.take().unwrap_or_default();
    ext.prf = prf.then(|| webauthn::AuthenticationExtensionsPrfInputs {
        eval: Some(webauthn::AuthenticationExtensionsPrfValues {
            first: prf_salt().to_vec().into(),
            second: None,
        }),
        eval_by_credential: None,
    });
    options.public_key.extensions = Some(ext);
    client
        .authenticate(&Url::parse(origin).unwrap(), options, DefaultClientData)
        .await
}

/// The 32-byte PRF result of an assertion: the vault root secret.
fn prf_output(c: &webauthn::AuthenticatedPublicKeyCredential) -> [u8; 32] {
    let results = c
        .client_extension_results
        .prf
        .as_ref()
        .and_then(|p| p.results.as_ref())
        .expect("the authenticator evaluated the PRF");
    results.first.to_vec().try_into().unwrap()
}

async fn post(
    server: &TestServer,
    token: Option<&str>,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    let mut req = server.req(Method::POST, path).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn ok_json(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "{:?}", failure(resp).await);
    resp.json().await.unwrap()
}

/// `register/start` for `device`'s account: `(ceremony_id, options)`.
async fn register_start(server: &TestServer, device: &Device) -> (String, Value) {
    let path = format!("/v1/accounts/{}/passkeys/register/start", device.account);
    let body = ok_json(
        post(server, Some(&device.token), &path, &json!({})).await,
        200,
    )
    .await;
    (
        body["ceremony_id"].as_str().unwrap().to_owned(),
        body["options"].clone(),
    )
}

async fn register_finish(
    server: &TestServer,
    device: &Device,
    ceremony: &str,
    credential: Value,
) -> reqwest::Response {
    let path = format!("/v1/accounts/{}/passkeys/register/finish", device.account);
    post(
        server,
        Some(&device.token),
        &path,
        &json!({"ceremony_id": ceremony, "credential": credential}),
    )
    .await
}

/// Registers `client`'s new passkey on `device`'s account: its store credential id.
async fn register(server: &TestServer, device: &Device, client: &mut SoftClient) -> String {
    let (ceremony, options) = register_start(server, device).await;
    let created = create(client, &options, ORIGIN).await.unwrap();
    let body = ok_json(
        register_finish(server, device, &ceremony, created_json(&created)).await,
        201,
    )
    .await;
    body["credential_id"].as_str().unwrap().to_owned()
}

async fn login_start(server: &TestServer, account: &str) -> (String, Value) {
    let body = ok_json(
        post(
            server,
            None,
            "/v1/auth/passkey/start",
            &json!({"account_id": account}),
        )
        .await,
        200,
    )
    .await;
    (
        body["ceremony_id"].as_str().unwrap().to_owned(),
        body["options"].clone(),
    )
}

async fn login_finish(server: &TestServer, ceremony: &str, credential: Value) -> reqwest::Response {
    post(
        server,
        None,
        "/v1/auth/passkey/finish",
        &json!({"ceremony_id": ceremony, "credential": credential}),
    )
    .await
}

/// A passkey session: the device-like handle for HTTP calls, and the PRF output.
async fn passkey_login(
    server: &TestServer,
    account: &str,
    client: &mut SoftClient,
) -> (Device, [u8; 32]) {
    let (ceremony, options) = login_start(server, account).await;
    let assertion = get(client, &options, ORIGIN).await.unwrap();
    let body = ok_json(
        login_finish(server, &ceremony, asserted_json(&assertion)).await,
        200,
    )
    .await;
    let device = Device {
        key: common::new_key(), // unused: a passkey session has no device key
        account: account.to_owned(),
        credential: body["credential_id"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    };
    (device, prf_output(&assertion))
}

async fn put_key(server: &TestServer, who: &Device, key_id: &str, record: &[u8]) {
    let resp = server
        .authed(
            who,
            Method::PUT,
            &format!("/v1/accounts/{}/keys/{key_id}", who.account),
        )
        .header("if-match", "0")
        .body(record.to_vec())
        .send()
        .await
        .unwrap();
    ok_json(resp, 200).await;
}

async fn get_key(server: &TestServer, who: &Device, key_id: &str) -> Vec<u8> {
    let resp = server
        .authed(
            who,
            Method::GET,
            &format!("/v1/accounts/{}/keys/{key_id}", who.account),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap().to_vec()
}

async fn credential_count(server: &TestServer, device: &Device) -> usize {
    let resp = server
        .authed(
            device,
            Method::GET,
            &format!("/v1/accounts/{}/credentials", device.account),
        )
        .send()
        .await
        .unwrap();
    let body = ok_json(resp, 200).await;
    body["credentials"].as_array().unwrap().len()
}

async fn session_count(db: &Db) -> usize {
    db.dump()
        .await
        .iter()
        .filter(|(t, c, _)| t == "sessions" && c == "token_hash")
        .count()
}

// ---- the whole flow ---------------------------------------------------------------------------

async fn passkey_keys_are_stable_and_shared_with_a_device(db: &Db) {
    let server = passkey_server(db).await;
    // A command-line device creates the account (device key), then enrols a passkey.
    let cli = server.new_account().await;
    let cli_root = RootSecret::from_bytes(random_bytes::<32>());
    let acct = hex::decode(&cli.account).unwrap();
    let cli_keys =
        CredentialKeys::derive(&cli_root, &acct, &hex::decode(&cli.credential).unwrap()).unwrap();
    let mut soft = authenticator();
    let passkey_cred = register(&server, &cli, &mut soft).await;

    let list = ok_json(
        server
            .authed(
                &cli,
                Method::GET,
                &format!("/v1/accounts/{}/credentials", cli.account),
            )
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let kinds: Vec<&str> = list["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["device-ed25519", "webauthn-passkey"]);

    // First passkey login: the browser side. Its root secret is the PRF output.
    let (browser, prf1) = passkey_login(&server, &cli.account, &mut soft).await;
    assert_eq!(browser.credential, passkey_cred);
    let root = RootSecret::from_prf_output(prf1);
    let pk_keys =
        CredentialKeys::derive(&root, &acct, &hex::decode(&passkey_cred).unwrap()).unwrap();
    // The browser creates the account key, wraps it for itself (KEK) and seals it to the
    // CLI device's X25519 key, and writes an item.
    let account_key = AccountKey::new(1, random_bytes::<32>()).unwrap();
    put_key(
        &server,
        &browser,
        "pk-1",
        &pk_keys.wrap(&account_key, random_bytes::<24>()),
    )
    .await;
    let sealed = seal_account_key(
        &cli_keys.public(),
        &account_key,
        random_bytes(),
        random_bytes(),
    )
    .unwrap();
    put_key(&server, &browser, "dev-1", &sealed).await;
    let vault = Vault::from_keys(&acct, vec![account_key]).unwrap();
    let body = b"hello from the browser";
    let blob = vault
        .seal_item(
            b"conv-1",
            ItemKind::Conversation,
            1,
            body,
            random_bytes::<24>(),
        )
        .unwrap();
    assert_eq!(server.put_ok(&browser, "conv-1", 0, &blob).await.0, 1);

    // A second, independent login with the same authenticator gives the same PRF output,
    // so the same KEK, which unwraps the same account key and opens the item.
    let (browser2, prf2) = passkey_login(&server, &cli.account, &mut soft).await;
    assert_ne!(browser2.token, browser.token);
    assert_eq!(prf2, prf1, "the PRF on the documented salt is stable");
    let pk_keys2 = CredentialKeys::derive(
        &RootSecret::from_prf_output(prf2),
        &acct,
        &hex::decode(&browser2.credential).unwrap(),
    )
    .unwrap();
    let record = get_key(&server, &browser2, "pk-1").await;
    let vault2 = Vault::unlock(&pk_keys2, [record.as_slice()]).unwrap();
    let (fetched, _) = server.get_item(&browser2, "conv-1").await.ok().unwrap();
    assert_eq!(
        &vault2
            .open_item(b"conv-1", Some(ItemKind::Conversation), &fetched)
            .unwrap()
            .body[..],
        body
    );

    // The command-line device reads what the passkey side wrote.
    let sealed = get_key(&server, &cli, "dev-1").await;
    let cli_vault = Vault::unlock(&cli_keys, [sealed.as_slice()]).unwrap();
    let (fetched, _) = server.get_item(&cli, "conv-1").await.ok().unwrap();
    assert_eq!(
        &cli_vault
            .open_item(b"conv-1", Some(ItemKind::Conversation), &fetched)
            .unwrap()
            .body[..],
        body
    );

    // The PRF output reached neither the store's database nor any of its columns.
    let dump = db.dump().await;
    let forms = [
        prf1.to_vec(),
        hex::encode(prf1).into_bytes(),
        Base64::encode_string(&prf1).into_bytes(),
        b64u(&prf1).into_bytes(),
    ];
    for (table, column, value) in &dump {
        for form in &forms {
            assert!(
                !value.windows(form.len()).any(|w| w == form.as_slice()),
                "PRF output found in {table}.{column}"
            );
        }
    }
    // The counter moved on and was stored (two logins).
    let stored: Vec<&Vec<u8>> = dump
        .iter()
        .filter(|(t, c, _)| t == "passkeys" && c == "passkey")
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(stored.len(), 1);
    let passkey: Value = serde_json::from_slice(stored[0]).unwrap();
    assert_eq!(passkey["cred"]["counter"], 2, "{passkey}");

    // A passkey session may not use the device challenge endpoint, and a device-style
    // challenge for the passkey credential is refused.
    let resp = post(
        &server,
        None,
        "/v1/auth/challenge",
        &json!({"account_id": cli.account, "credential_id": passkey_cred}),
    )
    .await;
    expect_error(resp, 400, "unsupported_credential_kind").await;
    // Passkeys cannot be added by naming a key.
    let resp = post(
        &server,
        Some(&cli.token),
        &format!("/v1/accounts/{}/credentials", cli.account),
        &json!({"kind": "webauthn-passkey", "public_key": Base64::encode_string(&[1u8; 32])}),
    )
    .await;
    expect_error(resp, 400, "unsupported_credential_kind").await;

    // Removing the passkey ends its sessions and its logins.
    let resp = server
        .authed(
            &cli,
            Method::DELETE,
            &format!("/v1/accounts/{}/credentials/{passkey_cred}", cli.account),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = server
        .authed(
            &browser2,
            Method::GET,
            &format!("/v1/accounts/{}", cli.account),
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_token").await;
    let resp = post(
        &server,
        None,
        "/v1/auth/passkey/start",
        &json!({"account_id": cli.account}),
    )
    .await;
    expect_error(resp, 404, "unknown_credential").await;
}

/// A browser-first account: created by a passkey, no device involved.
async fn new_account_with_a_passkey(db: &Db) {
    let server = passkey_server(db).await;
    let mut soft = authenticator();
    let start = ok_json(
        post(
            &server,
            None,
            "/v1/accounts/passkey/start",
            &json!({"user_name": "alice"}),
        )
        .await,
        200,
    )
    .await;
    let ceremony = start["ceremony_id"].as_str().unwrap();
    assert_eq!(start["options"]["publicKey"]["rp"]["id"], RP_ID);
    assert_eq!(
        start["options"]["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let created = create(&mut soft, &start["options"], ORIGIN).await.unwrap();
    let body = json!({"ceremony_id": ceremony, "credential": created_json(&created)});
    let made = ok_json(
        post(&server, None, "/v1/accounts/passkey/finish", &body).await,
        201,
    )
    .await;
    let account = made["account_id"].as_str().unwrap();
    // The same finish again: the ceremony is gone, no second account.
    let resp = post(&server, None, "/v1/accounts/passkey/finish", &body).await;
    expect_error(resp, 401, "invalid_ceremony").await;

    let (session, prf) = passkey_login(&server, account, &mut soft).await;
    assert_eq!(session.credential, made["credential_id"].as_str().unwrap());
    assert_eq!(credential_count(&server, &session).await, 1);
    // The PRF is usable as a root secret from the first login on.
    let (_, prf_again) = passkey_login(&server, account, &mut soft).await;
    assert_eq!(prf, prf_again);
    let accounts = db
        .dump()
        .await
        .iter()
        .filter(|(t, c, _)| t == "accounts" && c == "id")
        .count();
    assert_eq!(accounts, 1);
}

// ---- rejections -------------------------------------------------------------------------------

/// Every refused login leaves no session behind and the account unchanged.
async fn login_rejections(db: &Db) {
    let server = passkey_server(db).await;
    let cli = server.new_account().await;
    let mut soft = authenticator();
    register(&server, &cli, &mut soft).await;
    let mut sessions = session_count(db).await;
    let creds = credential_count(&server, &cli).await;

    // Wrong origin (a sibling subdomain the store does not serve).
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, "https://evil.sotto.example")
        .await
        .unwrap();
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "passkey_origin_mismatch",
    )
    .await;
    assert_eq!(session_count(db).await, sessions, "no session was opened");

    // Replay: a good assertion is accepted once; the same answer again is refused.
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    ok_json(login_finish(&server, &c, asserted_json(&a)).await, 200).await;
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "invalid_ceremony",
    )
    .await;
    // ... and as the answer to a fresh ceremony its challenge does not match.
    let (c2, _) = login_start(&server, &cli.account).await;
    expect_error(
        login_finish(&server, &c2, asserted_json(&a)).await,
        401,
        "passkey_challenge_mismatch",
    )
    .await;
    sessions += 1;
    assert_eq!(session_count(db).await, sessions);

    // Expired ceremony; it is consumed as well.
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    server.clock.advance(121_000);
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "ceremony_expired",
    )
    .await;
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "invalid_ceremony",
    )
    .await;
    assert_eq!(session_count(db).await, sessions);

    // An assertion from a passkey that is not registered to this account: another
    // authenticator, registered to another account of the same relying party, answers a
    // ceremony of this account (a client that swapped allowCredentials for its own).
    let other_cli = server.new_account().await;
    let mut other = authenticator();
    register(&server, &other_cli, &mut other).await;
    let listed = ok_json(
        server
            .authed(
                &other_cli,
                Method::GET,
                &format!("/v1/accounts/{}/credentials", other_cli.account),
            )
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    // A passkey's `public_key` in the listing is its WebAuthn credential id.
    let other_id =
        Base64::decode_vec(listed["credentials"][1]["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(listed["credentials"][1]["kind"], "webauthn-passkey");
    let (c, mut options) = login_start(&server, &cli.account).await;
    options["publicKey"]["allowCredentials"] =
        json!([{"type": "public-key", "id": b64u(&other_id)}]);
    let a = get(&mut other, &options, ORIGIN).await.unwrap();
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "passkey_unknown_credential",
    )
    .await;
    sessions += 1; // other_cli's device session
    assert_eq!(session_count(db).await, sessions);

    // Tampered signature.
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    let mut j = asserted_json(&a);
    let mut sig = a.response.signature.to_vec();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    j["response"]["signature"] = json!(b64u(&sig));
    expect_error(
        login_finish(&server, &c, j).await,
        401,
        "passkey_bad_signature",
    )
    .await;

    // Tampered clientDataJSON (same challenge and origin, an extra member): the signature no
    // longer covers it.
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    let mut client_data: Value = serde_json::from_slice(&a.response.client_data_json).unwrap();
    client_data["crossOrigin"] = json!(false);
    client_data["tampered"] = json!(true);
    let mut j = asserted_json(&a);
    j["response"]["clientDataJSON"] = json!(b64u(&serde_json::to_vec(&client_data).unwrap()));
    expect_error(
        login_finish(&server, &c, j).await,
        401,
        "passkey_bad_signature",
    )
    .await;

    // clientDataJSON of the wrong type (a registration's), otherwise genuine.
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    let mut client_data: Value = serde_json::from_slice(&a.response.client_data_json).unwrap();
    client_data["type"] = json!("webauthn.create");
    let mut j = asserted_json(&a);
    j["response"]["clientDataJSON"] = json!(b64u(&serde_json::to_vec(&client_data).unwrap()));
    expect_error(login_finish(&server, &c, j).await, 401, "passkey_invalid").await;

    // User verification missing: a client that downgraded the request to "discouraged".
    let (c, mut options) = login_start(&server, &cli.account).await;
    options["publicKey"]["userVerification"] = json!("discouraged");
    let a = get_with(&mut soft, &options, ORIGIN, false).await.unwrap();
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "passkey_user_not_verified",
    )
    .await;

    // Counter regression: a clone of the authenticator with an older counter.
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    ok_json(login_finish(&server, &c, asserted_json(&a)).await, 200).await;
    sessions += 1;
    for passkey in soft.authenticator_mut().store_mut().values_mut() {
        passkey.counter = Some(1);
    }
    let (c, options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "passkey_counter_regression",
    )
    .await;
    assert_eq!(session_count(db).await, sessions);

    // PRF results must never be sent; the ceremony is not even consumed.
    let (c, options) = login_start(&server, &cli.account).await;
    for passkey in soft.authenticator_mut().store_mut().values_mut() {
        passkey.counter = Some(1000);
    }
    let a = get(&mut soft, &options, ORIGIN).await.unwrap();
    let mut j = asserted_json(&a);
    j["clientExtensionResults"] = json!({"prf": {"results": {"first": b64u(&prf_output(&a))}}});
    expect_error(login_finish(&server, &c, j).await, 400, "malformed_request").await;

    // Malformed and oversized bodies, unknown ceremonies.
    for (body, status, code) in [
        (json!({"ceremony_id": c}), 400, "malformed_request"),
        (
            json!({"ceremony_id": c, "credential": {"id": "x"}}),
            400,
            "malformed_request",
        ),
        (
            json!({"ceremony_id": c, "credential": asserted_json(&a), "extra": 1}),
            400,
            "malformed_request",
        ),
        (
            json!({"ceremony_id": "zz", "credential": asserted_json(&a)}),
            400,
            "invalid_id",
        ),
        (
            json!({"ceremony_id": hex::encode([7u8; 16]), "credential": asserted_json(&a)}),
            401,
            "invalid_ceremony",
        ),
    ] {
        expect_error(
            post(&server, None, "/v1/auth/passkey/finish", &body).await,
            status,
            code,
        )
        .await;
    }
    let big = json!({"ceremony_id": c, "credential": {"pad": "x".repeat(20_000)}});
    expect_error(
        post(&server, None, "/v1/auth/passkey/finish", &big).await,
        413,
        "request_too_large",
    )
    .await;
    let resp = server
        .req(Method::POST, "/v1/auth/passkey/finish")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "malformed_request").await;
    // The good answer still works after all that (the malformed ones did not consume it:
    // only a well-formed finish takes the ceremony).
    ok_json(login_finish(&server, &c, asserted_json(&a)).await, 200).await;
    sessions += 1;
    assert_eq!(session_count(db).await, sessions);

    // Start errors.
    let resp = post(
        &server,
        None,
        "/v1/auth/passkey/start",
        &json!({"account_id": hex::encode([9u8; 16])}),
    )
    .await;
    expect_error(resp, 404, "unknown_account").await;
    let resp = post(
        &server,
        None,
        "/v1/auth/passkey/start",
        &json!({"account_id": other_cli.account.to_uppercase()}),
    )
    .await;
    expect_error(resp, 400, "invalid_id").await;
    let no_passkey = server.new_account().await;
    let resp = post(
        &server,
        None,
        "/v1/auth/passkey/start",
        &json!({"account_id": no_passkey.account}),
    )
    .await;
    expect_error(resp, 404, "unknown_credential").await;
    assert_eq!(
        session_count(db).await,
        sessions + 1,
        "only no_passkey's device session"
    );
    assert_eq!(credential_count(&server, &cli).await, creds);
}

async fn registration_rejections(db: &Db) {
    let server = passkey_server(db).await;
    let cli = server.new_account().await;
    let other = server.new_account().await;
    let mut soft = authenticator();

    // No session, or a session of another account.
    let path = format!("/v1/accounts/{}/passkeys/register/start", cli.account);
    expect_error(
        post(&server, None, &path, &json!({})).await,
        401,
        "missing_token",
    )
    .await;
    expect_error(
        post(&server, Some(&other.token), &path, &json!({})).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        post(&server, Some(&cli.token), &path, &json!({"user_name": ""})).await,
        400,
        "malformed_request",
    )
    .await;

    // Wrong RP id: the authenticator signs for chat.sotto.example, not sotto.example.
    let (c, mut options) = register_start(&server, &cli).await;
    options["publicKey"]["rp"]["id"] = json!("chat.sotto.example");
    let created = create(&mut soft, &options, ORIGIN).await.unwrap();
    expect_error(
        register_finish(&server, &cli, &c, created_json(&created)).await,
        401,
        "passkey_rp_id_mismatch",
    )
    .await;

    // Wrong origin.
    let (c, options) = register_start(&server, &cli).await;
    let created = create(&mut soft, &options, "https://evil.sotto.example")
        .await
        .unwrap();
    expect_error(
        register_finish(&server, &cli, &c, created_json(&created)).await,
        401,
        "passkey_origin_mismatch",
    )
    .await;

    // Without user verification.
    let (c, mut options) = register_start(&server, &cli).await;
    options["publicKey"]["authenticatorSelection"]["userVerification"] = json!("discouraged");
    let created = create(&mut soft, &options, ORIGIN).await.unwrap();
    expect_error(
        register_finish(&server, &cli, &c, created_json(&created)).await,
        401,
        "passkey_user_not_verified",
    )
    .await;

    // Another account's ceremony, finished by this account: refused and consumed.
    let (c_other, options) = register_start(&server, &other).await;
    let created = create(&mut soft, &options, ORIGIN).await.unwrap();
    expect_error(
        register_finish(&server, &cli, &c_other, created_json(&created)).await,
        401,
        "invalid_ceremony",
    )
    .await;
    expect_error(
        register_finish(&server, &other, &c_other, created_json(&created)).await,
        401,
        "invalid_ceremony",
    )
    .await;

    // Expired.
    let (c, options) = register_start(&server, &cli).await;
    let created = create(&mut soft, &options, ORIGIN).await.unwrap();
    server.clock.advance(121_000);
    expect_error(
        register_finish(&server, &cli, &c, created_json(&created)).await,
        401,
        "ceremony_expired",
    )
    .await;

    assert_eq!(
        credential_count(&server, &cli).await,
        1,
        "nothing was registered"
    );
    assert_eq!(credential_count(&server, &other).await, 1);

    // The same authenticator registered twice to one account: the second is excluded.
    register(&server, &cli, &mut soft).await;
    let (c, options) = register_start(&server, &cli).await;
    assert_eq!(
        options["publicKey"]["excludeCredentials"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // A registration ceremony is not a login ceremony.
    let (_, login_options) = login_start(&server, &cli.account).await;
    let a = get(&mut soft, &login_options, ORIGIN).await.unwrap();
    expect_error(
        login_finish(&server, &c, asserted_json(&a)).await,
        401,
        "invalid_ceremony",
    )
    .await;
    assert_eq!(credential_count(&server, &cli).await, 2);
}

/// A store without `--rp-id/--rp-origin` answers every passkey endpoint with
/// `passkeys_disabled`.
async fn passkeys_disabled(db: &Db) {
    let server = TestServer::start(db).await;
    let cli = server.new_account().await;
    for (path, token) in [
        ("/v1/accounts/passkey/start".to_owned(), None),
        ("/v1/accounts/passkey/finish".to_owned(), None),
        (
            format!("/v1/accounts/{}/passkeys/register/start", cli.account),
            Some(cli.token.as_str()),
        ),
        ("/v1/auth/passkey/start".to_owned(), None),
        ("/v1/auth/passkey/finish".to_owned(), None),
    ] {
        expect_error(
            post(&server, token, &path, &json!({})).await,
            404,
            "passkeys_disabled",
        )
        .await;
    }
}

both_backends!(
    passkey_keys_are_stable_and_shared_with_a_device,
    new_account_with_a_passkey,
    login_rejections,
    registration_rejections,
    passkeys_disabled,
);

// ---- the binary -------------------------------------------------------------------------------

/// The `sotto-store` binary with `--rp-id/--rp-origin`: a full passkey enrolment and login
/// against the real process, logging at `trace`; the log holds no PRF output, no
/// clientDataJSON and no signature.
async fn binary_with_passkeys(db: &Db) {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("store.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sotto-store"))
        .args(db.bin_args())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--rp-id",
            RP_ID,
            "--rp-origin",
            ORIGIN,
        ])
        .args(["--rp-name", "Sotto test"])
        .env("SOTTO_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("store did not start within 60 s")
        .unwrap()
        .expect("store exited before listening");
    let addr = line.strip_prefix("store listening on ").unwrap().to_owned();
    let server = TestServer::remote(&addr);

    let cli = server.new_account().await;
    let mut soft = authenticator();
    let (c, options) = register_start(&server, &cli).await;
    assert_eq!(options["publicKey"]["rp"]["name"], "Sotto test");
    let created = create(&mut soft, &options, ORIGIN).await.unwrap();
    ok_json(
        register_finish(&server, &cli, &c, created_json(&created)).await,
        201,
    )
    .await;
    let (ceremony, options) = login_start(&server, &cli.account).await;
    let assertion = get(&mut soft, &options, ORIGIN).await.unwrap();
    ok_json(
        login_finish(&server, &ceremony, asserted_json(&assertion)).await,
        200,
    )
    .await;
    let prf = prf_output(&assertion);
    child.start_kill().unwrap();
    let _ = child.wait().await;

    let log = std::fs::read(&log_path).unwrap();
    assert!(
        log.windows(23).any(|w| w == b"/v1/auth/passkey/finish"),
        "the log is the access log"
    );
    let secrets = [
        hex::encode(prf).into_bytes(),
        b64u(&prf).into_bytes(),
        Base64::encode_string(&prf).into_bytes(),
        b64u(&assertion.response.signature).into_bytes(),
        b64u(&assertion.response.client_data_json).into_bytes(),
    ];
    for s in &secrets {
        assert!(
            !log.windows(s.len()).any(|w| w == s.as_slice()),
            "found in the log: {}",
            String::from_utf8_lossy(s)
        );
    }
}

/// A relying party whose origin is not under its id refuses to start (`invalid_config`);
/// `--rp-id` alone is a usage error.
#[tokio::test]
async fn binary_refuses_an_inconsistent_relying_party() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let db = db.to_str().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sotto-store"))
            .args(["--sqlite", db, "--listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--rp-id",
        RP_ID,
        "--rp-origin",
        "https://chat.other.example",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--rp-id", RP_ID]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rp-origin"));
}

both_backends!(binary_with_passkeys);
