//! Hostile and careless input: no request crashes, wedges or poisons the
//! server, each is refused with its code and nothing is written; data a role
//! cannot read cannot be found by searching for it either.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

async fn post_raw(app: &TestApp, token: &str, body: String) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an HTTP answer");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn alive(app: &TestApp) {
    let resp = app.admin("{ me { role } }", json!({})).await;
    assert_eq!(data(&resp)["me"]["role"], "ADMIN");
}

async fn leads(app: &TestApp) -> u64 {
    entity::lead::Entity::find().count(app.db()).await.unwrap()
}

db_test!(
    deeply_nested_documents_and_variables_are_refused,
    |app| async move {
        let viewer = app.token(Role::Viewer, "viewer");
        let deep = format!(
            "{{ leads(filter: {{id: {}\"1\"{}}}) {{ totalCount }} }}",
            "[".repeat(1600),
            "]".repeat(1600)
        );
        // (200 under `application/json`, as GraphQL over HTTP says for request errors.)
        let (_, body) = post_raw(app, &viewer, json!({ "query": deep }).to_string()).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        // As a GET too.
        let res = app
            .client
            .get(format!("{}/graphql", app.url))
            .bearer_auth(&viewer)
            .header("accept", "application/json")
            .query(&[("query", deep.as_str())])
            .send()
            .await
            .expect("an HTTP answer");
        let body: Value = res.json().await.unwrap();
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        // Nested input objects.
        let objects = format!(
            "{{ leads(filter: {}{}) {{ totalCount }} }}",
            "{and: [".repeat(1300),
            "]}".repeat(1300)
        );
        let (_, body) = post_raw(app, &viewer, json!({ "query": objects }).to_string()).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        // Variables.
        let mut v = json!("1");
        for _ in 0..100 {
            v = json!([v]);
        }
        let resp = app
            .gql(
                &viewer,
                "query($f: LeadFilterInput) { leads(filter: $f) { totalCount } }",
                json!({ "f": { "id": v } }),
            )
            .await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
        alive(app).await;
    }
);

db_test!(
    money_too_large_is_bad_input_and_writes_nothing,
    |app| async move {
        let account = app
            .admin(
                "mutation { createAccount(input: {name: \"Acme\"}) { id } }",
                json!({}),
            )
            .await;
        let account = data(&account)["createAccount"]["id"].clone();
        for amount in [
            "7922816251426433759354396",
            "79228162514264337593543950335",
            "922337203685477.58",
            "9000000.01",
        ] {
            let resp = app
            .admin(
                "mutation($a: ID!, $m: Decimal!) { createOpportunity(input: {name: \"Big\", accountId: $a, amount: $m}) { id } }",
                json!({"a": account, "m": amount}),
            )
            .await;
            assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
            assert_eq!(resp["errors"][0]["extensions"]["field"], "amount", "{resp}");
        }
        let resp = app
        .admin(
            "mutation($m: Decimal!) { createCampaign(input: {name: \"C\", channel: EMAIL, kind: AD, startsAt: \"2026-01-01T00:00:00Z\", cost: $m}) { id } }",
            json!({"m": "7922816251426433759354396"}),
        )
        .await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
        let opps = entity::opportunity::Entity::find()
            .count(app.db())
            .await
            .unwrap();
        let campaigns = entity::campaign::Entity::find()
            .count(app.db())
            .await
            .unwrap();
        assert_eq!((opps, campaigns), (0, 0));
        alive(app).await;
    }
);

db_test!(
    control_characters_are_refused_naming_the_field,
    |app| async move {
        let cases = [
            (
                "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                json!({"i": {"email": "ann\u{0}@acme.com"}}),
                "email",
            ),
            (
                "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                json!({"i": {"email": "ann@acme.com", "firstName": "A\u{0}nn"}}),
                "firstName",
            ),
            (
                "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                json!({"i": {"email": "ann@acme.com", "externalIds": [{"system": "hubspot", "id": "1\u{0}"}]}}),
                "id",
            ),
            (
                "mutation($n: String!) { createTeam(input: {name: $n, function: SALES}) { id } }",
                json!({"n": "Sa\u{7}les"}),
                "name",
            ),
            (
                "query($s: String) { leads(filter: {search: $s}) { totalCount } }",
                json!({"s": "ann\u{0}"}),
                "search",
            ),
        ];
        for (query, vars, field) in cases {
            let resp = app.admin(query, vars).await;
            assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{field}: {resp}");
            assert_eq!(resp["errors"][0]["extensions"]["field"], field, "{resp}");
        }
        assert_eq!(leads(app).await, 0);
        // Tabs and line breaks stay allowed in free text.
        let resp = app
            .admin(
                "mutation($i: LeadInput!) { createLead(input: $i) { company } }",
                json!({"i": {"email": "ann@acme.com", "company": "Acme\tGmbH"}}),
            )
            .await;
        assert_eq!(data(&resp)["createLead"]["company"], "Acme\tGmbH");
    }
);

db_test!(an_overlong_search_is_refused, |app| async move {
    let resp = app
        .admin(
            "query($s: String) { leads(filter: {search: $s}) { totalCount } }",
            json!({"s": "a".repeat(50_000)}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["field"], "search");
    let resp = app
        .admin(
            "query($s: String) { leads(filter: {search: $s}) { totalCount } }",
            json!({"s": "a".repeat(200)}),
        )
        .await;
    assert_eq!(data(&resp)["leads"]["totalCount"], 0);
});

db_test!(masked_fields_cannot_be_searched, |app| async move {
    let resp = app
        .admin(
            "mutation { createLead(input: {email: \"secret.person@acme.com\", firstName: \"Hidden\", company: \"Acme\"}) { id } }",
            json!({}),
        )
        .await;
    data(&resp);
    let count = |token: String, term: &'static str| async move {
        let resp = app
            .gql(
                &token,
                "query($s: String) { leads(filter: {search: $s}) { totalCount } }",
                json!({ "s": term }),
            )
            .await;
        data(&resp)["leads"]["totalCount"].as_i64().unwrap()
    };
    assert_eq!(count(app.admin_token(), "secret.person@acme.com").await, 1);
    assert_eq!(count(app.admin_token(), "hidden").await, 1);
    let viewer = app.token(Role::Viewer, "viewer");
    assert_eq!(count(viewer.clone(), "secret.person@acme.com").await, 0);
    assert_eq!(count(viewer.clone(), "hidden").await, 0);
    assert_eq!(
        count(viewer.clone(), "acme").await,
        1,
        "the company stays searchable"
    );
    // An integration finds personal fields only on the leads it created.
    let integration = app.token(Role::Integration, "crm-sync");
    assert_eq!(count(integration.clone(), "hidden").await, 0);
    let resp = app
        .gql(
            &integration,
            "mutation { createLead(input: {email: \"own@globex.com\", firstName: \"Own\"}) { id } }",
            json!({}),
        )
        .await;
    data(&resp);
    assert_eq!(count(integration, "own@globex.com").await, 1);
    // Users are found only by name or e-mail: not for a VIEWER.
    let resp = app
        .gql(
            &viewer,
            "{ users(filter: {search: \"admin\"}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
});

db_test!(
    stage_history_actor_is_masked_like_the_user,
    |app| async move {
        let resp = app
        .admin(
            "mutation { createUser(input: {email: \"rep@acme.com\", name: \"Rep\", role: MEMBER}) { id } }",
            json!({}),
        )
        .await;
        let user_id = data(&resp)["createUser"]["id"].as_str().unwrap().to_owned();
        let rep = app.token(Role::Member, "rep@acme.com");
        let resp = app
            .gql(
                &rep,
                "mutation { createLead(input: {email: \"x@globex.com\"}) { id } }",
                json!({}),
            )
            .await;
        let lead = data(&resp)["createLead"]["id"].as_str().unwrap().to_owned();
        let history = |token: String| {
            let lead = lead.clone();
            async move {
                let resp = app
                .gql(
                    &token,
                    "query($id: ID!) { lead(id: $id) { stageHistory { actor actorUser { id email } } } }",
                    json!({ "id": lead }),
                )
                .await;
                data(&resp)["lead"]["stageHistory"][0].clone()
            }
        };
        let seen = history(app.admin_token()).await;
        assert_eq!(seen["actor"], "rep@acme.com", "{seen}");
        let viewer = history(app.token(Role::Viewer, "viewer")).await;
        assert_eq!(viewer["actor"], user_id.as_str(), "{viewer}");
        assert!(viewer["actorUser"]["email"].is_null(), "{viewer}");
    }
);

#[tokio::test]
async fn an_oversized_body_is_a_json_error_with_a_code() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.body_limit_bytes = 4096).await;
    let (status, body) = post_raw(
        &app,
        &app.admin_token(),
        json!({ "query": format!("{{ me {{ role }} }} #{}", "x".repeat(10_000)) }).to_string(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    app.cleanup().await;
}

db_test!(
    an_enum_written_as_a_string_literal_is_a_validation_error,
    |app| async move {
        for query in [
            r#"{ leads(filter: {stage: ["MQL"]}) { totalCount } }"#,
            r#"{ leads(orderBy: {field: "CREATED_AT", direction: DESC}) { totalCount } }"#,
            r#"query { ...F } fragment F on Query { leads(filter: {source: ["WEB"]}) { totalCount } }"#,
            r#"mutation { createTeam(input: {name: "T", function: "SALES"}) { id } }"#,
        ] {
            let resp = app.admin(query, json!({})).await;
            assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{query}: {resp}");
            assert!(resp.get("data").is_none_or(Value::is_null), "{resp}");
        }
        // Enum literals, and strings in variables, stay right.
        let resp = app
            .admin(
                r#"{ leads(filter: {stage: [MQL], search: "MQL"}) { totalCount } }"#,
                json!({}),
            )
            .await;
        assert_eq!(data(&resp)["leads"]["totalCount"], 0);
        let resp = app
            .admin(
                "query($s: [LeadStage!]) { leads(filter: {stage: $s}) { totalCount } }",
                json!({"s": ["MQL"]}),
            )
            .await;
        assert_eq!(data(&resp)["leads"]["totalCount"], 0);
        assert_eq!(
            entity::team::Entity::find().count(app.db()).await.unwrap(),
            0
        );
    }
);
