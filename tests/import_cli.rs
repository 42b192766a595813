//! `lockstep import FILE`, as an operator runs it: the real binary against
//! a test database, read back through GraphQL.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

fn lockstep(app: &TestApp) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lockstep"));
    cmd.env("LOCKSTEP_DATABASE_URL", db_url(app))
        .env("LOCKSTEP_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

fn db_url(app: &TestApp) -> String {
    app.state
        .config
        .database_url
        .clone()
        .expect("the test app has a database URL")
}

/// Runs `lockstep import FILE ARGS…` to the end: (exit code, stdout).
async fn import(app: &TestApp, file: &Path, args: &[&str]) -> (i32, String) {
    let out = lockstep(app)
        .arg("import")
        .arg(file)
        .args(args)
        .output()
        .await
        .expect("run lockstep import");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr ---\n{stderr}"),
    )
}

const LEAD: &str = "email firstName lastName score stage source
    externalIds { system id }
    account { name externalIds { system id } owner { email } }
    campaign { name cost channel kind }
    owner { email }
    touchpoints { occurredAt campaign { name } }
    stageHistory { fromStage toStage at reason actorUser { email } }
    convertedOpportunity {
        name amount stage closedAt sourcedBy createdAt
        externalIds { system id }
        owner { email }
        stageHistory { fromStage toStage at reason actorUser { email } }
    }";

async fn leads(app: &TestApp) -> Value {
    let resp = app
        .admin(
            &format!("{{ leads(first: 50, orderBy: {{field: EMAIL}}) {{ totalCount nodes {{ {LEAD} }} }} }}"),
            json!({}),
        )
        .await;
    data(&resp)["leads"].clone()
}

fn change(from: Value, to: &str, at: &str, reason: Value, actor: &str) -> Value {
    json!({"fromStage": from, "toStage": to, "at": at, "reason": reason, "actorUser": {"email": actor}})
}

db_test!(a_crm_export_reads_back_exactly_as_given, |app| async move {
    let file = fixture("small.jsonl");
    // Batches of one or two lines, four side by side: each line that names
    // a record of a batch still running must wait for it.
    let (code, out) = import(app, &file, &["--batch-size", "1", "--parallel", "4"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 11 of 11 lines"), "{out}");

    let leads_after_first = leads(app).await;
    let l = &leads_after_first;
    assert_eq!(l["totalCount"], 2, "{l:#}");
    let (sdr, ae) = ("sdr@acme.example", "ae@acme.example");
    let hank = &l["nodes"][0];
    assert_eq!(hank["email"], "hank@globex.example");
    assert_eq!(hank["firstName"], "Hank");
    assert_eq!(hank["lastName"], "Scorpio");
    assert_eq!(hank["score"], 40);
    assert_eq!(hank["source"], "WEB");
    assert_eq!(hank["stage"], "CONVERTED");
    assert_eq!(hank["externalIds"], json!([{"system": "crm", "id": "L-1"}]));
    assert_eq!(
        hank["account"],
        json!({"name": "Globex", "externalIds": [{"system": "crm", "id": "A-1"}], "owner": {"email": ae}})
    );
    assert_eq!(
        hank["campaign"],
        json!({"name": "Spring webinar", "cost": "1200.50", "channel": "WEB", "kind": "WEBINAR"})
    );
    assert_eq!(hank["owner"]["email"], sdr);
    assert_eq!(
        hank["touchpoints"],
        json!([{"occurredAt": "2026-02-02T15:00:00+00:00", "campaign": {"name": "Spring webinar"}}])
    );
    assert_eq!(
        hank["stageHistory"],
        json!([
            change(
                Value::Null,
                "INQUIRY",
                "2026-02-03T10:00:00+00:00",
                json!("webinar sign-up"),
                sdr
            ),
            change(
                json!("INQUIRY"),
                "MQL",
                "2026-02-05T10:00:00+00:00",
                json!("score 40"),
                sdr
            ),
            change(
                json!("MQL"),
                "SAL",
                "2026-02-06T10:00:00+00:00",
                Value::Null,
                sdr
            ),
            change(
                json!("SAL"),
                "SQL",
                "2026-02-10T10:00:00+00:00",
                json!("budget confirmed"),
                ae
            ),
            change(
                json!("SQL"),
                "CONVERTED",
                "2026-02-12T10:00:00+00:00",
                json!("qualified by AE"),
                ae
            ),
        ]),
        "{hank:#}"
    );
    let opp = &hank["convertedOpportunity"];
    assert_eq!(opp["name"], "Globex platform");
    assert_eq!(opp["amount"], "48000.00");
    assert_eq!(opp["stage"], "CLOSED_WON");
    assert_eq!(opp["closedAt"], "2026-04-01T10:00:00+00:00");
    assert_eq!(opp["sourcedBy"], "MARKETING");
    assert_eq!(opp["createdAt"], "2026-02-12T10:00:00+00:00");
    assert_eq!(opp["externalIds"], json!([{"system": "crm", "id": "O-1"}]));
    assert_eq!(opp["owner"]["email"], ae);
    assert_eq!(
        opp["stageHistory"],
        json!([
            change(
                Value::Null,
                "DISCOVERY",
                "2026-02-12T10:00:00+00:00",
                json!("qualified by AE"),
                ae
            ),
            change(
                json!("DISCOVERY"),
                "PROPOSAL",
                "2026-03-01T10:00:00+00:00",
                Value::Null,
                ae
            ),
            change(
                json!("PROPOSAL"),
                "CLOSED_WON",
                "2026-04-01T10:00:00+00:00",
                json!("signed"),
                ae
            ),
        ]),
        "{opp:#}"
    );
    let marge = &l["nodes"][1];
    assert_eq!(marge["email"], "marge@example.org");
    assert_eq!(marge["account"], Value::Null);
    assert_eq!(marge["stage"], "DISQUALIFIED");
    assert_eq!(
        marge["stageHistory"],
        json!([
            change(
                Value::Null,
                "INQUIRY",
                "2026-03-03T10:00:00+00:00",
                Value::Null,
                sdr
            ),
            change(
                json!("INQUIRY"),
                "DISQUALIFIED",
                "2026-03-04T10:00:00+00:00",
                json!("student"),
                sdr
            ),
        ])
    );

    // The same file again: every record matched by its external id, no
    // history entry nor touch twice.
    let (code, out) = import(app, &file, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(leads(app).await, leads_after_first);
    let resp = app
        .admin(
            "{ accounts(first: 5) { totalCount } campaigns(first: 5) { totalCount } users(first: 10) { totalCount } opportunities(first: 5) { totalCount } }",
            json!({}),
        )
        .await;
    let d = data(&resp);
    assert_eq!(d["accounts"]["totalCount"], 1);
    assert_eq!(d["campaigns"]["totalCount"], 1);
    assert_eq!(d["opportunities"]["totalCount"], 1);
    assert_eq!(d["users"]["totalCount"], 2, "{d:#}");
});

db_test!(
    refused_lines_are_listed_and_the_rest_imported,
    |app| async move {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mixed.jsonl");
        let lines = [
            r#"{"type":"user","system":"crm","externalId":"U-1","email":"sdr@acme.example","name":"Sam"}"#,
            r#"this is not json"#,
            r#"{"type":"widget","system":"crm"}"#,
            r#"{"type":"lead","system":"crm","externalId":"L-1","email":"a@x.example","accountExternalId":"A-404","createdAt":"2026-02-01T00:00:00Z"}"#,
            r#"{"type":"lead","system":"crm","externalId":"L-2","email":"b@x.example","createdAt":"2026-02-01T00:00:00Z","actorExternalId":"U-1"}"#,
            r#"{"type":"stage_change","system":"crm","leadExternalId":"L-2","changes":[{"toStage":"MQL","at":"2026-01-01T00:00:00Z"}]}"#,
            r#"{"type":"touchpoint","system":"crm","leadExternalId":"L-1","campaignExternalId":"C-1","occurredAt":"2026-02-02T00:00:00Z"}"#,
            "",
            r#"{"type":"lead","system":"crm","externalId":"L-3","email":"c@x.example","createdAt":"2026-02-01T00:00:00Z","ownerEmail":"sdr@acme.example"}"#,
            r#"{"type":"stage_change","system":"crm","leadExternalId":"L-3","changes":[{"toStage":"MQL","at":"2026-02-02T00:00:00Z"}]}"#,
            // The MQL change is there already (line 10): the refusal names the SAL one.
            r#"{"type":"stage_change","system":"crm","leadExternalId":"L-3","changes":[{"toStage":"MQL","at":"2026-02-02T00:00:00Z"},{"toStage":"SAL","at":"2026-01-15T00:00:00Z"}]}"#,
        ];
        std::fs::write(&file, lines.join("\n")).unwrap();
        let (code, out) = import(app, &file, &["--batch-size", "100"]).await;
        assert_eq!(code, 1, "refused lines make the exit status 1: {out}");
        let refused: Vec<&str> = out
            .lines()
            .filter(|l| l.trim_start().starts_with("line "))
            .collect();
        let numbers: Vec<&str> = refused
            .iter()
            .map(|l| l.trim_start().split(':').next().unwrap())
            .collect();
        assert_eq!(
            numbers,
            ["line 2", "line 3", "line 4", "line 6", "line 7", "line 11"],
            "{out}"
        );
        assert!(refused[0].contains("not JSON"), "{out}");
        assert!(refused[1].contains("unknown type `widget`"), "{out}");
        assert!(
            refused[2].contains("NOT_FOUND") && refused[2].contains("A-404"),
            "{out}"
        );
        assert!(refused[3].contains("BAD_USER_INPUT"), "{out}");
        assert!(refused[4].contains("NOT_FOUND"), "{out}");
        assert!(
            refused[5].contains("BAD_USER_INPUT") && refused[5].contains("changes[1]"),
            "{out}"
        );
        assert!(out.contains("refused 6 lines"), "{out}");

        let l = leads(app).await;
        let emails: Vec<&str> = l["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["email"].as_str().unwrap())
            .collect();
        assert_eq!(emails, ["b@x.example", "c@x.example"], "{l:#}");
        // The refused change left L-2's history as it was.
        assert_eq!(l["nodes"][0]["stageHistory"].as_array().unwrap().len(), 1);
        assert_eq!(l["nodes"][0]["stage"], "INQUIRY");
        assert_eq!(
            l["nodes"][0]["stageHistory"][0]["actorUser"]["email"],
            "sdr@acme.example"
        );
        assert_eq!(l["nodes"][1]["owner"]["email"], "sdr@acme.example");
        assert_eq!(l["nodes"][1]["stage"], "MQL");
        assert_eq!(l["nodes"][1]["stageHistory"].as_array().unwrap().len(), 2);
    }
);

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db()
        .query_one_raw(Statement::from_string(app.db().get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

const TABLES: &[&str] = &[
    "users",
    "accounts",
    "campaigns",
    "leads",
    "opportunities",
    "stage_changes",
    "touchpoints",
    "external_ids",
];

async fn counts(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push(count(app, &format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out
}

async fn metrics(app: &TestApp) -> Value {
    let q = r#"{ metrics(period: {from: "2025-07-01T00:00:00Z", to: "2026-11-01T00:00:00Z"}) { funnel { stages { stage reached conversion medianHoursToNext } inquiryToWon } winRate averageDealSize salesCycle attribution(model: LINEAR) { rows { revenue } total } } }"#;
    let resp = app.admin(q, json!({})).await;
    data(&resp)["metrics"].clone()
}

db_test!(
    a_killed_import_rerun_ends_like_a_clean_one,
    |app| async move {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seed.jsonl");
        let out = lockstep(app)
            .args(["seed", "--leads", "300", "--seed", "7", "--jsonl"])
            .arg(&file)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(&file).unwrap();
        let lines_of = |ty: &str| {
            text.lines()
                .filter(|l| l.contains(&format!(r#""type":"{ty}""#)))
                .count() as i64
        };
        assert_eq!(lines_of("lead"), 300);

        // SIGKILL once a few batches are in. Small batches, four side by
        // side: a lead's lines often span two batches, which must then run
        // in file order.
        let mut child = lockstep(app)
            .arg("import")
            .arg(&file)
            .args(["--batch-size", "20", "--parallel", "4"])
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let n = count(app, "SELECT COUNT(*) FROM leads").await;
            if n >= 40 {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "import ended early");
            assert!(started.elapsed() < Duration::from_secs(180), "no progress");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().await.unwrap();
        let partial = count(app, "SELECT COUNT(*) FROM leads").await;
        assert!(partial < 300, "killed midway: {partial} leads");

        let (code, out) = import(app, &file, &["--batch-size", "20", "--parallel", "4"]).await;
        assert_eq!(code, 0, "{out}");

        // The reference: one batch at a time.
        let clean = TestApp::spawn(app.backend).await;
        let (code, out) = import(&clean, &file, &["--batch-size", "50", "--parallel", "1"]).await;
        assert_eq!(code, 0, "{out}");

        let (rerun_counts, clean_counts) = (counts(app).await, counts(&clean).await);
        assert_eq!(rerun_counts, clean_counts, "{TABLES:?}");
        // Each record once: one external id per keyed line.
        for (kind, ty) in [
            ("LEAD", "lead"),
            ("OPPORTUNITY", "opportunity"),
            ("ACCOUNT", "account"),
            ("CAMPAIGN", "campaign"),
            ("USER", "user"),
        ] {
            let n = count(
                app,
                &format!("SELECT COUNT(*) FROM external_ids WHERE record_kind = '{kind}'"),
            )
            .await;
            assert_eq!(n, lines_of(ty), "{kind}");
        }
        assert_eq!(rerun_counts[3], 300);
        assert_eq!(metrics(app).await, metrics(&clean).await);
        clean.cleanup().await;
    }
);

/// A user with the external id `crm:U-9`, made by an import.
async fn crm_user(app: &TestApp) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        r#"{"type":"user","system":"crm","externalId":"U-9","email":"nine@acme.example","name":"Nine"}"#,
    )
    .unwrap();
    let (code, out) = import(app, &file, &[]).await;
    assert_eq!(code, 0, "{out}");
    let resp = app
        .admin(
            r#"{ users(first: 5, filter: {search: "nine@"}) { nodes { id } } }"#,
            json!({}),
        )
        .await;
    data(&resp)["users"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

db_test!(actor_external_id_names_the_acting_user, |app| async move {
    let nine = crm_user(app).await;
    let ext = json!({"system": "CRM", "id": "U-9"});
    let resp = app
        .admin(
            "mutation($i: LeadInput!) { createLead(input: $i) { id stageHistory { actorUser { id } } } }",
            json!({"i": {"email": "x@y.example", "createdAt": "2026-03-01T00:00:00Z", "actorExternalId": ext}}),
        )
        .await;
    let d = data(&resp)["createLead"].clone();
    assert_eq!(d["stageHistory"][0]["actorUser"]["id"], nine.as_str());
    let lead = d["id"].as_str().unwrap().to_owned();

    const CHANGE: &str = "mutation($id: ID!, $u: ID, $e: ExternalIdInput) { changeLeadStage(id: $id, to: MQL, at: \"2026-03-02T00:00:00Z\", actorUserId: $u, actorExternalId: $e) { stageHistory { actorUser { id } } } }";
    // Both ids: which one is meant is not for Lockstep to guess.
    let both = app
        .admin(CHANGE, json!({"id": lead, "u": nine, "e": ext}))
        .await;
    assert_eq!(error_code(&both), Some("BAD_USER_INPUT"), "{both}");
    let unknown = app
        .admin(
            CHANGE,
            json!({"id": lead, "e": {"system": "crm", "id": "U-404"}}),
        )
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"), "{unknown}");
    let member = app
        .gql(
            &app.token(Role::Member, &nine),
            CHANGE,
            json!({"id": lead, "e": ext}),
        )
        .await;
    assert_eq!(error_code(&member), Some("FORBIDDEN"), "{member}");
    let integration = app.token(Role::Integration, "crm-sync");
    let ok = app
        .gql(&integration, CHANGE, json!({"id": lead, "e": ext}))
        .await;
    assert_eq!(
        data(&ok)["changeLeadStage"]["stageHistory"][1]["actorUser"]["id"],
        nine.as_str()
    );

    // importStageHistory items and convertLead take it too.
    let resp = app
        .admin(
            "mutation($id: ID!, $c: [ImportedStageChangeInput!]!) { importStageHistory(leadId: $id, changes: $c) { imported } }",
            json!({"id": lead, "c": [
                {"toStage": "SAL", "at": "2026-03-03T00:00:00Z", "actorExternalId": ext},
                {"toStage": "SQL", "at": "2026-03-04T00:00:00Z", "actorExternalId": {"system": "crm", "id": "U-404"}},
            ]}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("NOT_FOUND"), "{resp}");
    assert!(resp.to_string().contains("changes[1]"), "{resp}");
    let resp = app
        .admin(
            "mutation($id: ID!, $c: [ImportedStageChangeInput!]!) { importStageHistory(leadId: $id, changes: $c) { imported } }",
            json!({"id": lead, "c": [{"toStage": "SAL", "at": "2026-03-03T00:00:00Z", "actorExternalId": ext}]}),
        )
        .await;
    assert_eq!(data(&resp)["importStageHistory"]["imported"], 1);
    let resp = app
        .admin(
            "mutation { createAccount(input: {name: \"Acme\", segment: SMB}) { id } }",
            json!({}),
        )
        .await;
    let account = data(&resp)["createAccount"]["id"].clone();
    let resp = app
        .admin(
            "mutation($id: ID!, $a: ID!, $e: ExternalIdInput) { convertLead(id: $id, opportunity: {name: \"Deal\", accountId: $a, amount: \"10\"}, at: \"2026-03-05T00:00:00Z\", actorExternalId: $e) { lead { stageHistory { toStage actorUser { id } } } opportunity { stageHistory { actorUser { id } } } } }",
            json!({"id": lead, "a": account, "e": ext}),
        )
        .await;
    let d = data(&resp)["convertLead"].clone();
    let history = d["lead"]["stageHistory"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["toStage"], "CONVERTED");
    assert_eq!(history.last().unwrap()["actorUser"]["id"], nine.as_str());
    assert_eq!(
        d["opportunity"]["stageHistory"][0]["actorUser"]["id"],
        nine.as_str()
    );
});
