//! Opportunities and campaigns: money, currency, stages, backfill, upserts.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: OpportunityInput!) { createOpportunity(input: $i) { id name amount currency stage closedAt lostReason stageHistory { fromStage toStage at } } }";

async fn account(app: &TestApp) -> String {
    let resp = app
        .admin(
            r#"mutation { createAccount(input: {name: "Acme", domain: "acme.com"}) { id } }"#,
            json!({}),
        )
        .await;
    data(&resp)["createAccount"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn create(app: &TestApp, token: &str, input: Value) -> Value {
    app.gql(token, CREATE, json!({"i": input})).await
}

db_test!(
    amounts_are_exact_decimals_in_the_one_currency,
    |app| async move {
        let acct = account(app).await;
        let admin = app.admin_token();
        let ok = create(
            app,
            &admin,
            json!({"name": "Big deal", "accountId": acct, "amount": "12500.50"}),
        )
        .await;
        let o = &data(&ok)["createOpportunity"];
        assert_eq!(
            (
                o["amount"].as_str(),
                o["currency"].as_str(),
                o["stage"].as_str()
            ),
            (Some("12500.50"), Some("USD"), Some("DISCOVERY"))
        );
        for (amount, currency) in [
            ("-1", "USD"),
            ("1.005", "USD"),
            ("10", "EUR"),
            ("10", "dollars"),
        ] {
            let resp = create(
                app,
                &admin,
                json!({"name": "x", "accountId": acct, "amount": amount, "currency": currency}),
            )
            .await;
            assert_eq!(
                error_code(&resp),
                Some("BAD_USER_INPUT"),
                "{amount} {currency}: {resp}"
            );
        }
        let missing = create(app, &admin, json!({"name": "x", "accountId": "00000000-0000-0000-0000-000000000001", "amount": "1"})).await;
        assert_eq!(error_code(&missing), Some("NOT_FOUND"));
    }
);

db_test!(
    stages_are_recorded_and_closed_deals_are_final,
    |app| async move {
        let acct = account(app).await;
        let admin = app.admin_token();
        let id = data(
            &create(
                app,
                &admin,
                json!({"name": "Deal", "accountId": acct, "amount": "100"}),
            )
            .await,
        )["createOpportunity"]["id"]
            .clone();
        let change = "mutation($id: ID!, $to: OpportunityStage!, $lost: String) { changeOpportunityStage(id: $id, to: $to, lostReason: $lost, reason: \"call\") { stage closedAt lostReason isClosed stageHistory { fromStage toStage reason } } }";
        let moved = app.admin(change, json!({"id": id, "to": "PROPOSAL"})).await;
        assert_eq!(
            data(&moved)["changeOpportunityStage"]["stageHistory"][1],
            json!({"fromStage": "DISCOVERY", "toStage": "PROPOSAL", "reason": "call"})
        );
        let no_reason = app
            .admin(change, json!({"id": id, "to": "CLOSED_LOST"}))
            .await;
        assert_eq!(error_code(&no_reason), Some("BAD_USER_INPUT"));
        let lost = app
            .admin(
                change,
                json!({"id": id, "to": "CLOSED_LOST", "lost": "price"}),
            )
            .await;
        let l = &data(&lost)["changeOpportunityStage"];
        assert_eq!(
            (
                l["stage"].as_str(),
                l["lostReason"].as_str(),
                l["isClosed"].as_bool()
            ),
            (Some("CLOSED_LOST"), Some("price"), Some(true))
        );
        assert!(l["closedAt"].is_string());
        let reopen = app
            .admin(change, json!({"id": id, "to": "NEGOTIATION"}))
            .await;
        assert_eq!(error_code(&reopen), Some("CONFLICT"));
    }
);

db_test!(
    crm_history_is_backfilled_and_upserts_are_idempotent,
    |app| async move {
        let acct = account(app).await;
        let sf = app.token(Role::Integration, "salesforce");
        let imported = create(app, &sf, json!({"name": "Won 2025", "accountId": acct, "amount": "5000", "stage": "CLOSED_WON", "createdAt": "2025-02-01T00:00:00Z", "closedAt": "2025-03-15T12:00:00Z"})).await;
        let o = &data(&imported)["createOpportunity"];
        assert_eq!(o["closedAt"], "2025-03-15T12:00:00+00:00");
        assert_eq!(
            o["stageHistory"],
            json!([
                {"fromStage": null, "toStage": "DISCOVERY", "at": "2025-02-01T00:00:00+00:00"},
                {"fromStage": "DISCOVERY", "toStage": "CLOSED_WON", "at": "2025-03-15T12:00:00+00:00"}
            ])
        );
        let closed_before_created = create(app, &sf, json!({"name": "x", "accountId": acct, "amount": "1", "stage": "CLOSED_WON", "createdAt": "2025-02-01T00:00:00Z", "closedAt": "2025-01-01T00:00:00Z"})).await;
        assert_eq!(error_code(&closed_before_created), Some("BAD_USER_INPUT"));
        let resp = app
            .gql(
                &app.token(Role::Viewer, "bi"),
                CREATE,
                json!({"i": {"name": "x", "accountId": acct, "amount": "1"}}),
            )
            .await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"));
        let upsert = r#"mutation($i: OpportunityInput!) { upsertOpportunity(externalId: {system: "salesforce", id: "006A"}, input: $i) { id amount stage } }"#;
        let a = app
            .gql(
                &sf,
                upsert,
                json!({"i": {"name": "Sync", "accountId": acct, "amount": "100"}}),
            )
            .await;
        let b = app.gql(&sf, upsert, json!({"i": {"name": "Sync", "accountId": acct, "amount": "150", "stage": "PROPOSAL"}})).await;
        assert_eq!(
            data(&a)["upsertOpportunity"]["id"],
            data(&b)["upsertOpportunity"]["id"]
        );
        assert_eq!(data(&b)["upsertOpportunity"]["amount"], "150.00");
        assert_eq!(data(&b)["upsertOpportunity"]["stage"], "PROPOSAL");
        let list = app
        .admin("{ opportunities(orderBy: {field: AMOUNT, direction: DESC}, first: 1) { totalCount nodes { name } pageInfo { hasNextPage } } account: accounts { nodes { opportunities { name } } } }", json!({}))
        .await;
        let d = data(&list);
        assert_eq!(d["opportunities"]["totalCount"], 2);
        assert_eq!(d["opportunities"]["nodes"], json!([{"name": "Won 2025"}]));
        assert_eq!(d["opportunities"]["pageInfo"]["hasNextPage"], true);
        assert_eq!(
            d["account"]["nodes"][0]["opportunities"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let won = app
            .admin(
                "{ opportunities(filter: {stage: [CLOSED_WON]}) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(data(&won)["opportunities"]["totalCount"], 1);
    }
);

db_test!(
    campaigns_are_created_by_marketing_roles_and_listed,
    |app| async move {
        let q =
            "mutation($i: CampaignInput!) { createCampaign(input: $i) { name channel kind cost } }";
        let input = json!({"name": "Spring webinar", "channel": "EMAIL", "kind": "WEBINAR", "cost": "2500.00", "startsAt": "2026-03-01T00:00:00Z"});
        let resp = app
            .gql(
                &app.token(Role::Integration, "hubspot"),
                q,
                json!({"i": input}),
            )
            .await;
        assert_eq!(data(&resp)["createCampaign"]["cost"], "2500.00");
        let resp = app
            .gql(&app.token(Role::Viewer, "bi"), q, json!({"i": input}))
            .await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"));
        let bad = json!({"name": "x", "channel": "EMAIL", "kind": "AD", "startsAt": "2026-03-01T00:00:00Z", "endsAt": "2026-02-01T00:00:00Z"});
        assert_eq!(
            error_code(&app.admin(q, json!({"i": bad})).await),
            Some("BAD_USER_INPUT")
        );
        let list = app.admin("{ campaigns(filter: {kind: [WEBINAR], search: \"spring\"}) { totalCount nodes { name } } }", json!({})).await;
        assert_eq!(
            data(&list)["campaigns"]["nodes"],
            json!([{"name": "Spring webinar"}])
        );
    }
);
