//! Accounts: create, validate, list, paginate, upsert by external id.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: AccountInput!) { createAccount(input: $i) { id name domain segment annualRevenue status becameCustomerAt } }";

async fn create(app: &TestApp, input: Value) -> Value {
    app.admin(CREATE, json!({ "i": input })).await
}

db_test!(accounts_are_validated_and_normalized, |app| async move {
    let resp = create(app, json!({"name": " Acme ", "domain": "https://www.ACME.com/", "segment": "ENTERPRISE", "annualRevenue": "1250000.50", "status": "CUSTOMER"})).await;
    let a = &data(&resp)["createAccount"];
    assert_eq!(a["name"], "Acme");
    assert_eq!(a["domain"], "acme.com");
    assert_eq!(a["annualRevenue"], "1250000.50");
    assert!(
        a["becameCustomerAt"].is_string(),
        "a customer gets becameCustomerAt: {a}"
    );
    // Same domain again: CONFLICT naming the field.
    let dup = create(app, json!({"name": "Acme 2", "domain": "acme.com"})).await;
    assert_eq!(error_code(&dup), Some("CONFLICT"), "{dup}");
    assert_eq!(dup["errors"][0]["extensions"]["field"], "domain");
    for bad in [
        json!({"name": ""}),
        json!({"name": "X", "domain": "not a domain"}),
        json!({"name": "X", "annualRevenue": "-5"}),
        json!({"name": "X", "annualRevenue": "1.005"}),
        json!({"name": "X", "employees": -3}),
    ] {
        let resp = create(app, bad.clone()).await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{bad}: {resp}");
    }
    let missing_owner = create(
        app,
        json!({"name": "X", "ownerId": "00000000-0000-0000-0000-000000000001"}),
    )
    .await;
    assert_eq!(error_code(&missing_owner), Some("NOT_FOUND"));
});

db_test!(
    accounts_filter_order_and_paginate_with_stable_cursors,
    |app| async move {
        for (name, seg) in [
            ("Delta", "SMB"),
            ("Alpha", "SMB"),
            ("Echo", "ENTERPRISE"),
            ("Bravo", "MID_MARKET"),
            ("Charlie", "SMB"),
        ] {
            data(&create(app, json!({"name": name, "segment": seg, "domain": format!("{}.com", name.to_lowercase())})).await);
        }
        let q = "query($after: String, $f: AccountFilterInput, $o: AccountOrderInput) { accounts(first: 2, after: $after, filter: $f, orderBy: $o) { totalCount nodes { name } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
        let page1 = app.admin(q, json!({})).await;
        let c = &data(&page1)["accounts"];
        assert_eq!(c["totalCount"], 5);
        assert_eq!(c["nodes"], json!([{"name": "Alpha"}, {"name": "Bravo"}]));
        assert_eq!(c["pageInfo"]["hasNextPage"], true);
        let cursor = c["pageInfo"]["endCursor"].clone();
        // An insert before the cursor does not shift the next page.
        data(&create(app, json!({"name": "Aardvark"})).await);
        let page2 = app.admin(q, json!({"after": cursor})).await;
        let c2 = &data(&page2)["accounts"];
        assert_eq!(c2["nodes"], json!([{"name": "Charlie"}, {"name": "Delta"}]));
        assert_eq!(c2["pageInfo"]["hasPreviousPage"], true);
        // Backwards from the end.
        let last = app
            .admin(
                "{ accounts(last: 2) { nodes { name } pageInfo { hasPreviousPage } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data(&last)["accounts"]["nodes"],
            json!([{"name": "Delta"}, {"name": "Echo"}])
        );
        assert_eq!(data(&last)["accounts"]["pageInfo"]["hasPreviousPage"], true);
        // Filters and order.
        let smb = app
        .admin(q, json!({"f": {"segment": ["SMB"], "search": "A"}, "o": {"field": "NAME", "direction": "DESC"}}))
        .await;
        assert_eq!(
            data(&smb)["accounts"]["nodes"],
            json!([{"name": "Delta"}, {"name": "Charlie"}])
        );
        // A garbage cursor is BAD_USER_INPUT.
        let bad = app.admin(q, json!({"after": "zzz"})).await;
        assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
    }
);

db_test!(
    upsert_account_is_idempotent_by_external_id,
    |app| async move {
        let q = r#"mutation($i: AccountInput!) { upsertAccount(externalId: {system: "HubSpot", id: "123"}, input: $i) { id name externalIds { system id } } }"#;
        let token = app.token(Role::Integration, "hubspot-sync");
        let first = app
            .gql(
                &token,
                q,
                json!({"i": {"name": "Globex", "domain": "globex.com"}}),
            )
            .await;
        let second = app
            .gql(
                &token,
                q,
                json!({"i": {"name": "Globex Corp", "domain": "globex.com"}}),
            )
            .await;
        let (a, b) = (
            &data(&first)["upsertAccount"],
            &data(&second)["upsertAccount"],
        );
        assert_eq!(a["id"], b["id"]);
        assert_eq!(b["name"], "Globex Corp");
        assert_eq!(
            b["externalIds"],
            json!([{"system": "hubspot", "id": "123"}])
        );
        let count = app.admin("{ accounts { totalCount } }", json!({})).await;
        assert_eq!(data(&count)["accounts"]["totalCount"], 1);
        // Backfilling createdAt: INTEGRATION may, VIEWER may not even create.
        let backfill = app
            .gql(
                &token,
                CREATE,
                json!({"i": {"name": "Old Co", "createdAt": "2025-01-15T10:00:00Z"}}),
            )
            .await;
        assert!(backfill.get("errors").is_none(), "{backfill}");
        let future = app
            .gql(
                &token,
                CREATE,
                json!({"i": {"name": "Future Co", "createdAt": "2999-01-01T00:00:00Z"}}),
            )
            .await;
        assert_eq!(error_code(&future), Some("BAD_USER_INPUT"));
        let viewer = app
            .gql(
                &app.token(Role::Viewer, "bi"),
                CREATE,
                json!({"i": {"name": "Nope"}}),
            )
            .await;
        assert_eq!(error_code(&viewer), Some("FORBIDDEN"));
    }
);
