//! Test harness: a real `sotto-store` in-process on SQLite or PostgreSQL, and direct SQL
//! access to its database (the "evil store" tampers with rows behind the service's back).
#![allow(dead_code)]

use std::path::PathBuf;

/// Declares `mod NAME { sqlite(); postgres() }` tests that call `NAME(&Env)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let env = $crate::common::Env::start($crate::common::Db::sqlite()).await;
                super::$name(&env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::Db::postgres() else { return };
                let env = $crate::common::Env::start(db).await;
                super::$name(&env).await;
                env.db.cleanup().await;
            }
        }
    )*};
}

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

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

impl Db {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Db::Sqlite { _dir: dir, path }
    }

    /// `None` only with `SOTTO_SKIP_POSTGRES=1`; fails without `SOTTO_TEST_POSTGRES_URL`.
    pub fn postgres() -> Option<Self> {
        match std::env::var("SOTTO_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Db::Postgres {
                url,
                schema: format!("h_{}", rand_hex()),
            }),
            _ if std::env::var("SOTTO_SKIP_POSTGRES").as_deref() == Ok("1") => {
                eprintln!("SKIPPED: PostgreSQL test (SOTTO_SKIP_POSTGRES=1)");
                None
            }
            _ => panic!(
                "SOTTO_TEST_POSTGRES_URL is not set: start a throwaway server with \
                 `eval \"$(scripts/postgres.sh)\"` or set SOTTO_SKIP_POSTGRES=1"
            ),
        }
    }

    pub fn config(&self) -> sotto_store::BackendConfig {
        match self {
            Db::Sqlite { path, .. } => sotto_store::BackendConfig::Sqlite { path: path.clone() },
            Db::Postgres { url, schema } => sotto_store::BackendConfig::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
                pool_size: 4,
            },
        }
    }

    async fn pg(&self) -> tokio_postgres::Client {
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

    /// Runs SQL directly against the store's database.
    pub async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Db::Postgres { .. } => self.pg().await.batch_execute(sql).await.unwrap(),
        }
    }

    /// A binary literal in this database's SQL dialect.
    pub fn bytes_sql(&self, b: &[u8]) -> String {
        match self {
            Db::Sqlite { .. } => format!("X'{}'", hex::encode(b)),
            Db::Postgres { .. } => format!("decode('{}', 'hex')", hex::encode(b)),
        }
    }

    pub async fn cleanup(&self) {
        if let Db::Postgres { schema, .. } = self {
            self.pg()
                .await
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
        }
    }
}

pub struct Env {
    pub db: Db,
    pub url: String,
    pub dirs: tempfile::TempDir,
}

impl Env {
    pub async fn start(db: Db) -> Self {
        let bound = sotto_store::bind(sotto_store::StoreConfig {
            backend: db.config(),
            listen: "127.0.0.1:0".parse().unwrap(),
            limits: Default::default(),
        })
        .await
        .unwrap();
        let url = format!("http://{}", bound.local_addr());
        tokio::spawn(bound.run());
        Env {
            db,
            url,
            dirs: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh state directory for a device.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.dirs.path().join(name)
    }
}
