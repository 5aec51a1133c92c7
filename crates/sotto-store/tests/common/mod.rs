//! Shared test harness: a database of either kind, an in-process server, a device client.
//!
//! Every test runs against both backends (the `both_backends!` macro makes a `sqlite` and a
//! `postgres` test of each). PostgreSQL comes from `SOTTO_TEST_POSTGRES_URL` (see
//! `scripts/postgres.sh`); when it is unset the PostgreSQL tests FAIL, unless
//! `SOTTO_SKIP_POSTGRES=1` explicitly skips them.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sotto_store::{
    AccountId, AnyBackend, BackendConfig, Clock, CredentialId, Limits, Store, auth_message,
    open_backend,
};

/// Declares `mod NAME { sqlite(); postgres() }` tests that call `NAME(&Db)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::Db::sqlite();
                super::$name(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::Db::postgres() else { return };
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    )*};
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A fresh, empty database of one kind.
pub enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl Db {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Db::Sqlite { _dir: dir, path }
    }

    /// A fresh schema in the test cluster; `None` only with `SOTTO_SKIP_POSTGRES=1`.
    pub fn postgres() -> Option<Self> {
        match std::env::var("SOTTO_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Db::Postgres {
                url,
                schema: format!("t_{}", hex::encode(random_bytes::<8>())),
            }),
            _ if std::env::var("SOTTO_SKIP_POSTGRES").as_deref() == Ok("1") => {
                eprintln!("SKIPPED: PostgreSQL test (SOTTO_SKIP_POSTGRES=1)");
                None
            }
            _ => panic!(
                "SOTTO_TEST_POSTGRES_URL is not set: the PostgreSQL half of the store tests \
                 cannot run. Start a throwaway server with `eval \"$(scripts/postgres.sh)\"` \
                 (see docs/store.md), or set SOTTO_SKIP_POSTGRES=1 to skip these tests \
                 explicitly."
            ),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    pub fn config(&self) -> BackendConfig {
        match self {
            Db::Sqlite { path, .. } => BackendConfig::Sqlite { path: path.clone() },
            Db::Postgres { url, schema } => BackendConfig::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
                pool_size: 8,
            },
        }
    }

    pub async fn backend(&self) -> AnyBackend {
        open_backend(&self.config()).await.unwrap()
    }

    /// Arguments selecting this database for the `sotto-store` binary.
    pub fn bin_args(&self) -> Vec<String> {
        match self {
            Db::Sqlite { path, .. } => vec!["--sqlite".into(), path.display().to_string()],
            Db::Postgres { url, schema } => vec![
                "--postgres".into(),
                url.clone(),
                "--postgres-schema".into(),
                schema.clone(),
            ],
        }
    }

    /// A direct connection to the test cluster (PostgreSQL only), search_path = the schema.
    pub async fn pg_client(&self) -> tokio_postgres::Client {
        let Db::Postgres { url, schema } = self else {
            panic!("not PostgreSQL")
        };
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path = {schema}"))
            .await
            .unwrap();
        client
    }

    /// Runs SQL directly against the database (outside the store).
    pub async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Db::Postgres { .. } => self.pg_client().await.batch_execute(sql).await.unwrap(),
        }
    }

    /// Every non-null value of every column of every table, as bytes: `(table, column, value)`.
    pub async fn dump(&self) -> Vec<(String, String, Vec<u8>)> {
        let mut out = Vec::new();
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                for table in tables {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
                    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
                    let mut rows = stmt.query([]).unwrap();
                    while let Some(row) = rows.next().unwrap() {
                        for (i, name) in names.iter().enumerate() {
                            use rusqlite::types::ValueRef;
                            let bytes = match row.get_ref(i).unwrap() {
                                ValueRef::Null => continue,
                                ValueRef::Integer(v) => v.to_string().into_bytes(),
                                ValueRef::Real(v) => v.to_string().into_bytes(),
                                ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
                            };
                            out.push((table.clone(), name.clone(), bytes));
                        }
                    }
                }
            }
            Db::Postgres { schema, .. } => {
                let client = self.pg_client().await;
                let cols = client
                    .query(
                        "SELECT table_name::text, column_name::text, data_type::text
                         FROM information_schema.columns WHERE table_schema = $1",
                        &[schema],
                    )
                    .await
                    .unwrap();
                for c in cols {
                    let table: String = c.get(0);
                    let column: String = c.get(1);
                    let data_type: String = c.get(2);
                    // Binary columns as raw bytes, everything else as its text form.
                    let expr = if data_type == "bytea" {
                        format!("\"{column}\"")
                    } else {
                        format!("convert_to(\"{column}\"::text, 'UTF8')")
                    };
                    let rows = client
                        .query(
                            &format!(
                                "SELECT {expr} FROM \"{table}\" WHERE \"{column}\" IS NOT NULL"
                            ),
                            &[],
                        )
                        .await
                        .unwrap();
                    for r in rows {
                        out.push((table.clone(), column.clone(), r.get::<_, Vec<u8>>(0)));
                    }
                }
            }
        }
        out
    }

    pub async fn cleanup(&self) {
        if let Db::Postgres { schema, .. } = self {
            let client = self.pg_client().await;
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        }
    }
}

/// A clock the test can move forward.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_ms: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        now + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// A store served in-process on a loopback port.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    /// The in-process store's clock (unused for a remote store).
    pub clock: Arc<TestClock>,
}

/// A device of an account: its key, ids and current bearer token.
#[derive(Clone)]
pub struct Device {
    pub key: SigningKey,
    pub account: String,
    pub credential: String,
    pub token: String,
}

/// A failed request: status, error code, and the `error` object.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: String,
    pub error: Value,
}

pub async fn failure(resp: reqwest::Response) -> Failure {
    let status = resp.status();
    let body: Value = resp.json().await.expect("error bodies are JSON");
    let error = body["error"].clone();
    assert!(error["message"].is_string(), "error has a message: {body}");
    Failure {
        status,
        code: error["code"].as_str().expect("error has a code").to_owned(),
        error,
    }
}

/// Asserts a response is the given error.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Failure {
    let f = failure(resp).await;
    assert_eq!(
        (f.status.as_u16(), f.code.as_str()),
        (status, code),
        "unexpected error {f:?}"
    );
    f
}

pub fn new_key() -> SigningKey {
    SigningKey::from_bytes(&random_bytes::<32>())
}

pub fn public_key_b64(key: &SigningKey) -> String {
    Base64::encode_string(key.verifying_key().as_bytes())
}

impl TestServer {
    pub async fn start(db: &Db) -> Self {
        Self::start_with(db, Limits::default()).await
    }

    pub async fn start_with(db: &Db, limits: Limits) -> Self {
        let clock = Arc::new(TestClock::default());
        let store = Store::with_clock(db.backend().await, limits, clock.clone()).unwrap();
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

    /// A client for a store running elsewhere (e.g. the `sotto-store` process).
    pub fn remote(addr: &str) -> Self {
        TestServer {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
            clock: Arc::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub fn authed(&self, device: &Device, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, path).bearer_auth(&device.token)
    }

    /// Creates an account with a fresh device key and logs the device in.
    pub async fn new_account(&self) -> Device {
        let key = new_key();
        let resp = self
            .req(Method::POST, "/v1/accounts")
            .json(&json!({"credential": {"kind": "device-ed25519", "public_key": public_key_b64(&key)}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        let mut device = Device {
            key,
            account: body["account_id"].as_str().unwrap().to_owned(),
            credential: body["credential_id"].as_str().unwrap().to_owned(),
            token: String::new(),
        };
        device.token = self.login(&device).await.expect("login");
        device
    }

    /// Registers another device on `by`'s account and logs it in.
    pub async fn add_device(&self, by: &Device) -> Device {
        let key = new_key();
        let resp = self
            .authed(
                by,
                Method::POST,
                &format!("/v1/accounts/{}/credentials", by.account),
            )
            .json(&json!({"kind": "device-ed25519", "public_key": public_key_b64(&key)}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        let mut device = Device {
            key,
            account: by.account.clone(),
            credential: body["credential_id"].as_str().unwrap().to_owned(),
            token: String::new(),
        };
        device.token = self.login(&device).await.expect("login");
        device
    }

    /// Asks for a challenge: `Ok(challenge bytes)` or the error response.
    pub async fn challenge(
        &self,
        account: &str,
        credential: &str,
    ) -> Result<[u8; 32], reqwest::Response> {
        let resp = self
            .req(Method::POST, "/v1/auth/challenge")
            .json(&json!({"account_id": account, "credential_id": credential}))
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            return Err(resp);
        }
        let body: Value = resp.json().await.unwrap();
        let c = Base64::decode_vec(body["challenge"].as_str().unwrap()).unwrap();
        Ok(c.try_into().unwrap())
    }

    pub fn sign(device: &Device, challenge: &[u8; 32]) -> String {
        let account = AccountId::parse(&device.account).unwrap();
        let credential = CredentialId::parse(&device.credential).unwrap();
        let sig = device
            .key
            .sign(&auth_message(&account, &credential, challenge));
        Base64::encode_string(&sig.to_bytes())
    }

    /// Posts an answer to `/v1/auth/session`.
    pub async fn answer(
        &self,
        device: &Device,
        challenge: &[u8; 32],
        signature: &str,
    ) -> reqwest::Response {
        self.req(Method::POST, "/v1/auth/session")
            .json(&json!({
                "account_id": device.account,
                "credential_id": device.credential,
                "challenge": Base64::encode_string(challenge),
                "signature": signature,
            }))
            .send()
            .await
            .unwrap()
    }

    /// Full challenge–response login: the bearer token, or the failing response.
    pub async fn login(&self, device: &Device) -> Result<String, reqwest::Response> {
        let challenge = self.challenge(&device.account, &device.credential).await?;
        let resp = self
            .answer(device, &challenge, &Self::sign(device, &challenge))
            .await;
        if resp.status() != 200 {
            return Err(resp);
        }
        let body: Value = resp.json().await.unwrap();
        Ok(body["token"].as_str().unwrap().to_owned())
    }

    pub fn item_path(device: &Device, item: &str) -> String {
        format!("/v1/accounts/{}/items/{item}", device.account)
    }

    pub async fn put_item(
        &self,
        device: &Device,
        item: &str,
        if_match: u64,
        blob: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.authed(device, Method::PUT, &Self::item_path(device, item))
            .header("if-match", format!("\"{if_match}\""))
            .body(blob)
            .send()
            .await
            .unwrap()
    }

    /// PUT that must succeed: returns `(version, seq)`.
    pub async fn put_ok(
        &self,
        device: &Device,
        item: &str,
        if_match: u64,
        blob: &[u8],
    ) -> (u64, u64) {
        let resp = self.put_item(device, item, if_match, blob.to_vec()).await;
        assert_eq!(resp.status(), 200, "{:?}", failure(resp).await);
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        let version = body["version"].as_u64().unwrap();
        assert_eq!(etag, format!("\"{version}\""));
        (version, body["seq"].as_u64().unwrap())
    }

    pub async fn delete_item(
        &self,
        device: &Device,
        item: &str,
        if_match: u64,
    ) -> reqwest::Response {
        self.authed(device, Method::DELETE, &Self::item_path(device, item))
            .header("if-match", if_match.to_string())
            .send()
            .await
            .unwrap()
    }

    /// GET an item: `Ok((bytes, version))` or the error response.
    pub async fn get_item(
        &self,
        device: &Device,
        item: &str,
    ) -> Result<(Vec<u8>, u64), reqwest::Response> {
        let resp = self
            .authed(device, Method::GET, &Self::item_path(device, item))
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            return Err(resp);
        }
        let version: u64 = resp.headers()["sotto-version"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        Ok((resp.bytes().await.unwrap().to_vec(), version))
    }

    pub async fn account_info(&self, device: &Device) -> Value {
        let resp = self
            .authed(
                device,
                Method::GET,
                &format!("/v1/accounts/{}", device.account),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// One sync page.
    pub async fn changes(&self, device: &Device, query: &str) -> Value {
        let resp = self
            .authed(
                device,
                Method::GET,
                &format!("/v1/accounts/{}/items?{query}", device.account),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", failure(resp).await);
        resp.json().await.unwrap()
    }
}
