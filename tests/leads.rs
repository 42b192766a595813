//! Leads: validation, account matching, batches, stage history, conversion,
//! upserts, masking, and constant SQL per page.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: LeadInput!) { createLead(input: $i) { id email stage account { name } createdAt stageHistory { fromStage toStage actor } } }";

async fn account(app: &TestApp, name: &str, domain: &str) -> String {
    let resp = app
        .admin(
            "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
            json!({"i": {"name": name, "domain": domain}}),
        )
        .await;
    data(&resp)["createAccount"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn lead(app: &TestApp, input: Value) -> Value {
    let resp = app.admin(CREATE, json!({"i": input})).await;
    data(&resp)["createLead"].clone()
}

async fn member(app: &TestApp) -> String {
    let resp = app
        .admin(
            r#"mutation { createUser(input: {email: "rep@acme.com", name: "Rep", role: MEMBER}) { id } }"#,
            json!({}),
        )
        .await;
    let id = data(&resp)["createUser"]["id"].as_str().unwrap().to_owned();
    app.token(Role::Member, &id)
}

db_test!(
    leads_are_normalized_and_matched_to_accounts,
    |app| async move {
        account(app, "Acme", "acme.com").await;
        let l = lead(app, json!({"email": " Ann@ACME.com ", "firstName": "Ann"})).await;
        assert_eq!(l["email"], "ann@acme.com");
        assert_eq!(l["stage"], "INQUIRY");
        assert_eq!(l["account"]["name"], "Acme");
        assert_eq!(
            l["stageHistory"],
            json!([{"fromStage": null, "toStage": "INQUIRY", "actor": "admin-service"}])
        );
        // A public mail domain never matches an account.
        account(app, "Gmail Inc", "gmail.com").await;
        let g = lead(app, json!({"email": "bob@gmail.com"})).await;
        assert!(g["account"].is_null(), "{g}");
        // Duplicates and bad input.
        let dup = app
            .admin(CREATE, json!({"i": {"email": "ann@acme.com"}}))
            .await;
        assert_eq!(error_code(&dup), Some("CONFLICT"), "{dup}");
        assert_eq!(dup["errors"][0]["extensions"]["field"], "email");
        let bad = app
            .admin(CREATE, json!({"i": {"email": "not-an-email"}}))
            .await;
        assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
        let missing = app
        .admin(CREATE, json!({"i": {"email": "c@acme.com", "accountId": "00000000-0000-0000-0000-000000000009"}}))
        .await;
        assert_eq!(error_code(&missing), Some("NOT_FOUND"));
    }
);

db_test!(create_leads_is_all_or_none, |app| async move {
    let q = "mutation($i: [LeadInput!]!) { createLeads(inputs: $i) { email } }";
    let ok = app
        .admin(q, json!({"i": [{"email": "a@x.io"}, {"email": "b@x.io"}]}))
        .await;
    assert_eq!(data(&ok)["createLeads"].as_array().unwrap().len(), 2);
    let bad = app
        .admin(
            q,
            json!({"i": [{"email": "c@x.io"}, {"email": "broken"}, {"email": "d@x.io"}]}),
        )
        .await;
    assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("inputs[1]"),
        "{bad}"
    );
    let count = app.admin("{ leads { totalCount } }", json!({})).await;
    assert_eq!(
        data(&count)["leads"]["totalCount"],
        2,
        "nothing of the failed batch was written"
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"email": format!("l{i}@x.io")}))
        .collect();
    let resp = app.admin(q, json!({"i": too_many})).await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"));
});

db_test!(
    stage_changes_are_recorded_and_conversion_is_atomic,
    |app| async move {
        let acme = account(app, "Acme", "acme.com").await;
        let l = lead(app, json!({"email": "ann@acme.com", "source": "WEB"})).await;
        let id = l["id"].as_str().unwrap();
        let token = member(app).await;
        let change = "mutation($id: ID!, $to: LeadStage!, $r: String) { changeLeadStage(id: $id, to: $to, reason: $r) { stage stageHistory { fromStage toStage actor reason actorUser { email } } } }";
        let resp = app
            .gql(
                &token,
                change,
                json!({"id": id, "to": "MQL", "r": "score 80"}),
            )
            .await;
        let h = &data(&resp)["changeLeadStage"]["stageHistory"];
        assert_eq!(h[1]["fromStage"], "INQUIRY");
        assert_eq!(h[1]["toStage"], "MQL");
        assert_eq!(h[1]["reason"], "score 80");
        assert_eq!(h[1]["actorUser"]["email"], "rep@acme.com");
        let same = app
            .gql(&token, change, json!({"id": id, "to": "MQL"}))
            .await;
        assert_eq!(error_code(&same), Some("BAD_USER_INPUT"));
        let via_change = app
            .gql(&token, change, json!({"id": id, "to": "CONVERTED"}))
            .await;
        assert_eq!(error_code(&via_change), Some("BAD_USER_INPUT"));
        let convert = r#"mutation($id: ID!) { convertLead(id: $id, opportunity: {name: "Acme deal", amount: "25000.00"}) {
        lead { stage convertedOpportunity { name amount sourcedBy account { id } lead { email } } }
        opportunity { stage stageHistory { toStage } } } }"#;
        let resp = app.gql(&token, convert, json!({"id": id})).await;
        let c = &data(&resp)["convertLead"];
        assert_eq!(c["lead"]["stage"], "CONVERTED");
        assert_eq!(c["lead"]["convertedOpportunity"]["amount"], "25000.00");
        assert_eq!(c["lead"]["convertedOpportunity"]["sourcedBy"], "MARKETING");
        assert_eq!(
            c["lead"]["convertedOpportunity"]["account"]["id"],
            acme.as_str()
        );
        assert_eq!(
            c["lead"]["convertedOpportunity"]["lead"]["email"],
            "ann@acme.com"
        );
        assert_eq!(
            c["opportunity"]["stageHistory"],
            json!([{"toStage": "DISCOVERY"}])
        );
        // A converted lead is final.
        let again = app.gql(&token, convert, json!({"id": id})).await;
        assert_eq!(error_code(&again), Some("CONFLICT"));
        let moved = app
            .gql(&token, change, json!({"id": id, "to": "RECYCLED"}))
            .await;
        assert_eq!(error_code(&moved), Some("CONFLICT"));
        // A failed conversion writes nothing: no account to put the opportunity on.
        let orphan = lead(app, json!({"email": "zed@nowhere.dev"})).await;
        let resp = app.gql(&token, convert, json!({"id": orphan["id"]})).await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"));
        let opps = app.admin("{ opportunities { totalCount } leads(filter: {stage: [CONVERTED]}) { totalCount } }", json!({})).await;
        assert_eq!(data(&opps)["opportunities"]["totalCount"], 1);
        assert_eq!(data(&opps)["leads"]["totalCount"], 1);
    }
);

db_test!(
    history_can_be_backfilled_only_by_integrations,
    |app| async move {
        let integration = app.token(Role::Integration, "salesforce-sync");
        let resp = app
            .gql(
                &integration,
                CREATE,
                json!({"i": {"email": "old@acme.com", "createdAt": "2025-03-01T09:00:00Z"}}),
            )
            .await;
        let l = &data(&resp)["createLead"];
        assert_eq!(l["createdAt"], "2025-03-01T09:00:00+00:00");
        assert_eq!(l["stageHistory"][0]["toStage"], "INQUIRY");
        let change = "mutation($id: ID!, $at: DateTime) { changeLeadStage(id: $id, to: MQL, at: $at) { stageHistory { at } } }";
        let resp = app
            .gql(
                &integration,
                change,
                json!({"id": l["id"], "at": "2025-03-05T10:30:00Z"}),
            )
            .await;
        assert_eq!(
            data(&resp)["changeLeadStage"]["stageHistory"][1]["at"],
            "2025-03-05T10:30:00+00:00"
        );
        let before_creation = app
            .gql(
                &integration,
                change,
                json!({"id": l["id"], "at": "2025-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(error_code(&before_creation), Some("BAD_USER_INPUT"));
        let future = app
            .gql(
                &integration,
                CREATE,
                json!({"i": {"email": "f@acme.com", "createdAt": "2999-01-01T00:00:00Z"}}),
            )
            .await;
        assert_eq!(error_code(&future), Some("BAD_USER_INPUT"));
        let token = member(app).await;
        let resp = app
            .gql(
                &token,
                CREATE,
                json!({"i": {"email": "m@acme.com", "createdAt": "2025-03-01T09:00:00Z"}}),
            )
            .await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"));
    }
);

db_test!(
    personal_data_is_masked_for_viewers_and_other_integrations,
    |app| async move {
        lead(
            app,
            json!({"email": "ann@acme.com", "firstName": "Ann", "lastName": "Lee", "title": "CFO"}),
        )
        .await;
        let q = "{ leads { nodes { email firstName lastName name title } } }";
        let viewer = app.gql(&app.token(Role::Viewer, "bi"), q, json!({})).await;
        assert_eq!(
            data(&viewer)["leads"]["nodes"][0],
            json!({"email": null, "firstName": null, "lastName": null, "name": null, "title": null})
        );
        let admin = app.admin(q, json!({})).await;
        assert_eq!(data(&admin)["leads"]["nodes"][0]["name"], "Ann Lee");
        let hubspot = app.token(Role::Integration, "hubspot");
        let own = app
            .gql(&hubspot, CREATE, json!({"i": {"email": "own@acme.com"}}))
            .await;
        assert_eq!(data(&own)["createLead"]["email"], "own@acme.com");
        let all = app
            .gql(
                &hubspot,
                "{ leads(orderBy: {field: EMAIL}) { nodes { email } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data(&all)["leads"]["nodes"],
            json!([{"email": null}, {"email": "own@acme.com"}])
        );
        let viewer_write = app
            .gql(
                &app.token(Role::Viewer, "bi"),
                CREATE,
                json!({"i": {"email": "v@acme.com"}}),
            )
            .await;
        assert_eq!(error_code(&viewer_write), Some("FORBIDDEN"));
    }
);

db_test!(upserts_and_touchpoints, |app| async move {
    let hubspot = app.token(Role::Integration, "hubspot");
    let q = r#"mutation($i: LeadInput!) { upsertLead(externalId: {system: "hubspot", id: "c-1"}, input: $i) { id email stage score externalIds { system id } } }"#;
    let a = app
        .gql(
            &hubspot,
            q,
            json!({"i": {"email": "x@acme.com", "score": 10}}),
        )
        .await;
    let b = app
        .gql(
            &hubspot,
            q,
            json!({"i": {"email": "x@acme.com", "score": 55, "stage": "MQL"}}),
        )
        .await;
    assert_eq!(data(&a)["upsertLead"]["id"], data(&b)["upsertLead"]["id"]);
    assert_eq!(data(&b)["upsertLead"]["score"], 55);
    assert_eq!(data(&b)["upsertLead"]["stage"], "MQL");
    let count = app.admin("{ leads { totalCount } }", json!({})).await;
    assert_eq!(data(&count)["leads"]["totalCount"], 1);
    let campaign = app
        .admin(
            r#"mutation { createCampaign(input: {name: "Webinar", channel: EMAIL, kind: WEBINAR, cost: "1200", startsAt: "2025-01-01T00:00:00Z"}) { id cost } }"#,
            json!({}),
        )
        .await;
    assert_eq!(data(&campaign)["createCampaign"]["cost"], "1200.00");
    let cid = data(&campaign)["createCampaign"]["id"].clone();
    let lid = data(&a)["upsertLead"]["id"].clone();
    let touch = "mutation($l: ID!, $c: ID!, $at: DateTime) { recordTouchpoint(input: {leadId: $l, campaignId: $c, occurredAt: $at}) { lead { touchpoints { occurredAt campaign { name } } } } }";
    data(
        &app.admin(
            touch,
            json!({"l": lid, "c": cid, "at": "2025-06-02T00:00:00Z"}),
        )
        .await,
    );
    let early = app
        .admin(
            touch,
            json!({"l": lid, "c": cid, "at": "2025-05-01T00:00:00Z"}),
        )
        .await;
    let t = &data(&early)["recordTouchpoint"]["lead"]["touchpoints"];
    assert_eq!(
        t[0]["occurredAt"], "2025-05-01T00:00:00+00:00",
        "oldest first: {t}"
    );
    assert_eq!(t[1]["campaign"]["name"], "Webinar");
    let future = app
        .admin(
            touch,
            json!({"l": lid, "c": cid, "at": "2999-05-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(error_code(&future), Some("BAD_USER_INPUT"));
    // A rep records when they first reached the lead (speed to lead).
    let token = member(app).await;
    let resp = app
        .gql(&token, "mutation($id: ID!) { updateLead(id: $id, input: {firstTouchAt: \"2025-06-03T08:00:00Z\"}) { firstTouchAt } }", json!({"id": lid}))
        .await;
    assert_eq!(
        data(&resp)["updateLead"]["firstTouchAt"],
        "2025-06-03T08:00:00+00:00"
    );
});

db_test!(lists_filter_and_paginate, |app| async move {
    for (i, source) in ["WEB", "EVENT", "WEB", "PAID", "WEB"].iter().enumerate() {
        lead(app, json!({"email": format!("p{i}@acme.com"), "source": source, "company": format!("Co {i}")})).await;
    }
    let q = "query($f: LeadFilterInput, $after: String) { leads(first: 2, after: $after, filter: $f, orderBy: {field: EMAIL}) { totalCount nodes { email } pageInfo { hasNextPage endCursor } } }";
    let web = app.admin(q, json!({"f": {"source": ["WEB"]}})).await;
    let c = &data(&web)["leads"];
    assert_eq!(c["totalCount"], 3);
    assert_eq!(
        c["nodes"],
        json!([{"email": "p0@acme.com"}, {"email": "p2@acme.com"}])
    );
    let next = app
        .admin(
            q,
            json!({"f": {"source": ["WEB"]}, "after": c["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(
        data(&next)["leads"]["nodes"],
        json!([{"email": "p4@acme.com"}])
    );
    assert_eq!(data(&next)["leads"]["pageInfo"]["hasNextPage"], false);
    let search = app.admin(q, json!({"f": {"search": "CO 3"}})).await;
    assert_eq!(
        data(&search)["leads"]["nodes"],
        json!([{"email": "p3@acme.com"}])
    );
    let none = app
        .admin(
            q,
            json!({"f": {"createdAt": {"to": "2000-01-01T00:00:00Z"}}}),
        )
        .await;
    assert_eq!(data(&none)["leads"]["totalCount"], 0);
});

// Listing 10 or 500 leads with their account, owner and stage history
// issues the same number of SQL statements.
db_test!(
    sql_statements_do_not_grow_with_page_size,
    |app| async move {
        use entity::enums::{AccountStatus, Channel, LeadStage, Segment};
        use sea_orm::{EntityTrait, Set};
        let db = app.db();
        let now = chrono::Utc::now();
        let owner = uuid::Uuid::now_v7();
        entity::user::Entity::insert(entity::user::ActiveModel {
            id: Set(owner),
            email: Set("owner@acme.com".into()),
            name: Set("Owner".into()),
            team_id: Set(None),
            role: Set(Role::Member),
            active: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(db)
        .await
        .unwrap();
        let accounts: Vec<_> = (0..50)
            .map(|i| entity::account::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                name: Set(format!("A{i}")),
                domain: Set(Some(format!("a{i}.com"))),
                industry: Set(None),
                segment: Set(Segment::Smb),
                employees: Set(None),
                annual_revenue: Set(None),
                is_target: Set(false),
                status: Set(AccountStatus::Prospect),
                became_customer_at: Set(None),
                churned_at: Set(None),
                owner_id: Set(Some(owner)),
                created_by: Set("t".into()),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .collect();
        let account_ids: Vec<_> = accounts.iter().map(|a| a.id.clone().unwrap()).collect();
        entity::account::Entity::insert_many(accounts)
            .exec(db)
            .await
            .unwrap();
        let mut leads = Vec::new();
        let mut changes = Vec::new();
        for i in 0..500 {
            let id = uuid::Uuid::now_v7();
            leads.push(entity::lead::ActiveModel {
                id: Set(id),
                email: Set(format!("l{i}@a.com")),
                first_name: Set(None),
                last_name: Set(None),
                title: Set(None),
                company: Set(None),
                account_id: Set(Some(account_ids[i % 50])),
                source: Set(Channel::Web),
                campaign_id: Set(None),
                score: Set(0),
                stage: Set(LeadStage::Mql),
                owner_id: Set(Some(owner)),
                team_id: Set(None),
                converted_opportunity_id: Set(None),
                first_touch_at: Set(None),
                mql_at: Set(Some(now)),
                sal_at: Set(None),
                sql_at: Set(None),
                converted_at: Set(None),
                inquiry_at: Set(Some(now)),
                created_by: Set("t".into()),
                created_at: Set(now),
                updated_at: Set(now),
            });
            for (from, to) in [(None, "INQUIRY"), (Some("INQUIRY"), "MQL")] {
                changes.push(entity::stage_change::ActiveModel {
                    id: Set(uuid::Uuid::now_v7()),
                    lead_id: Set(Some(id)),
                    opportunity_id: Set(None),
                    from_stage: Set(from.map(str::to_owned)),
                    to_stage: Set(to.into()),
                    at: Set(now),
                    actor: Set("t".into()),
                    actor_user_id: Set(None),
                    reason: Set(None),
                });
            }
        }
        for chunk in leads.chunks(100) {
            entity::lead::Entity::insert_many(chunk.to_vec())
                .exec(db)
                .await
                .unwrap();
        }
        for chunk in changes.chunks(100) {
            entity::stage_change::Entity::insert_many(chunk.to_vec())
                .exec(db)
                .await
                .unwrap();
        }
        let q = "query($n: Int) { leads(first: $n) { totalCount nodes { email account { name } owner { name } stageHistory { toStage } } } }";
        let token = app.admin_token();
        let mut counts = Vec::new();
        for n in [10, 500] {
            let before = app.statements();
            let resp = app.gql(&token, q, json!({"n": n})).await;
            assert_eq!(data(&resp)["leads"]["nodes"].as_array().unwrap().len(), n);
            assert_eq!(
                data(&resp)["leads"]["nodes"][n - 1]["stageHistory"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            counts.push(app.statements() - before);
        }
        assert_eq!(
            counts[0], counts[1],
            "statements for 10 vs 500 leads: {counts:?}"
        );
        assert!(
            counts[0] <= 6,
            "page + count + accounts + users + history: {counts:?}"
        );
    }
);

// One lead by id with its stage history: the history in order, read with the
// lead in one statement on PostgreSQL (two on SQLite); an unknown id is
// NOT_FOUND either way.
db_test!(one_lead_with_its_history, |app| async move {
    let created = app
        .admin(
            "mutation { createLead(input: {email: \"history@acme.com\"}) { id } }",
            json!({}),
        )
        .await;
    let id = data(&created)["createLead"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for to in ["MQL", "SAL"] {
        let moved = app
            .admin(
                "mutation($id: ID!, $to: LeadStage!) { changeLeadStage(id: $id, to: $to) { id } }",
                json!({"id": id, "to": to}),
            )
            .await;
        assert!(moved["errors"].is_null(), "{moved}");
    }
    let q = "query($id: ID!) { lead(id: $id) { email stageHistory { fromStage toStage } } }";
    let token = app.admin_token();
    let before = app.statements();
    let got = app.gql(&token, q, json!({"id": id})).await;
    let used = app.statements() - before;
    assert_eq!(data(&got)["lead"]["email"], "history@acme.com");
    assert_eq!(
        data(&got)["lead"]["stageHistory"],
        json!([
            {"fromStage": null, "toStage": "INQUIRY"},
            {"fromStage": "INQUIRY", "toStage": "MQL"},
            {"fromStage": "MQL", "toStage": "SAL"},
        ])
    );
    let expected = match app.backend {
        Backend::Postgres => 1,
        Backend::Sqlite => 2,
    };
    assert_eq!(used, expected, "statements for a lead and its history");

    let unknown = app
        .gql(&token, q, json!({"id": uuid::Uuid::now_v7().to_string()}))
        .await;
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"), "{unknown}");
});

// A page of leads with their accounts and owners: three statements (the
// page, then its accounts and its owners at once); leads without an
// account or owner get null, backwards pages too.
db_test!(a_page_with_accounts_and_owners, |app| async move {
    let made = app
        .admin(
            "mutation { a: createAccount(input: {name: \"Acme\", domain: \"acme-join.com\"}) { id }
                        u: createUser(input: {email: \"olga@acme-join.com\", name: \"Olga\", role: MEMBER}) { id } }",
            json!({}),
        )
        .await;
    let (account, owner) = (
        data(&made)["a"]["id"].as_str().unwrap().to_owned(),
        data(&made)["u"]["id"].as_str().unwrap().to_owned(),
    );
    for (email, account, owner) in [
        ("a@join.example", Some(&account), Some(&owner)),
        ("b@join.example", Some(&account), None),
        ("c@join.example", None, None),
    ] {
        let r = app
            .admin(
                "mutation($in: LeadInput!) { createLead(input: $in) { id } }",
                json!({"in": {"email": email, "accountId": account, "ownerId": owner}}),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let q = "query($first: Int, $last: Int) { leads(first: $first, last: $last, orderBy: {field: EMAIL}) {
        pageInfo { hasNextPage hasPreviousPage } nodes { email account { name } owner { name } } } }";
    let token = app.admin_token();
    let before = app.statements();
    let page = app.gql(&token, q, json!({"first": 10})).await;
    let used = app.statements() - before;
    assert_eq!(
        data(&page)["leads"]["nodes"],
        json!([
            {"email": "a@join.example", "account": {"name": "Acme"}, "owner": {"name": "Olga"}},
            {"email": "b@join.example", "account": {"name": "Acme"}, "owner": null},
            {"email": "c@join.example", "account": null, "owner": null},
        ])
    );
    assert_eq!(used, 3, "the page, its accounts, its owners");

    let back = app.gql(&token, q, json!({"last": 2})).await;
    assert_eq!(
        data(&back)["leads"]["nodes"],
        json!([
            {"email": "b@join.example", "account": {"name": "Acme"}, "owner": null},
            {"email": "c@join.example", "account": null, "owner": null},
        ])
    );
    assert_eq!(
        data(&back)["leads"]["pageInfo"],
        json!({"hasNextPage": false, "hasPreviousPage": true})
    );
});
