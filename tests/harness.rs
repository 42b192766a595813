//! The test harness: a `TestApp` runs the real router on `127.0.0.1:0` over
//! a fresh database of its own (a SQLite file in a temp dir, or a new
//! PostgreSQL database that is dropped afterwards) and speaks HTTP to it.

use api::auth::JwtKeys;
use api::config::{Config, Secret};
use api::http::App;
use entity::enums::Role;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub url: String,
    pub backend: Backend,
    pub state: api::http::AppState,
    pub client: reqwest::Client,
    keys: JwtKeys,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("LOCKSTEP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => format!("{url}/{name}"),
    }
}

/// Whether PostgreSQL cases should run: they fail under CI when PostgreSQL is
/// unreachable, and are skipped loudly elsewhere.
pub async fn postgres_available() -> bool {
    match tokio::time::timeout(
        Duration::from_secs(5),
        Database::connect(postgres_admin_url()),
    )
    .await
    {
        Ok(Ok(db)) => {
            let _ = db.close().await;
            true
        }
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "PostgreSQL is unreachable at {} and CI=true",
                    postgres_admin_url()
                );
            }
            eprintln!(
                "\n!!! PostgreSQL unreachable at {}: SKIPPING the PostgreSQL case !!!\n",
                postgres_admin_url()
            );
            false
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with a configuration tweak (limits, keys, …).
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        // Server logs (internal errors included) show in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,lockstep_api=info")
            .with_test_writer()
            .try_init();
        let mut config = Config {
            jwt_secret: Some(Secret(SECRET.to_owned())),
            demo: false,
            // Tests that write rows directly must not read a stale metric (the cache has its own tests).
            metrics_cache_secs: 0,
            // Suites fire bursts from one address: the rate limits have their own tests (ops.rs).
            rate_limits: api::config::RateLimits {
                enabled: false,
                ..Default::default()
            },
            ..Config::default()
        };
        let mut dir = None;
        let mut pg_name = None;
        match backend {
            Backend::Sqlite => {
                let d = tempfile::tempdir().expect("temp dir");
                config.database_url = Some(format!(
                    "sqlite://{}?mode=rwc",
                    d.path().join("test.db").display()
                ));
                config.secret_file = d.path().join("lockstep.secret");
                dir = Some(d);
            }
            Backend::Postgres => {
                let name = format!("lockstep_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(postgres_admin_url())
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                config.database_url = Some(with_database(&postgres_admin_url(), &name));
                pg_name = Some(name);
            }
        }
        tweak(&mut config);
        let keys = JwtKeys::from_config(&config).expect("keys");
        let app = App::build(config).await.expect("build app");
        let state = app.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        TestApp {
            addr,
            url: format!("http://{addr}"),
            backend,
            state,
            client: reqwest::Client::new(),
            keys,
            _dir: dir,
            pg_name,
            shutdown: Some(tx),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    /// SQL statements issued so far through the app's connection.
    pub fn statements(&self) -> u64 {
        self.state.statements.get()
    }

    /// A valid HS256 token for `role` and `sub`.
    pub fn token(&self, role: Role, sub: &str) -> String {
        self.keys
            .issue(role, sub, Duration::from_secs(3600), None)
            .expect("issue token")
    }

    pub fn admin_token(&self) -> String {
        self.token(Role::Admin, "admin-service")
    }

    /// POSTs a GraphQL request with `token`; returns the JSON body.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        self.client
            .post(format!("{}/graphql", self.url))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON body")
    }

    /// As ADMIN.
    pub async fn admin(&self, query: &str, variables: Value) -> Value {
        self.gql(&self.admin_token(), query, variables).await
    }

    /// Drops the PostgreSQL database (called by `db_test!`).
    pub async fn cleanup(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.state.db.clone().close().await;
        if let Some(name) = self.pg_name.take()
            && let Ok(admin) = Database::connect(postgres_admin_url()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }
}

impl Drop for TestApp {
    /// A test that panicked never reached `cleanup`: drop its PostgreSQL database anyway.
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// `data` of a response that must have no errors.
#[track_caller]
pub fn data(resp: &Value) -> &Value {
    assert!(resp.get("errors").is_none(), "unexpected errors: {resp:#}");
    &resp["data"]
}

/// `extensions.code` of the first error, if any.
pub fn error_code(resp: &Value) -> Option<&str> {
    resp["errors"][0]["extensions"]["code"].as_str()
}

/// Runs a data test on SQLite and on PostgreSQL, each on a fresh database:
/// `db_test!(name, |app| async move { … });` defines `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: &$crate::harness::TestApp) {
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::harness::TestApp::spawn($crate::harness::Backend::Sqlite).await;
                run(&app).await;
                app.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !$crate::harness::postgres_available().await {
                    return;
                }
                let app = $crate::harness::TestApp::spawn($crate::harness::Backend::Postgres).await;
                run(&app).await;
                app.cleanup().await;
            }
        }
    };
}
