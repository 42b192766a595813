//! CRM facts importable: who made each change, why, external ids of
//! converted opportunities, and a record's whole history in one call.

use crate::db_test;
use crate::harness::*;
use chrono::{DateTime, TimeZone, Utc};
use entity::enums::Role;
use serde_json::{Value, json};

fn t(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
}

fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

const HISTORY: &str = "stageHistory { fromStage toStage at reason actor actorUser { id } }";

async fn user(app: &TestApp, email: &str, role: &str) -> String {
    let resp = app
        .admin(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({"i": {"email": email, "name": email, "role": role}}),
        )
        .await;
    data(&resp)["createUser"]["id"].as_str().unwrap().to_owned()
}

/// The (fromStage, toStage, at, reason, actorUser id) of a history.
fn entries(history: &Value) -> Vec<(Value, String, DateTime<Utc>, Value, Value)> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["fromStage"].clone(),
                c["toStage"].as_str().unwrap().to_owned(),
                ts(&c["at"]),
                c["reason"].clone(),
                c["actorUser"]["id"].clone(),
            )
        })
        .collect()
}

db_test!(an_imported_record_reads_back_as_given, |app| async move {
    let sdr = user(app, "sdr@example.com", "MEMBER").await;
    let ae = user(app, "ae@example.com", "MEMBER").await;
    let resp = app
        .admin(
            "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
            json!({"i": {"name": "Acme", "segment": "SMB"}}),
        )
        .await;
    let acct = data(&resp)["createAccount"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let integration = app.token(Role::Integration, "hubspot-sync");
    // Creation: who and why.
    let resp = app
        .gql(
            &integration,
            "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
            json!({"i": {"email": "buyer@acme.io", "accountId": acct, "createdAt": t(1, 2, 0),
                    "reason": "form fill", "actorUserId": sdr,
                    "externalIds": [{"system": "hubspot", "id": "c-1"}]}}),
        )
        .await;
    let lead = data(&resp)["createLead"]["id"].as_str().unwrap().to_owned();
    // The history up to SQL in one call, each change by its own user.
    let resp = app
        .gql(
            &integration,
            "mutation($id: ID!, $c: [ImportedStageChangeInput!]!) { importStageHistory(leadId: $id, changes: $c) { imported lead { stage } } }",
            json!({"id": lead, "c": [
                {"fromStage": "INQUIRY", "toStage": "MQL", "at": t(1, 3, 0), "reason": "score 80", "actorUserId": sdr},
                {"toStage": "SAL", "at": t(1, 4, 0), "reason": "accepted", "actorUserId": ae},
                {"fromStage": "SAL", "toStage": "SQL", "at": t(1, 4, 0), "reason": "budget confirmed", "actorUserId": ae},
            ]}),
        )
        .await;
    assert_eq!(data(&resp)["importStageHistory"]["imported"], 3);
    assert_eq!(data(&resp)["importStageHistory"]["lead"]["stage"], "SQL");
    // Conversion: why, who, and the CRM's id of the deal it creates.
    let resp = app
        .gql(
            &integration,
            "mutation($id: ID!, $u: ID, $at: DateTime) { convertLead(id: $id, at: $at, reason: \"demo booked\", actorUserId: $u,
               opportunity: {name: \"Acme deal\", amount: \"1200.50\", externalIds: [{system: \"hubspot\", id: \"d-9\"}]}) { opportunity { id } } }",
            json!({"id": lead, "u": ae, "at": t(1, 5, 0)}),
        )
        .await;
    let opp = data(&resp)["convertLead"]["opportunity"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another system's id added later.
    let resp = app
        .gql(
            &integration,
            "mutation($id: ID!) { updateOpportunity(id: $id, input: {externalIds: [{system: \"salesforce\", id: \"006X\"}, {system: \"hubspot\", id: \"d-9\"}]}) { id } }",
            json!({"id": opp}),
        )
        .await;
    data(&resp);
    let resp = app
        .gql(
            &integration,
            "mutation($id: ID!, $c: [ImportedStageChangeInput!]!) { importStageHistory(opportunityId: $id, changes: $c) { imported opportunity { stage closedAt } } }",
            json!({"id": opp, "c": [
                {"fromStage": "DISCOVERY", "toStage": "PROPOSAL", "at": t(1, 10, 0), "reason": "sent", "actorUserId": ae},
                {"toStage": "CLOSED_WON", "at": t(2, 1, 12), "reason": "signed", "actorUserId": ae},
            ]}),
        )
        .await;
    let o = &data(&resp)["importStageHistory"]["opportunity"];
    assert_eq!(o["stage"], "CLOSED_WON");
    assert_eq!(ts(&o["closedAt"]), t(2, 1, 12));
    // Read back exactly as given.
    let resp = app
        .admin(
            &format!("query($l: ID!, $o: ID!) {{ lead(id: $l) {{ {HISTORY} externalIds {{ system id }} }} opportunity(id: $o) {{ {HISTORY} externalIds {{ system id }} }} }}"),
            json!({"l": lead, "o": opp}),
        )
        .await;
    let d = data(&resp);
    assert_eq!(
        entries(&d["lead"]["stageHistory"]),
        vec![
            (
                Value::Null,
                "INQUIRY".into(),
                t(1, 2, 0),
                json!("form fill"),
                json!(sdr)
            ),
            (
                json!("INQUIRY"),
                "MQL".into(),
                t(1, 3, 0),
                json!("score 80"),
                json!(sdr)
            ),
            (
                json!("MQL"),
                "SAL".into(),
                t(1, 4, 0),
                json!("accepted"),
                json!(ae)
            ),
            (
                json!("SAL"),
                "SQL".into(),
                t(1, 4, 0),
                json!("budget confirmed"),
                json!(ae)
            ),
            (
                json!("SQL"),
                "CONVERTED".into(),
                t(1, 5, 0),
                json!("demo booked"),
                json!(ae)
            ),
        ]
    );
    assert!(
        d["lead"]["stageHistory"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["actor"] == "hubspot-sync"),
        "the token's subject stays the recorder: {d}"
    );
    assert_eq!(
        entries(&d["opportunity"]["stageHistory"]),
        vec![
            (
                Value::Null,
                "DISCOVERY".into(),
                t(1, 5, 0),
                json!("demo booked"),
                json!(ae)
            ),
            (
                json!("DISCOVERY"),
                "PROPOSAL".into(),
                t(1, 10, 0),
                json!("sent"),
                json!(ae)
            ),
            (
                json!("PROPOSAL"),
                "CLOSED_WON".into(),
                t(2, 1, 12),
                json!("signed"),
                json!(ae)
            ),
        ]
    );
    assert_eq!(
        d["opportunity"]["externalIds"],
        json!([{"system": "hubspot", "id": "d-9"}, {"system": "salesforce", "id": "006X"}])
    );
    // The CRM's id now finds the converted deal: no duplicate.
    let resp = app
        .gql(
            &integration,
            "mutation($a: ID!) { upsertOpportunity(externalId: {system: \"hubspot\", id: \"d-9\"}, input: {name: \"Acme deal\", accountId: $a, amount: \"1200.50\"}) { id } }",
            json!({"a": acct}),
        )
        .await;
    assert_eq!(data(&resp)["upsertOpportunity"]["id"], json!(opp));
});

db_test!(imported_history_is_checked_as_a_chain, |app| async move {
    let rep = user(app, "rep@example.com", "MEMBER").await;
    let resp = app
        .admin(
            "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
            json!({"i": {"email": "x@example.org", "createdAt": t(1, 2, 0)}}),
        )
        .await;
    let lead = data(&resp)["createLead"]["id"].as_str().unwrap().to_owned();
    let import = "mutation($id: ID!, $c: [ImportedStageChangeInput!]!) { importStageHistory(leadId: $id, changes: $c) { imported } }";
    // A link out of order: nothing of the call is written.
    let resp = app
        .admin(
            import,
            json!({"id": lead, "c": [
                {"toStage": "MQL", "at": t(1, 3, 0)},
                {"toStage": "SAL", "at": t(1, 2, 12)},
            ]}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["field"], "changes[1].at");
    // A `fromStage` the chain does not have.
    let resp = app
        .admin(
            import,
            json!({"id": lead, "c": [
                {"toStage": "MQL", "at": t(1, 3, 0)},
                {"fromStage": "INQUIRY", "toStage": "SAL", "at": t(1, 4, 0)},
            ]}),
        )
        .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["field"],
        "changes[1].fromStage"
    );
    // Not a lead stage; CONVERTED goes through convertLead.
    let resp = app
        .admin(
            import,
            json!({"id": lead, "c": [{"toStage": "PROPOSAL", "at": t(1, 3, 0)}]}),
        )
        .await;
    assert_eq!(resp["errors"][0]["extensions"]["field"], "changes[0].to");
    let resp = app
        .admin(
            &format!("query($l: ID!) {{ lead(id: $l) {{ stage {HISTORY} }} }}"),
            json!({"l": lead}),
        )
        .await;
    assert_eq!(data(&resp)["lead"]["stage"], "INQUIRY");
    assert_eq!(
        data(&resp)["lead"]["stageHistory"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Only ADMIN and INTEGRATION name the actor or import history.
    let member = app.token(Role::Member, &rep);
    let resp = app
        .gql(
            &member,
            "mutation($id: ID!, $u: ID) { changeLeadStage(id: $id, to: MQL, actorUserId: $u) { id } }",
            json!({"id": lead, "u": rep}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    let resp = app
        .gql(
            &member,
            import,
            json!({"id": lead, "c": [{"toStage": "MQL", "at": t(1, 3, 0)}]}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    let resp = app
        .gql(
            &member,
            "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
            json!({"i": {"email": "y@example.org", "actorUserId": rep}}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    // An unknown user.
    let resp = app
        .admin(
            "mutation($id: ID!, $u: ID) { changeLeadStage(id: $id, to: MQL, actorUserId: $u) { id } }",
            json!({"id": lead, "u": "00000000-0000-0000-0000-00000000abcd"}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("NOT_FOUND"), "{resp}");
});
