//! Authentication and the role × operation table.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIEnoNziUd2ok8U7809LAMt27KGlLnbOYuDYWh/rCrW7U
-----END PRIVATE KEY-----
";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAESbsMpxwyx8uawfUu6/Xc7OW6pk2+6p71ROJOyAw7XU=
-----END PUBLIC KEY-----
";
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg02D4qvegW/RfIbRV
b5+ukzlAyipq39BcRqCGR9GBO8KhRANCAAQ0r5L9WR0KAqxXbISa0YDQyUV9EZpi
wqAn4T5e9WXGuSeeHHXYFDgKmaQyNYhu7bhrcKOQrMYSsLWrabJzcq/+
-----END PRIVATE KEY-----
";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(overrides: Value) -> Value {
    let mut c = json!({
        "sub": "svc", "role": "ADMIN", "iat": now(), "exp": now() + 600,
        "iss": "lockstep", "aud": "lockstep-api"
    });
    if let (Some(c), Some(o)) = (c.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn hs256(secret: &str, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn status_and_body(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.url))
        .json(&json!({ "query": "{ me { subject role } }" }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[track_caller]
fn assert_unauthenticated((status, body): (u16, Value), case: &str) {
    assert_eq!(status, 401, "{case}: {body}");
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{case}: {body}");
    assert!(body.get("data").is_none(), "{case}: no data on 401: {body}");
}

db_test!(bad_tokens_get_401_and_no_data, |app| async move {
    assert_unauthenticated(status_and_body(app, None).await, "no token");
    assert_unauthenticated(status_and_body(app, Some("garbage")).await, "garbage");
    // alg=none
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!({})))
    );
    assert_unauthenticated(status_and_body(app, Some(&none)).await, "alg none");
    let cases = [
        (
            "wrong signature",
            hs256(
                "another-secret-another-secret-another-secret",
                &claims(json!({})),
                None,
            ),
        ),
        (
            "expired",
            hs256(SECRET, &claims(json!({"exp": now() - 3600})), None),
        ),
        (
            "missing exp",
            hs256(SECRET, &claims(json!({"exp": null})), None),
        ),
        (
            "future nbf",
            hs256(SECRET, &claims(json!({"nbf": now() + 3600})), None),
        ),
        (
            "wrong issuer",
            hs256(SECRET, &claims(json!({"iss": "someone-else"})), None),
        ),
        (
            "wrong audience",
            hs256(SECRET, &claims(json!({"aud": "other-api"})), None),
        ),
        ("unknown kid", hs256(SECRET, &claims(json!({})), Some("k1"))),
        (
            "unknown role",
            hs256(SECRET, &claims(json!({"role": "ROOT"})), None),
        ),
        (
            "MEMBER without a user",
            hs256(
                SECRET,
                &claims(json!({"role": "MEMBER", "sub": "nobody@x.com"})),
                None,
            ),
        ),
    ];
    for (case, token) in cases {
        assert_unauthenticated(status_and_body(app, Some(&token)).await, case);
    }
    // An asymmetric token is refused when no public key is configured.
    let es = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(json!({})),
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_unauthenticated(status_and_body(app, Some(&es)).await, "ES256 without key");
    // And a good one passes.
    let (status, body) = status_and_body(app, Some(&hs256(SECRET, &claims(json!({})), None))).await;
    assert_eq!(status, 200);
    assert_eq!(
        data(&body)["me"],
        json!({"subject": "svc", "role": "ADMIN"})
    );
});

#[tokio::test]
async fn sso_tokens_verify_with_the_configured_public_key() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.jwt_public_key = Some(ED25519_PUBLIC.to_owned());
        c.jwt_key_id = Some("sso-1".to_owned());
    })
    .await;
    let key = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("sso-1".into());
    let good = jsonwebtoken::encode(
        &header,
        &claims(json!({"role": "VIEWER", "sub": "bi"})),
        &key,
    )
    .unwrap();
    let (status, body) = status_and_body(&app, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(data(&body)["me"]["role"], "VIEWER");
    header.kid = Some("sso-2".into());
    let other_kid = jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap();
    assert_unauthenticated(status_and_body(&app, Some(&other_kid)).await, "unknown kid");
    // HS256 still works beside it.
    assert_eq!(status_and_body(&app, Some(&app.admin_token())).await.0, 200);
    app.cleanup().await;
}

async fn create_user(app: &TestApp, email: &str, role: &str, team: Option<&str>) -> String {
    let resp = app
        .admin(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({"i": {"email": email, "name": "Pat Doe", "role": role, "teamId": team}}),
        )
        .await;
    data(&resp)["createUser"]["id"].as_str().unwrap().to_owned()
}

db_test!(
    member_tokens_end_when_the_user_is_deactivated,
    |app| async move {
        let team = app
            .admin(
                r#"mutation { createTeam(input: {name: "Sales", function: SALES}) { id } }"#,
                json!({}),
            )
            .await;
        let team_id = data(&team)["createTeam"]["id"].as_str().unwrap().to_owned();
        let id = create_user(app, "Pat@Acme.com", "MEMBER", Some(&team_id)).await;
        // By id or by e-mail; `me` shows the user and the team.
        for sub in [id.as_str(), "pat@acme.com"] {
            let token = app.token(Role::Member, sub);
            let resp = app
                .gql(
                    &token,
                    "{ me { subject role user { email } team { name } } }",
                    json!({}),
                )
                .await;
            assert_eq!(data(&resp)["me"]["user"]["email"], "pat@acme.com");
            assert_eq!(data(&resp)["me"]["team"]["name"], "Sales");
        }
        // A token whose role is above the user's is refused.
        assert_unauthenticated(
            status_and_body(app, Some(&app.token(Role::Revops, &id))).await,
            "role above user",
        );
        let token = app.token(Role::Member, &id);
        let resp = app
            .admin(
                "mutation($id: ID!) { updateUser(id: $id, input: {active: false}) { active } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(data(&resp)["updateUser"]["active"], false);
        assert_unauthenticated(status_and_body(app, Some(&token)).await, "deactivated");
    }
);

/// (operation, variables, roles allowed). Every role is tried on every row.
fn operations() -> Vec<(&'static str, Value, &'static [&'static str])> {
    const ALL: &[&str] = &["ADMIN", "REVOPS", "MEMBER", "VIEWER", "INTEGRATION"];
    vec![
        ("{ accounts { totalCount } }", json!({}), ALL),
        ("{ teams { name } }", json!({}), ALL),
        ("{ users { totalCount } }", json!({}), ALL),
        (
            r#"mutation { createAccount(input: {name: "Acme"}) { id } }"#,
            json!({}),
            &["ADMIN", "REVOPS", "MEMBER", "INTEGRATION"],
        ),
        (
            r#"mutation($n: String!) { createTeam(input: {name: $n, function: MARKETING}) { id } }"#,
            json!({"n": "unique"}),
            &["ADMIN"],
        ),
        (
            r#"mutation($e: String!) { createUser(input: {email: $e, name: "X", role: VIEWER}) { id } }"#,
            json!({"e": "unique"}),
            &["ADMIN"],
        ),
    ]
}

db_test!(every_role_gets_exactly_its_operations, |app| async move {
    let revops = create_user(app, "rev@acme.com", "REVOPS", None).await;
    let member = create_user(app, "mem@acme.com", "MEMBER", None).await;
    let tokens = [
        ("ADMIN", app.admin_token()),
        ("REVOPS", app.token(Role::Revops, &revops)),
        ("MEMBER", app.token(Role::Member, &member)),
        ("VIEWER", app.token(Role::Viewer, "bi-tool")),
        ("INTEGRATION", app.token(Role::Integration, "hubspot-sync")),
    ];
    for (i, (query, vars, allowed)) in operations().into_iter().enumerate() {
        for (j, (role, token)) in tokens.iter().enumerate() {
            let mut vars = vars.clone();
            for v in vars.as_object_mut().unwrap().values_mut() {
                // Unique names and e-mails per attempt.
                *v = json!(format!("n{i}-{j}@example.com"));
            }
            let resp = app.gql(token, query, vars).await;
            if allowed.contains(role) {
                assert!(
                    resp.get("errors").is_none(),
                    "{role} should be allowed {query}: {resp}"
                );
            } else {
                assert_eq!(
                    error_code(&resp),
                    Some("FORBIDDEN"),
                    "{role} should be refused {query}: {resp}"
                );
            }
        }
    }
});

db_test!(a_token_missing_a_claim_says_which, |app| async move {
    for claim in ["exp", "iss", "aud"] {
        let token = hs256(SECRET, &claims(json!({ claim: null })), None);
        let (status, body) = status_and_body(app, Some(&token)).await;
        assert_eq!(status, 401, "{claim}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{claim}`")),
            "{claim}: {message}"
        );
    }
});
