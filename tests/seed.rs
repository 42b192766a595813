//! The seed is deterministic and its histories are consistent.

use crate::db_test;
use crate::harness::*;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

async fn fingerprint(app: &TestApp) -> Vec<String> {
    let db = app.db();
    let mut out = Vec::new();
    for sql in [
        "SELECT stage, COUNT(*) FROM leads GROUP BY stage ORDER BY stage",
        "SELECT stage, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM opportunities GROUP BY stage ORDER BY stage",
        "SELECT COUNT(*) FROM touchpoints",
        "SELECT MIN(email), MAX(email) FROM leads",
    ] {
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
        out.push(format!("{sql}: {}", rows.len()));
        for r in rows {
            out.push(
                format!("{r:?}")
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect(),
            );
        }
    }
    out
}

db_test!(the_same_seed_gives_the_same_data, |app| async move {
    let opts = tools::seed::SeedOptions {
        leads: 400,
        seed: 7,
        progress: false,
    };
    let report = tools::seed::seed(app.db(), &opts).await.unwrap();
    assert_eq!(report.leads, 400);
    assert!(
        report.touchpoints > 600 && report.touchpoints < 2000,
        "about three touches a lead: {report:?}"
    );
    let other = TestApp::spawn(app.backend).await;
    tools::seed::seed(other.db(), &opts).await.unwrap();
    assert_eq!(fingerprint(app).await, fingerprint(&other).await);
    other.cleanup().await;
    // Every lead's stage is its last stage change; conversions link both ways.
    let db = app.db();
    let bad = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM leads l WHERE l.stage <> (SELECT sc.to_stage FROM stage_changes sc WHERE sc.lead_id = l.id ORDER BY sc.at DESC, sc.from_stage IS NULL LIMIT 1) \
             OR (l.converted_opportunity_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM opportunities o WHERE o.id = l.converted_opportunity_id AND o.lead_id = l.id))",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bad.try_get::<i64>("", "n").unwrap(), 0);
    // The metrics read it: a funnel over the history.
    let resp = app
        .admin(r#"{ metrics(period: {from: "2025-01-01T00:00:00Z", to: "2026-11-01T00:00:00Z"}) { funnel { stages { reached } } winRate } }"#, json!({}))
        .await;
    let reached = data(&resp)["metrics"]["funnel"]["stages"][0]["reached"]
        .as_i64()
        .unwrap();
    assert_eq!(reached, 400);
});

db_test!(demo_data_names_the_banner_admin, |app| async move {
    tools::seed::demo(app.db()).await.unwrap();
    let token = app.token(entity::enums::Role::Admin, tools::seed::DEMO_ADMIN_EMAIL);
    let resp = app
        .gql(
            &token,
            "{ me { user { email role } } leads { totalCount } opportunities { totalCount } }",
            json!({}),
        )
        .await;
    let d = data(&resp);
    assert_eq!(d["me"]["user"]["role"], "ADMIN");
    assert!(d["leads"]["totalCount"].as_i64().unwrap() > 100);
    assert!(d["opportunities"]["totalCount"].as_i64().unwrap() > 10);
    assert!(!tools::seed::is_empty(app.db()).await.unwrap());
});

db_test!(
    seed_leaves_planner_statistics_for_every_table,
    |app| async move {
        let opts = tools::seed::SeedOptions {
            leads: 200,
            seed: 3,
            progress: false,
        };
        tools::seed::seed(app.db(), &opts).await.unwrap();
        let db = app.db();
        let backend = db.get_database_backend();
        let sql = match app.backend {
            // VACUUM (ANALYZE) of the raw tables, not only of the rollups: row
            // estimates and column statistics.
            Backend::Postgres => {
                "SELECT c.relname AS t, CAST(c.reltuples AS BIGINT) AS n, \
             (SELECT COUNT(*) FROM pg_stat_user_tables u WHERE u.relid = c.oid AND u.last_vacuum IS NOT NULL) AS vacuumed, \
             (SELECT COUNT(*) FROM pg_stats s WHERE s.tablename = c.relname) AS columns \
             FROM pg_class c WHERE c.relname IN ('leads', 'stage_changes', 'opportunities') ORDER BY c.relname"
            }
            Backend::Sqlite => {
                "SELECT tbl AS t, COUNT(*) AS n, 1 AS vacuumed, 1 AS columns FROM sqlite_stat1 \
             WHERE tbl IN ('leads', 'stage_changes', 'opportunities') GROUP BY tbl ORDER BY tbl"
            }
        };
        let rows = db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
        let tables: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "t").unwrap())
            .collect();
        assert_eq!(tables, ["leads", "opportunities", "stage_changes"]);
        for r in &rows {
            let t = r.try_get::<String>("", "t").unwrap();
            let n = r.try_get::<i64>("", "n").unwrap();
            let vacuumed = r.try_get::<i64>("", "vacuumed").unwrap();
            let columns = r.try_get::<i64>("", "columns").unwrap();
            assert!(n > 0, "{t}: no row estimate ({n})");
            assert!(vacuumed > 0, "{t}: not vacuumed");
            assert!(columns > 0, "{t}: no column statistics");
            if t == "leads" && app.backend == Backend::Postgres {
                assert_eq!(n, 200, "leads: the estimate is the real count");
            }
        }
    }
);
