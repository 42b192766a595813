//! The first command of the README, as a new user runs it: `lockstep`
//! (serve) in an empty directory prints the address and a token that works
//! on demo data; SIGTERM stops it cleanly.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn serve_on_a_fresh_directory_prints_a_working_token_over_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("LOCKSTEP_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("LOCKSTEP_JWT_SECRET")
        .env("LOCKSTEP_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut url, mut token) = (None, None);
    let started = Instant::now();
    while (url.is_none() || token.is_none()) && started.elapsed() < Duration::from_secs(60) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(u) = line.split("GraphiQL:").nth(1) {
                url = Some(u.trim().to_owned());
            }
            if let Some(t) = line.split("Bearer ").nth(1) {
                token = Some(t.trim_end_matches(['"', '}']).to_owned());
            }
        }
    }
    let (url, token) = (
        url.expect("banner prints the GraphiQL URL"),
        token.expect("banner prints a token"),
    );
    assert!(!url.ends_with(":0/graphql"), "the real port: {url}");
    let resp: Value = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"query": "{ me { role } accounts(first: 3) { totalCount nodes { name } } leads(first: 3) { totalCount } opportunities(first: 3) { totalCount } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"]["me"]["role"], "ADMIN", "{resp}");
    assert!(
        resp["data"]["accounts"]["totalCount"].as_i64().unwrap() > 0,
        "{resp}"
    );
    assert!(
        resp["data"]["leads"]["totalCount"].as_i64().unwrap() > 0,
        "{resp}"
    );
    assert!(
        resp["data"]["opportunities"]["totalCount"]
            .as_i64()
            .unwrap()
            > 0,
        "{resp}"
    );
    // The secret is kept, private, for the next start.
    let secret = dir.path().join("lockstep.secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // SIGTERM: a graceful stop.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "clean exit: {status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stops on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn token_and_schema_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args([
            "token", "--role", "viewer", "--sub", "bi-tool", "--ttl", "1h",
        ])
        .current_dir(dir.path())
        .env_remove("LOCKSTEP_JWT_SECRET")
        .env_remove("LOCKSTEP_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split('.')
            .count(),
        3,
        "a JWT"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["token", "--role", "root", "--sub", "x"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let sdl = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sdl.stdout).contains("type Query"));
}
