//! The job runner: each job runs once with two runners on one database, a
//! failing job goes DEAD with its error, a worker killed with SIGKILL leaves
//! its job to another runner after the lease, SIGTERM gives a job back,
//! periodic jobs are enqueued once per period, `jobs` is ADMIN-only, and
//! `/readyz` reports a stopped runner. Waits are bounded polls, not timings.

use crate::db_test;
use crate::harness::*;
use api::jobs::{
    self, CancellationToken, JobError, NewJob, Registry, Runner, RunnerConfig, Schedule,
};
use entity::enums::{JobStatus, Role};
use entity::job;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set,
    TransactionTrait,
};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Quick polls and retries, so the tests wait little.
fn fast() -> RunnerConfig {
    RunnerConfig {
        concurrency: 8,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(20),
        schedule_interval: Duration::from_secs(3600),
        grace: Duration::from_secs(5),
        stale_after: Duration::from_secs(60),
    }
}

/// Polls `check` until it holds, for at most `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "gave up after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(db: &DatabaseConnection, id: uuid::Uuid) -> job::Model {
    job::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .expect("the job exists")
}

async fn count_with(db: &DatabaseConnection, kind: &str, status: JobStatus) -> u64 {
    job::Entity::find()
        .filter(job::Column::Kind.eq(kind))
        .filter(job::Column::Status.eq(status))
        .count(db)
        .await
        .unwrap()
}

type Calls = Arc<Mutex<HashMap<u64, u32>>>;

/// A handler for `kind` counting its runs per payload `n`.
fn counting(kind: &str, calls: Calls) -> Registry {
    let mut registry = Registry::new();
    registry.register(kind, move |_db, payload| {
        let calls = calls.clone();
        async move {
            let n = payload["n"].as_u64().ok_or("payload without n")?;
            *calls.lock().unwrap().entry(n).or_default() += 1;
            Ok(())
        }
    });
    registry
}

db_test!(
    two_runners_run_each_of_1000_jobs_exactly_once,
    |app| async move {
        const N: u64 = 1_000;
        let db1 = app.db().clone();
        // The second runner has its own pool, as another replica would.
        let db2 = api::db::connect(app.state.config.database_url(), Default::default())
            .await
            .unwrap();
        #[allow(clippy::disallowed_methods)] // enqueue inside a caller's transaction
        let txn = api::db::begin_write(&db1).await.unwrap();
        for n in 0..N {
            jobs::enqueue(&txn, "test.count", json!({ "n": n }), None, None)
                .await
                .unwrap();
        }
        txn.commit().await.unwrap();

        let calls: Calls = Arc::default();
        let stop = CancellationToken::new();
        let one = Runner::new(db1.clone(), counting("test.count", calls.clone()), fast());
        let two = Runner::new(db2.clone(), counting("test.count", calls.clone()), fast());
        let ids = [one.id().to_owned(), two.id().to_owned()];
        let started = Instant::now();
        let (one, two) = (one.spawn(stop.clone()), two.spawn(stop.clone()));
        wait_until(Duration::from_secs(50), "every job is DONE", || {
            let db = db1.clone();
            async move { count_with(&db, "test.count", JobStatus::Done).await == N }
        })
        .await;
        stop.cancel();
        one.await.unwrap().unwrap();
        two.await.unwrap().unwrap();

        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len() as u64, N, "every job ran");
        let repeated: Vec<_> = calls.iter().filter(|(_, c)| **c != 1).collect();
        assert!(repeated.is_empty(), "jobs run more than once: {repeated:?}");
        let all = job::Entity::find().all(&db1).await.unwrap();
        assert!(
            all.iter()
                .all(|j| j.attempts == 1 && j.finished_at.is_some())
        );
        let by_one = all
            .iter()
            .filter(|j| j.locked_by.as_deref() == Some(ids[0].as_str()))
            .count();
        let by_two = all
            .iter()
            .filter(|j| j.locked_by.as_deref() == Some(ids[1].as_str()))
            .count();
        eprintln!(
            "{:?}: {N} jobs in {:.1} s; runner one ran {by_one}, runner two {by_two}",
            app.backend,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(by_one + by_two, N as usize);
        assert!(by_one > 0 && by_two > 0, "both runners took part");
        db2.close().await.unwrap();
    }
);

db_test!(
    a_failing_job_goes_dead_after_max_attempts_with_its_error,
    |app| async move {
        let db = app.db().clone();
        let id = jobs::enqueue_job(&db, NewJob::new("test.fail", json!({})).max_attempts(3))
            .await
            .unwrap()
            .unwrap();
        let calls = Arc::new(Mutex::new(0u32));
        let mut registry = Registry::new();
        let counter = calls.clone();
        registry.register("test.fail", move |_db, _payload| {
            let counter = counter.clone();
            async move {
                let n = {
                    let mut c = counter.lock().unwrap();
                    *c += 1;
                    *c
                };
                Err(JobError(format!("boom {n}")))
            }
        });
        let stop = CancellationToken::new();
        let runner = Runner::new(db.clone(), registry, fast()).spawn(stop.clone());
        wait_until(Duration::from_secs(20), "the job is DEAD", || {
            let db = db.clone();
            async move { get(&db, id).await.status == JobStatus::Dead }
        })
        .await;
        stop.cancel();
        runner.await.unwrap().unwrap();
        let job = get(&db, id).await;
        assert_eq!(job.attempts, 3);
        assert_eq!(job.last_error.as_deref(), Some("boom 3"));
        assert!(job.finished_at.is_some());
        assert_eq!(*calls.lock().unwrap(), 3, "no run after DEAD");
    }
);

db_test!(
    a_running_job_keeps_its_lease_past_the_lease_time,
    |app| async move {
        // The handler outlasts a 1 s lease several times; the heartbeat renews
        // it, so a second runner polling all along never takes the job.
        let db = app.db().clone();
        let id = jobs::enqueue(&db, "test.slow", json!({ "n": 0 }), None, None)
            .await
            .unwrap()
            .unwrap();
        let calls: Calls = Arc::default();
        let slow = |calls: Calls| {
            let mut registry = Registry::new();
            registry.register("test.slow", move |_db, payload| {
                let calls = calls.clone();
                async move {
                    let n = payload["n"].as_u64().ok_or("payload without n")?;
                    *calls.lock().unwrap().entry(n).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(3_000)).await;
                    Ok(())
                }
            });
            registry
        };
        let config = RunnerConfig {
            lease: Duration::from_secs(1),
            ..fast()
        };
        let stop = CancellationToken::new();
        let first =
            Runner::new(db.clone(), slow(calls.clone()), config.clone()).spawn(stop.clone());
        wait_until(Duration::from_secs(20), "the job runs", || {
            let db = db.clone();
            async move { get(&db, id).await.status == JobStatus::Running }
        })
        .await;
        let second = Runner::new(db.clone(), slow(calls.clone()), config).spawn(stop.clone());
        wait_until(Duration::from_secs(30), "the job is DONE", || {
            let db = db.clone();
            async move { get(&db, id).await.status == JobStatus::Done }
        })
        .await;
        stop.cancel();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        let job = get(&db, id).await;
        assert_eq!(job.attempts, 1, "never claimed again");
        assert_eq!(calls.lock().unwrap().get(&0), Some(&1));
    }
);

/// Kills the child (SIGKILL) if a test fails before it does.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `lockstep worker` binary over the test's database, with the
/// test-only `diagnostics.sleep` kind and a 2-second lease.
fn spawn_worker(app: &TestApp, dir: &std::path::Path, grace_secs: u64) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["worker", "--database-url", app.state.config.database_url()])
            .current_dir(dir)
            .env_remove("LOCKSTEP_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env(jobs::builtin::TEST_KINDS_ENV, "1")
            .env("LOCKSTEP_JOBS_LEASE_SECS", "2")
            .env("LOCKSTEP_JOBS_POLL_MS", "50")
            .env("LOCKSTEP_JOBS_GRACE_SECS", grace_secs.to_string())
            .env("LOCKSTEP_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lockstep worker"),
    )
}

db_test!(
    a_worker_serves_its_own_metrics_on_metrics_bind,
    |app| async move {
        let db = app.db().clone();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let id = jobs::enqueue(&db, jobs::builtin::SLEEP, json!({ "ms": 5 }), None, None)
                .await
                .unwrap()
                .unwrap();
            ids.push(id);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        command
            .args(["worker", "--database-url", app.state.config.database_url()])
            .current_dir(dir.path())
            .env_remove("LOCKSTEP_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env(jobs::builtin::TEST_KINDS_ENV, "1")
            .env("LOCKSTEP_JOBS_POLL_MS", "50")
            .env("LOCKSTEP_METRICS_BIND", format!("127.0.0.1:{port}"))
            .env("LOCKSTEP_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let _worker = Worker(command.spawn().expect("spawn lockstep worker"));
        for id in ids {
            wait_until(Duration::from_secs(60), "the worker runs the job", || {
                let db = db.clone();
                async move { get(&db, id).await.status == JobStatus::Done }
            })
            .await;
        }
        let url = format!("http://127.0.0.1:{port}/metrics");
        let body = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains(r#"lockstep_job_runs_total{kind="diagnostics.sleep",outcome="done"} 2"#),
            "{body}"
        );
        assert!(
            body.contains(r#"lockstep_job_run_duration_seconds_count{kind="diagnostics.sleep"} 2"#),
            "{body}"
        );
        assert!(
            body.contains(r#"lockstep_jobs{kind="diagnostics.sleep",status="DONE"} 2"#),
            "{body}"
        );
    }
);

async fn wait_running(db: &DatabaseConnection, id: uuid::Uuid) -> job::Model {
    wait_until(Duration::from_secs(60), "the worker runs the job", || {
        let db = db.clone();
        async move { get(&db, id).await.status == JobStatus::Running }
    })
    .await;
    get(db, id).await
}

db_test!(
    a_worker_killed_mid_job_leaves_it_to_another_runner_after_the_lease,
    |app| async move {
        let db = app.db().clone();
        let id = jobs::enqueue(
            &db,
            jobs::builtin::SLEEP,
            json!({ "ms": 600_000 }),
            None,
            None,
        )
        .await
        .unwrap()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut worker = spawn_worker(app, dir.path(), 20);
        let running = wait_running(&db, id).await;
        let killed_runner = running.locked_by.clone().expect("locked by the worker");
        assert_eq!(running.attempts, 1);
        worker.0.kill().unwrap(); // SIGKILL: no chance to release anything
        worker.0.wait().unwrap();
        let orphan = get(&db, id).await;
        assert_eq!(orphan.status, JobStatus::Running, "nobody released it");

        let calls: Calls = Arc::default();
        let mut registry = Registry::new();
        let seen = calls.clone();
        registry.register(jobs::builtin::SLEEP, move |_db, _payload| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap().entry(0).or_default() += 1;
                Ok(())
            }
        });
        let config = RunnerConfig {
            lease: Duration::from_secs(2),
            ..fast()
        };
        let stop = CancellationToken::new();
        let runner = Runner::new(db.clone(), registry, config);
        let taker = runner.id().to_owned();
        let runner = runner.spawn(stop.clone());
        wait_until(
            Duration::from_secs(30),
            "another runner finishes the job",
            || {
                let db = db.clone();
                async move { get(&db, id).await.status == JobStatus::Done }
            },
        )
        .await;
        stop.cancel();
        runner.await.unwrap().unwrap();
        let done = get(&db, id).await;
        assert_eq!(done.attempts, 2, "the killed attempt counts");
        assert_eq!(done.locked_by.as_deref(), Some(taker.as_str()));
        assert_ne!(taker, killed_runner);
        assert!(
            done.finished_at.unwrap() >= orphan.locked_until.unwrap(),
            "taken only after the lease"
        );
        assert_eq!(calls.lock().unwrap().get(&0), Some(&1));
    }
);

db_test!(
    sigterm_gives_a_running_job_back_without_counting_the_attempt,
    |app| async move {
        let db = app.db().clone();
        let id = jobs::enqueue(
            &db,
            jobs::builtin::SLEEP,
            json!({ "ms": 600_000 }),
            None,
            None,
        )
        .await
        .unwrap()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // No grace: the sleeping job cannot finish, so it is released at once.
        let mut worker = spawn_worker(app, dir.path(), 0);
        wait_running(&db, id).await;
        let _ = Command::new("kill")
            .args(["-TERM", &worker.0.id().to_string()])
            .status();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = worker.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "stops on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "clean exit: {status:?}");
        let job = get(&db, id).await;
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.attempts, 0);
        assert_eq!(job.locked_by, None);
        assert_eq!(job.locked_until, None);
    }
);

db_test!(
    schedules_enqueue_once_per_period_and_prune_removes_old_done_jobs,
    |app| async move {
        let db = app.db().clone();
        let schedule = Schedule {
            name: "test.hourly".into(),
            kind: "test.noop".into(),
            payload: json!({ "x": 1 }),
            every: Duration::from_secs(3600),
        };
        jobs::schedule::register(&db, std::slice::from_ref(&schedule))
            .await
            .unwrap();
        // Registering again keeps the due time.
        jobs::schedule::register(&db, &[schedule]).await.unwrap();
        // Two ticks at once (two replicas): one job for the period.
        let (a, b) = tokio::join!(jobs::schedule::tick(&db), jobs::schedule::tick(&db));
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        assert_eq!(
            jobs::schedule::tick(&db).await.unwrap(),
            0,
            "not due again yet"
        );
        let queued = job::Entity::find()
            .filter(job::Column::Kind.eq("test.noop"))
            .all(&db)
            .await
            .unwrap();
        assert_eq!(queued.len(), 1);
        let key = queued[0].dedupe_key.clone().unwrap();
        assert!(key.starts_with("test.hourly@"), "{key}");
        assert_eq!(queued[0].payload, r#"{"x":1}"#);
        let next = entity::job_schedule::Entity::find_by_id("test.hourly".to_owned())
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .next_run_at;
        assert!(next > chrono::Utc::now() + chrono::Duration::minutes(59));

        // Idempotent enqueue, and enqueue joins the caller's transaction.
        assert!(
            jobs::enqueue(&db, "test.noop", json!({}), None, Some(&key))
                .await
                .unwrap()
                .is_none()
        );
        #[allow(clippy::disallowed_methods)] // a transaction rolled back on purpose
        let txn = db.begin().await.unwrap();
        jobs::enqueue(&txn, "test.rolled-back", json!({}), None, None)
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(
            count_with(&db, "test.rolled-back", JobStatus::Queued).await,
            0
        );

        // jobs.prune: DONE jobs finished more than 7 days ago go.
        let now = chrono::Utc::now();
        for (days, status) in [
            (8, JobStatus::Done),
            (1, JobStatus::Done),
            (30, JobStatus::Dead),
        ] {
            let id = jobs::enqueue(&db, "test.old", json!({}), None, None)
                .await
                .unwrap()
                .unwrap();
            job::Entity::update(job::ActiveModel {
                id: Set(id),
                status: Set(status),
                finished_at: Set(Some(now - chrono::Duration::days(days))),
                ..Default::default()
            })
            .exec(&db)
            .await
            .unwrap();
        }
        let cutoff = now - chrono::Duration::days(jobs::builtin::PRUNE_AFTER_DAYS);
        assert_eq!(jobs::builtin::prune(&db, cutoff).await.unwrap(), 1);
        assert_eq!(count_with(&db, "test.old", JobStatus::Done).await, 1);
        assert_eq!(
            count_with(&db, "test.old", JobStatus::Dead).await,
            1,
            "DEAD jobs are kept"
        );
    }
);

const JOBS: &str = "query($f: JobFilterInput, $after: String) { jobs(filter: $f, first: 1, after: $after) { totalCount nodes { id kind status attempts maxAttempts payload runAt lastError } pageInfo { hasNextPage endCursor } } }";

db_test!(
    admins_list_jobs_by_status_and_kind_and_others_are_forbidden,
    |app| async move {
        let db = app.db().clone();
        for (kind, n) in [("test.a", 1), ("test.a", 2), ("test.b", 3)] {
            jobs::enqueue(&db, kind, json!({ "n": n }), None, None)
                .await
                .unwrap();
        }
        let filter = json!({"f": {"status": ["QUEUED"], "kind": ["test.a"]}});
        let resp = app.admin(JOBS, filter.clone()).await;
        let page = &data(&resp)["jobs"];
        assert_eq!(page["totalCount"], 2);
        assert_eq!(page["nodes"][0]["kind"], "test.a");
        assert_eq!(page["nodes"][0]["status"], "QUEUED");
        assert_eq!(page["nodes"][0]["payload"], r#"{"n":1}"#);
        assert_eq!(page["nodes"][0]["maxAttempts"], jobs::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(page["pageInfo"]["hasNextPage"], true);
        let cursor = page["pageInfo"]["endCursor"].clone();
        let resp = app
            .admin(JOBS, json!({"f": filter["f"], "after": cursor}))
            .await;
        let page = &data(&resp)["jobs"];
        assert_eq!(page["nodes"][0]["payload"], r#"{"n":2}"#);
        assert_eq!(page["pageInfo"]["hasNextPage"], false);
        let resp = app
            .admin(JOBS, json!({"f": {"status": ["DEAD", "DONE"]}}))
            .await;
        assert_eq!(data(&resp)["jobs"]["totalCount"], 0);

        for role in [Role::Viewer, Role::Integration] {
            let resp = app
                .gql(&app.token(role, "someone"), JOBS, filter.clone())
                .await;
            assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{role:?}: {resp}");
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_stopped_runner() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let resp: serde_json::Value = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp,
        json!({"status": "ready"}),
        "no runner in this process"
    );

    let stop = CancellationToken::new();
    let runner = Runner::from_config(app.db().clone(), &app.state.config);
    let health = runner.health();
    let mut state = app.state.clone();
    state.jobs = Some(health.clone());
    let served = api::http::App {
        router: api::http::router(state.clone()),
        state,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    let server_stop = CancellationToken::new();
    tokio::spawn(served.serve(listener, server_stop.clone().cancelled_owned()));
    let task = runner.spawn(stop.clone());
    let readyz = || async {
        let resp = app.client.get(&url).send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    wait_until(Duration::from_secs(20), "the runner has ticked", || {
        let h = health.clone();
        async move { h.since_last_tick() < Duration::from_secs(5) }
    })
    .await;
    assert_eq!(
        readyz().await,
        (200, json!({"status": "ready", "jobs": "running"}))
    );
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        readyz().await,
        (503, json!({"status": "unavailable", "jobs": "stopped"}))
    );
    server_stop.cancel();
    app.cleanup().await;
}
