//! The `integrations` binary, driven from outside as an operator (or an
//! attacker with the database file) would: real processes, a real SQLite file.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use testkit::{Backend, Database};

use crate::BIN;

/// A temporary store and keyring, and a way to run the CLI against them.
struct World {
    /// The store, and a temporary directory beside it.
    db: Database,
    keys: String,
}

impl World {
    /// A world on a SQLite file.
    fn new() -> Self {
        Self::on(Backend::sqlite("store"))
    }

    /// A SQLite world and, with `INTEGRATIONS_TEST_POSTGRES`, a PostgreSQL one.
    fn on_every_backend() -> Vec<Self> {
        let mut worlds = vec![Self::new()];
        worlds.extend(Backend::postgres("cli").map(Self::on));
        worlds
    }

    fn on(db: Database) -> Self {
        let world = Self {
            db,
            keys: String::new(),
        };
        let keys = world.ok(&["keys", "generate"], None).trim().to_string();
        Self { keys, ..world }
    }

    fn db_url(&self) -> String {
        self.db.url.clone()
    }

    fn command(&self, args: &[&str], keys: &str) -> Command {
        let mut cmd = self.with_env(Command::new(BIN), keys);
        cmd.args(args);
        cmd
    }

    /// `cmd` with this world's store and `keys`, logging at the most verbose level.
    fn with_env(&self, mut cmd: Command, keys: &str) -> Command {
        cmd.env_remove("INTEGRATIONS_KEYS_FILE")
            .env("INTEGRATIONS_DB", self.db_url())
            .env("INTEGRATIONS_KEYS", keys)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run_with_keys(&self, args: &[&str], stdin: Option<&str>, keys: &str) -> Output {
        let mut child = self.command(args, keys).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_with_keys(args, stdin, &self.keys)
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "{args:?} succeeded: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    fn add(&self, kind: &str, user: &str, config: &str, extra: &[&str]) -> String {
        let mut args = vec!["add", kind, "--user", user, "--config", "-"];
        args.extend_from_slice(extra);
        let id = self.ok(&args, Some(config)).trim().to_string();
        assert!(
            id.starts_with("int_") && id.len() == 25,
            "add printed {id:?}"
        );
        id
    }

    fn list(&self, user: &str) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok(&["list", "--user", user, "--json"], None))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn profile(&self, id: &str, user: &str, slug: &str) {
        self.ok(
            &["profiles", "add", id, "--user", user, "--slug", slug],
            None,
        );
    }

    /// Runs `f` on a raw connection to the database file, as someone holding it could.
    fn raw<T>(&self, f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T) -> T {
        let url = self.db_url();
        block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            f(&mut conn).await
        })
    }

    /// Adds secrets `(name, value)` of `user`, scope `all`, through the store.
    fn add_secrets(&self, user: &str, secrets: &[(&str, &str)]) {
        block_on(async {
            let store = store::Store::connect(&self.db.url).await.unwrap();
            let keyring = vault::Keyring::parse(&self.keys).unwrap();
            for (name, value) in secrets {
                let secret = store::NewSecret {
                    user_id: user.into(),
                    name: (*name).into(),
                    value: zeroize::Zeroizing::new((*value).into()),
                    scope: model::Scope::All,
                    profile_ids: Vec::new(),
                };
                store.add_secret(&keyring, &secret).await.unwrap();
            }
        })
    }

    fn set_sealed(&self, id: &str, sealed: &str) {
        self.raw(async |conn| {
            sqlx::query("UPDATE user_integrations SET encrypted_config = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(conn)
                .await
                .unwrap();
        })
    }

    fn sealed(&self, id: &str) -> String {
        self.raw(async |conn| {
            let (v,): (String,) =
                sqlx::query_as("SELECT encrypted_config FROM user_integrations WHERE id = $1")
                    .bind(id)
                    .fetch_one(conn)
                    .await
                    .unwrap();
            v
        })
    }
}

/// Runs `future` on a runtime of its own.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn teller(enrollment: &str, bank: &str) -> String {
    format!(
        r#"{{"enrollment_id":"{enrollment}","access_token":"test_token_{enrollment}","institution_name":"{bank}"}}"#
    )
}

const GMAIL: &str = r#"{"email":"amouzou@gmail.com","refresh_token":"1//rt"}"#;

#[test]
fn an_operator_session_round_trips_with_redacted_output() {
    let w = World::new();
    w.ok(&["migrate"], None);
    w.profile("prof_vzfin", "u1", "vzfin");
    w.profile("prof_coding", "u1", "coding");
    let pnc = w.add(
        "teller",
        "u1",
        &teller("enr_pnc", "PNC"),
        &["--agents", "prof_vzfin"],
    );
    let bot = w.add(
        "telegram",
        "u1",
        r#"{"bot_token":"1:AA","bot_user_id":42,"bot_username":"VZFinance_bot"}"#,
        &[
            "--agents",
            "prof_vzfin,prof_vzfin",
            "--bound-profile",
            "prof_vzfin",
            "--default",
        ],
    );
    let config_file = w.db.dir().join("email.json");
    std::fs::write(
        &config_file,
        r#"{"api_key":"re_x","from_address":"alerts@app.vonz.io","to_address":"me@x.io"}"#,
    )
    .unwrap();
    let email_id = w
        .ok(
            &[
                "add",
                "email",
                "--user",
                "u1",
                "--config",
                &format!("@{}", config_file.display()),
                "--label",
                "Alerts",
            ],
            None,
        )
        .trim()
        .to_string();

    let rows = w.list("u1");
    assert_eq!(rows.len(), 3);
    let by_id = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let row = by_id(&bot);
    let keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "id",
        "type",
        "label",
        "config",
        "enabled",
        "is_default",
        "scope",
        "profile_ids",
        "bound_profile_id",
        "status",
        "created_at",
        "updated_at",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!(row["label"], "@VZFinance_bot");
    assert_eq!(row["profile_ids"], serde_json::json!(["prof_vzfin"]));
    assert_eq!(row["bound_profile_id"], "prof_vzfin");
    assert_eq!(row["is_default"], true);
    assert_eq!(
        row["config"],
        serde_json::json!({"bot_token": "********", "bot_user_id": 42, "bot_username": "VZFinance_bot"})
    );
    assert_eq!(by_id(&email_id)["label"], "Alerts");
    assert_eq!(by_id(&email_id)["config"]["api_key"], "********");

    let shown: Value = serde_json::from_str(&w.ok(&["show", &pnc, "--json"], None)).unwrap();
    assert_eq!(shown["config"]["institution_name"], "PNC");
    assert_eq!(shown["config"]["access_token"], "********");
    let plain = w.ok(&["show", &pnc], None);
    assert!(
        plain.contains("enrollment_id: enr_pnc")
            && plain.contains("scope:       agents: prof_vzfin"),
        "{plain}"
    );
    let table = w.ok(&["list", "--user", "u1", "--type", "teller"], None);
    assert!(table.contains(&pnc) && !table.contains(&bot), "{table}");

    w.ok(&["scope", &pnc, "--agents", "prof_coding,prof_vzfin"], None);
    assert_eq!(
        by(&w, &pnc)["profile_ids"],
        serde_json::json!(["prof_coding", "prof_vzfin"])
    );
    w.ok(&["scope", &pnc, "--all"], None);
    assert_eq!(
        (
            by(&w, &pnc)["scope"].clone(),
            by(&w, &pnc)["profile_ids"].clone()
        ),
        ("all".into(), serde_json::json!([]))
    );
    w.ok(&["default", &email_id], None);
    assert_eq!(
        (
            by(&w, &email_id)["is_default"].clone(),
            by(&w, &bot)["is_default"].clone()
        ),
        (true.into(), false.into())
    );
    w.ok(&["disable", &pnc], None);
    assert_eq!(by(&w, &pnc)["enabled"], false);
    w.ok(&["enable", &pnc], None);
    assert_eq!(by(&w, &pnc)["enabled"], true);
    let out = w.ok(&["rm", &email_id], None);
    assert!(out.contains(&format!("deleted {email_id}")), "{out}");
    assert_eq!(w.list("u1").len(), 2);
    assert!(
        w.fails(&["show", &email_id], None)
            .contains(&format!("integration '{email_id}' does not exist"))
    );
}

fn by(w: &World, id: &str) -> Value {
    serde_json::from_str(&w.ok(&["show", id, "--json"], None)).unwrap()
}

#[test]
fn bad_input_is_refused_clearly_and_writes_nothing() {
    let w = World::new();
    w.profile("prof_a", "u1", "a");
    w.profile("prof_theirs", "u2", "theirs");
    let gmail = w.add("gmail", "u1", GMAIL, &[]);
    let before = w.list("u1");

    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["add", "teller", "--user", "u1", "--config", "-"],
            Some("{not json"),
            "not valid",
        ),
        (
            &["add", "teller", "--user", "u1", "--config", "-"],
            Some(r#"{"enrollment_id":"e","institution_name":"P"}"#),
            "missing the required field 'access_token'",
        ),
        (
            &["add", "sms", "--user", "u1", "--config", "-"],
            Some("{}"),
            "unknown integration type 'sms'",
        ),
        (
            &[
                "add",
                "teller",
                "--user",
                "u1",
                "--config",
                "-",
                "--agents",
                "prof_theirs",
            ],
            Some(&teller("e1", "P")),
            "profile 'prof_theirs' is not one of this user's profiles",
        ),
        (
            &[
                "add", "teller", "--user", "u1", "--config", "-", "--agents", "",
            ],
            Some(&teller("e1", "P")),
            "--agents needs at least one profile id",
        ),
        (
            &[
                "add", "teller", "--user", "u1", "--config", "-", "--agents", ",,",
            ],
            Some(&teller("e1", "P")),
            "--agents needs at least one profile id",
        ),
        (
            &["add", "gmail", "--user", "u1", "--config", "-"],
            Some(GMAIL),
            "already has a gmail integration",
        ),
        (
            &[
                "add",
                "teller",
                "--user",
                "u1",
                "--config",
                "-",
                "--bound-profile",
                "prof_a",
            ],
            Some(&teller("e1", "P")),
            "only a telegram bot",
        ),
        (
            &[
                "add",
                "teller",
                "--user",
                "u1",
                "--config",
                r#"{"access_token":"x"}"#,
            ],
            None,
            "never go on the command line",
        ),
        (
            &[
                "add",
                "teller",
                "--user",
                "u1",
                "--config",
                "@/nonexistent/config.json",
            ],
            None,
            "cannot read the config file",
        ),
        (
            &["add", "teller", "--user", "bad user", "--config", "-"],
            Some(&teller("e1", "P")),
            "invalid user id",
        ),
        (
            &["scope", "int_doesnotexist00000000000", "--all"],
            None,
            "does not exist",
        ),
        (
            &["scope", &gmail, "--agents", "prof_theirs"],
            None,
            "profile 'prof_theirs' is not one of this user's profiles",
        ),
        (
            &["default", "int_doesnotexist00000000000"],
            None,
            "does not exist",
        ),
        (
            &["enable", "int_doesnotexist00000000000"],
            None,
            "does not exist",
        ),
        (
            &["disable", "int_doesnotexist00000000000"],
            None,
            "does not exist",
        ),
        (
            &["rm", "int_doesnotexist00000000000"],
            None,
            "does not exist",
        ),
        (
            &["show", "int_doesnotexist00000000000"],
            None,
            "does not exist",
        ),
        (
            &["list", "--user", "u1", "--type", "fax"],
            None,
            "unknown integration type 'fax'",
        ),
        (
            &[
                "profiles", "add", "prof_a", "--user", "u1", "--slug", "other",
            ],
            None,
            "exists already",
        ),
        (
            &[
                "profiles",
                "add",
                "prof_b",
                "--user",
                "u1",
                "--slug",
                "Not A Slug",
            ],
            None,
            "invalid slug",
        ),
        (
            &["profiles", "rm", "prof_theirs", "--user", "u1"],
            None,
            "does not exist",
        ),
    ];
    for (args, stdin, needle) in cases {
        let err = w.fails(args, *stdin);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(w.list("u1"), before, "a refused command changed the store");
    assert_eq!(w.list("u2"), Vec::<Value>::new());
}

#[test]
fn removing_a_profile_takes_it_out_of_every_scope() {
    let w = World::new();
    w.profile("prof_a", "u1", "a");
    w.profile("prof_b", "u1", "b");
    let only_a = w.add(
        "teller",
        "u1",
        &teller("enr_a", "PNC"),
        &["--agents", "prof_a"],
    );
    let both = w.add(
        "teller",
        "u1",
        &teller("enr_b", "Chase"),
        &["--agents", "prof_a,prof_b"],
    );
    let out = w.ok(&["profiles", "rm", "prof_a", "--user", "u1"], None);
    assert!(out.contains("2 integration"), "{out}");
    assert_eq!(by(&w, &only_a)["profile_ids"], serde_json::json!([]));
    assert_eq!(by(&w, &both)["profile_ids"], serde_json::json!(["prof_b"]));
    let shown = w.ok(&["show", &only_a], None);
    assert!(shown.contains("grants nothing"), "{shown}");
    let profiles: Value =
        serde_json::from_str(&w.ok(&["profiles", "list", "--user", "u1", "--json"], None)).unwrap();
    assert_eq!(profiles.as_array().unwrap().len(), 1);
    assert_eq!(profiles[0]["id"], "prof_b");
}

#[test]
fn tampering_with_the_database_file_fails_safely_naming_the_row() {
    let w = World::new();
    let a = w.add("teller", "u1", &teller("enr_a", "PNC"), &[]);
    let b = w.add("teller", "u1", &teller("enr_b", "Chase"), &[]);
    let c = w.add("teller", "u1", &teller("enr_c", "NFCU"), &[]);

    // A ciphertext copied from another row does not open in this one.
    w.set_sealed(&b, &w.sealed(&a));
    // A flipped byte in the ciphertext does not open either.
    let sealed_c = w.sealed(&c);
    let (head, last) = sealed_c.rsplit_once('.').unwrap();
    let flipped_char = if last.starts_with('A') { 'B' } else { 'A' };
    let flipped = format!("{head}.{flipped_char}{}", &last[1..]);
    w.set_sealed(&c, &flipped);

    for id in [&b, &c] {
        let err = w.fails(&["show", id], None);
        assert!(
            err.contains(&format!("integration {id}")) && err.contains("fails authentication"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(by(&w, &a)["config"]["institution_name"], "PNC");

    // list still shows every row and every readable config, and exits non-zero.
    let out = w.run(&["list", "--user", "u1", "--json"], None);
    assert!(!out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(row(&a)["config"]["enrollment_id"], "enr_a");
    assert_eq!(row(&b)["config"], Value::Null);
    assert!(row(&b)["error"].as_str().unwrap().contains(&b));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&b) && stderr.contains(&c), "{stderr}");

    // A wrong key (same key id, other bytes) opens nothing and says so per row.
    let kid = w.keys.split('=').next().unwrap();
    let wrong = format!("{kid}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let out = w.run_with_keys(&["show", &a], None, &wrong);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("integration {a}")),
        "{}",
        text(&out.stderr)
    );
    // A keyring without that key id says which key is missing.
    let other = World::new();
    let out = w.run_with_keys(&["show", &a], None, &other.keys);
    assert!(
        text(&out.stderr).contains(&format!("encrypted under key '{kid}'")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keys_rotate_reseals_integrations_and_secrets_so_the_old_key_can_go() {
    for w in World::on_every_backend() {
        w.profile("prof_a", "u1", "a");
        let ids: Vec<String> = (0..5)
            .map(|n| {
                w.add(
                    "teller",
                    &format!("u{n}"),
                    &teller(&format!("enr_{n}"), "PNC"),
                    &[],
                )
            })
            .collect();
        // The CLI adds no secrets (the API does): seeded through the store.
        w.add_secrets("u1", &[("API_KEY", "sk-one"), ("DB_PASSWORD", "two")]);
        let env = ["secrets", "env", "--user", "u1", "--profile", "prof_a"];
        let granted = "API_KEY=sk-one\nDB_PASSWORD=two\n";
        assert_eq!(w.ok(&env, None), granted);

        // docs/operations.md's steps: the new key first, rotate, drop the old key.
        let old = w.keys.clone();
        let new = w.ok(&["keys", "generate"], None).trim().to_string();
        let new_kid = new.split('=').next().unwrap();
        let out = w.run_with_keys(&["keys", "rotate"], None, &format!("{new},{old}"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        // Piped, stdout holds the report alone: no progress bar.
        assert_eq!(
            text(&out.stdout),
            format!(
                "re-encrypted 5 of 5 integration(s) under key {new_kid}\n\
                 re-encrypted 2 of 2 secret(s) under key {new_kid}\n\
                 re-encrypted 0 of 0 connect flow verifier(s) under key {new_kid}\n"
            )
        );
        for id in &ids {
            let out = w.run_with_keys(&["show", id, "--json"], None, &new);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let out = w.run_with_keys(&env, None, &new);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), granted);
        // The old key alone opens nothing any more.
        let out = w.run_with_keys(&env, None, &old);
        assert!(!out.status.success(), "{}", text(&out.stdout));

        let out = w.run_with_keys(&["keys", "rotate"], None, &new);
        assert_eq!(
            text(&out.stdout),
            format!(
                "re-encrypted 0 of 5 integration(s) under key {new_kid}\n\
                 re-encrypted 0 of 2 secret(s) under key {new_kid}\n\
                 re-encrypted 0 of 0 connect flow verifier(s) under key {new_kid}\n"
            )
        );
    }
}

#[test]
fn a_missing_keyring_is_a_clear_error() {
    let w = World::new();
    let out = w.run_with_keys(
        &["add", "gmail", "--user", "u1", "--config", "-"],
        Some(GMAIL),
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("set INTEGRATIONS_KEYS or INTEGRATIONS_KEYS_FILE"),
        "{}",
        text(&out.stderr)
    );
    let keys_file = w.db.dir().join("keys");
    std::fs::write(&keys_file, format!("# the keyring\n{}\n", w.keys)).unwrap();
    let mut cmd = w.command(&["add", "gmail", "--user", "u1", "--config", "-"], "");
    cmd.env_remove("INTEGRATIONS_KEYS")
        .env("INTEGRATIONS_KEYS_FILE", &keys_file);
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(GMAIL.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(w.list("u1").len(), 1);
}

#[test]
fn secrets_appear_nowhere_in_the_file_the_output_or_the_logs() {
    let w = World::new();
    let canary = "CANARY7f3a9c";
    w.profile("prof_a", "u1", "a");
    let configs = [
        (
            "slack",
            format!(r#"{{"bot_token":"xoxb-{canary}","team_id":"T1","authed_user_id":"U1"}}"#),
        ),
        (
            "telegram",
            format!(r#"{{"bot_token":"7:{canary}","bot_user_id":7,"bot_username":"b"}}"#),
        ),
        (
            "gmail",
            format!(r#"{{"email":"a@gmail.com","refresh_token":"1//{canary}"}}"#),
        ),
        (
            "teller",
            format!(
                r#"{{"enrollment_id":"enr_1","access_token":"test_token_{canary}","institution_name":"PNC"}}"#
            ),
        ),
        (
            "email",
            format!(r#"{{"api_key":"re_{canary}","from_address":"a@x.io","to_address":"b@x.io"}}"#),
        ),
        (
            "webhook",
            format!(
                r#"{{"url":"https://hooks.example.com/catch/{canary}","secret":"whsec_{canary}"}}"#
            ),
        ),
    ];
    let mut seen = String::new();
    let mut record = |out: Output| {
        seen += &text(&out.stdout);
        seen += &text(&out.stderr);
    };
    let mut ids = Vec::new();
    for (kind, config) in &configs {
        let out = w.run(
            &["add", kind, "--user", "u1", "--config", "-"],
            Some(config),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        ids.push(text(&out.stdout).trim().to_string());
        record(out);
    }
    // Refused configs carrying the canary must not echo it either.
    for bad in [
        format!(
            r#"{{"enrollment_id":"enr_2","access_token":["{canary}"],"institution_name":"PNC"}}"#
        ),
        format!(
            r#"{{"enrollment_id":"enr_2","access_token":"{canary}","institution_name":"PNC","{canary}":1}}"#
        ),
        format!(r#""{canary}""#),
        format!(r#"{{"enrollment_id":"enr_2","access_token":"{canary}"#),
    ] {
        let out = w.run(
            &["add", "teller", "--user", "u1", "--config", "-"],
            Some(&bad),
        );
        assert!(!out.status.success());
        record(out);
    }
    record(w.run(&["list", "--user", "u1"], None));
    record(w.run(&["list", "--user", "u1", "--json"], None));
    for id in &ids {
        record(w.run(&["show", id], None));
        record(w.run(&["show", id, "--json"], None));
        record(w.run(&["scope", id, "--agents", "prof_a"], None));
    }
    record(w.run_with_keys(
        &["keys", "rotate"],
        None,
        &format!("{},{}", World::new().keys, w.keys),
    ));
    assert!(
        seen.contains("TRACE") || seen.contains("DEBUG"),
        "logs were not captured at the verbose level"
    );
    assert!(seen.contains("********"));
    assert!(
        !seen.contains(canary),
        "the canary leaked into CLI output or logs"
    );

    let mut clear_text_seen = false;
    for entry in std::fs::read_dir(w.db.dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, canary.as_bytes()),
            "the canary is in {}",
            path.display()
        );
        // The scan reads where the rows went: their clear-text columns are there.
        clear_text_seen |= contains(&bytes, b"enr_1");
    }
    // The WAL file (scanned above while it exists) is removed by the last
    // clean close; the journal mode says the store runs in WAL.
    let mode: String = w.raw(async |conn| {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(conn)
            .await
            .unwrap();
        mode
    });
    assert_eq!(mode, "wal");
    assert!(
        clear_text_seen,
        "the scan never saw the rows it was meant to check"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn concurrent_cli_processes_neither_lock_out_nor_lose_writes() {
    let w = World::new();
    w.ok(&["migrate"], None);
    w.profile("prof_a", "u1", "a");
    let writers = 10;
    let per_writer = 4;
    let children: Vec<_> = (0..writers)
        .map(|p| {
            let script = (0..per_writer)
                .map(|n| {
                    format!(
                        "echo '{}' | {BIN} add teller --user u1 --config - --agents prof_a || exit 1; {BIN} list --user u1 >/dev/null || exit 1",
                        teller(&format!("enr_{p}_{n}"), "PNC")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let mut sh = w.with_env(Command::new("sh"), &w.keys);
            sh.arg("-c").arg(script).env("RUST_LOG", "warn").stdin(Stdio::null());
            sh.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success(), "a writer failed: {err}");
        assert!(!err.contains("locked"), "{err}");
    }
    let rows = w.list("u1");
    assert_eq!(rows.len(), writers * per_writer, "writes were lost");
    let mut enrollments: Vec<String> = rows
        .iter()
        .map(|r| r["config"]["enrollment_id"].as_str().unwrap().to_string())
        .collect();
    enrollments.sort();
    enrollments.dedup();
    assert_eq!(enrollments.len(), writers * per_writer);
}

#[test]
fn what_a_user_wrote_cannot_drive_the_operators_terminal() {
    let w = World::new();
    w.ok(&["migrate"], None);
    // A label and a profile name as a tenant could set them over REST.
    let forged = "lbl\u{1b}]0;pwned\u{7}\u{1b}[2J\rFAKE LINE\nu2 int_x";
    w.add(
        "webhook",
        "u1",
        r#"{"url":"https://hooks.example.com/x"}"#,
        &["--label", forged],
    );
    w.ok(
        &[
            "profiles", "add", "prof_esc", "--user", "u1", "--slug", "esc", "--name", forged,
        ],
        None,
    );
    let id = w.list("u1")[0]["id"].as_str().unwrap().to_string();
    for shown in [
        w.ok(&["list", "--user", "u1"], None),
        w.ok(&["show", &id], None),
        w.ok(&["profiles", "list", "--user", "u1"], None),
    ] {
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert!(!shown.contains("\nFAKE LINE"), "{shown}");
        assert!(shown.contains(r"\u{1b}"), "{shown}");
    }
}
