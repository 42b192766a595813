//! `lockstep bench-reads`' own logic: the rows it compares across systems
//! and the summary it prints (the load itself is measured, not tested).

use serde_json::json;
use tools::read_bench::{ReadRow, System, markdown, rows_of};

#[test]
fn rows_compare_across_systems() {
    let lockstep = json!({"data": {"lead": {"id": "a", "email": "e", "stage": "MQL",
        "stageHistory": [{"fromStage": null, "toStage": "INQUIRY", "at": "2026-01-02T10:00:00+00:00"}]}}});
    let postgraphile = json!({"data": {"lead": {"id": "a", "email": "e", "stage": "MQL",
        "stageHistory": {"nodes": [{"fromStage": null, "toStage": "INQUIRY", "at": "2026-01-02T10:00:00.000000+00:00"}]}}}});
    assert_eq!(rows_of(&lockstep), rows_of(&postgraphile));
    assert_eq!(rows_of(&lockstep).len(), 2);
    let page = |account: &str| {
        json!({"data": {"leads": {"nodes": [{"id": "a", "email": "e", "stage": "MQL",
            "createdAt": "2026-01-02T10:00:00Z", "account": {"name": account}, "owner": null}]}}})
    };
    let graphile = json!({"data": {"leads": {"nodes": [{"id": "a", "email": "e", "stage": "MQL",
        "createdAt": "2026-01-02T10:00:00+00:00", "accountByAccountId": {"name": "X"}, "userByOwnerId": null}]}}});
    assert_eq!(rows_of(&page("X")), rows_of(&graphile));
    assert_ne!(rows_of(&page("Y")), rows_of(&graphile));
}

#[test]
fn the_summary_gives_ranges_and_ratios() {
    let r = |system, round, per_sec| ReadRow {
        workload: "w",
        system,
        clients: 8,
        round,
        requests: 1,
        per_sec,
        p50_ms: 1.0,
        p99_ms: 2.0,
        errors: 0,
    };
    let md = markdown(&[
        r(System::Lockstep, 1, 200.0),
        r(System::Lockstep, 2, 300.0),
        r(System::PostGraphile, 1, 100.0),
        r(System::PostGraphile, 2, 150.0),
        r(System::Sql, 1, 1000.0),
    ]);
    assert!(
        md.contains("| w | 8 | 200–300 | 100–150 | 1000–1000 | 2.00× | 0.30× | 2.0 / 2.0 |"),
        "{md}"
    );
}
