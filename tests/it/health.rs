//! The health keeper (issue 27) from outside: `integrations health --once`
//! checks each connection at its provider (the fakes, and a real SMTP
//! server), marks those refused `needs_reauth` and leaves the rest be; a
//! row its provider takes again is active again; and `integrations serve`
//! with `HEALTH_INTERVAL=2s` finds by itself a grant Google killed, and
//! tells the platform, signed.

use std::time::{Duration, Instant};

use fakes::Fault;
use fakes::gmail::FakeGmail;
use fakes::slack::FakeSlack;
use fakes::smtp::{SmtpOptions, SmtpServer};
use fakes::telegram::FakeTelegram;
use fakes::teller::FakeTeller;
use fakes::webhook::FakeWebhook;
use serde_json::{Value, json};
use testkit::serve::Server;
use testkit::{Backend, Database, cli};

use crate::events::verified;

/// The fakes every check reaches, and a store.
struct World {
    db: Database,
    keys: String,
    teller: FakeTeller,
    google: FakeGmail,
    slack: FakeSlack,
    telegram: FakeTelegram,
    resend: fakes::resend::FakeResend,
    smtp: SmtpServer,
}

impl World {
    async fn new(db: Database) -> Self {
        let keys = cli::run(&db.url, "", &["keys", "generate"])
            .trim()
            .to_string();
        let smtp_dir = db.dir().join("smtp");
        std::fs::create_dir_all(&smtp_dir).unwrap();
        Self {
            keys,
            teller: FakeTeller::start().await.unwrap(),
            google: FakeGmail::start().await.unwrap(),
            slack: FakeSlack::start().await.unwrap(),
            telegram: FakeTelegram::start().await.unwrap(),
            resend: fakes::resend::FakeResend::start().await.unwrap(),
            smtp: SmtpServer::start(&smtp_dir, &SmtpOptions::starttls()).unwrap(),
            db,
        }
    }

    /// Where the providers are, and a keeper that checks every 2 s.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INTEGRATIONS_DB", self.db.url.clone()),
            ("INTEGRATIONS_KEYS", self.keys.clone()),
            ("HEALTH_INTERVAL", "2s".into()),
            ("TELLER_API_BASE", self.teller.base_url().to_string()),
            ("GOOGLE_TOKEN_URL", self.google.token_url()),
            ("GMAIL_API_BASE", self.google.api_base()),
            ("GMAIL_CLIENT_ID", fakes::gmail::CLIENT_ID.into()),
            ("GMAIL_CLIENT_SECRET", fakes::gmail::CLIENT_SECRET.into()),
            ("SLACK_API_BASE", self.slack.base_url()),
            ("TELEGRAM_API_BASE", self.telegram.base_url()),
            ("RESEND_API_BASE", self.resend.base_url()),
            ("SMTP_CA_PATH", self.smtp.ca.display().to_string()),
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1".into()),
        ]
    }

    /// `integrations add <kind>` for `user` with `config`: the row's id.
    fn add(&self, kind: &str, user: &str, config: Value) -> String {
        cli::run_with_stdin(
            &self.db.url,
            &self.keys,
            &["add", kind, "--user", user, "--config", "-"],
            &config.to_string(),
        )
        .trim()
        .to_string()
    }

    /// One round of `integrations health --once`: its summary line.
    fn health_once(&self) -> String {
        let out = cli::command(&self.db.url, &self.keys, &["health", "--once"])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `integrations show <id> --json`.
    fn shown(&self, id: &str) -> Value {
        serde_json::from_str(&cli::run(&self.db.url, &self.keys, &["show", id, "--json"])).unwrap()
    }

    fn status(&self, id: &str) -> String {
        self.shown(id)["status"].as_str().unwrap().to_string()
    }
}

/// The six numbers of a round's summary line.
fn counts(line: &str) -> Vec<usize> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_marks_what_each_provider_refuses_and_recovers_what_it_takes_again() {
    Backend::each("health", async |db| {
        let w = World::new(db).await;
        let login = SmtpOptions::starttls();
        let smtp = |username: &str, password: &str| {
            json!({"provider": "smtp", "smtp_host": "localhost", "smtp_port": w.smtp.port,
                   "smtp_username": username, "smtp_password": password,
                   "from_address": "alerts@example.com", "to_address": "me@example.com"})
        };
        let good = [
            w.add("gmail", "u_gmail", json!({"email": fakes::gmail::EMAIL,
                "refresh_token": fakes::gmail::REFRESH_TOKEN, "scopes": fakes::gmail::SCOPES.split(' ').collect::<Vec<_>>()})),
            w.add("teller", "u_bank", json!({"enrollment_id": "enr_pnc",
                "access_token": fakes::teller::PNC_TOKEN, "institution_name": "PNC"})),
            w.add("slack", "u_slack", json!({"bot_token": fakes::slack::SLACK_TOKEN,
                "team_id": fakes::slack::TEAM_ID, "authed_user_id": fakes::slack::USER_ID})),
            w.add("telegram", "u_bot", json!({"bot_token": fakes::telegram::BOT_TOKEN,
                "bot_user_id": fakes::telegram::BOT_ID, "bot_username": fakes::telegram::BOT_USERNAME})),
            w.add("email", "u_resend", json!({"api_key": fakes::resend::API_KEY,
                "from_address": "alerts@example.com", "to_address": "me@example.com"})),
            w.add("email", "u_smtp", smtp(&login.username, &login.password)),
        ];
        let bad = [
            w.add("teller", "u_bank", json!({"enrollment_id": "enr_dead",
                "access_token": "test_token_dead", "institution_name": "Dead Bank"})),
            w.add("slack", "u_slack2", json!({"bot_token": "xoxb-revoked",
                "team_id": fakes::slack::TEAM_ID, "authed_user_id": "U0SOMEONE"})),
            w.add("email", "u_resend2", json!({"api_key": "re_unknown_key",
                "from_address": "alerts@example.com", "to_address": "me@example.com"})),
            w.add("email", "u_smtp2", smtp("someone@example.com", "wrong-password")),
        ];
        // A webhook holds no credential: not checked.
        w.add("webhook", "u_hook", json!({"url": "https://example.com/hook"}));

        // Telegram refuses the good bot once: marked, then recovered.
        w.telegram.faults().inject(Fault::status(
            &format!("/bot{}/getMe", fakes::telegram::BOT_TOKEN),
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        ));
        assert_eq!(
            w.health_once(),
            "checked 10: 5 healthy, 5 now needs_reauth, 0 still refused, 0 recovered, 0 unknown"
        );
        let telegram = &good[3];
        for id in good.iter().filter(|id| *id != telegram) {
            assert_eq!(w.status(id), "active", "{id}");
        }
        for id in bad.iter().chain([telegram]) {
            assert_eq!(w.status(id), "needs_reauth", "{id}");
        }
        // Why, in the provider's words, and since when; never the secret.
        let smtp_refused = w.shown(&bad[3]);
        assert_eq!(smtp_refused["status_reason"], "provider_refused");
        let words = smtp_refused["status_detail"].as_str().unwrap();
        assert!(words.contains("535"), "{words}");
        assert!(!words.contains("wrong-password"), "{words}");
        assert!(smtp_refused["status_since"].as_str().unwrap().starts_with("20"));
        assert!(w.shown(&good[0]).get("status_reason").is_none());
        // Checked already: nothing is due again before the interval.
        assert!(w.health_once().starts_with("checked 0:"));

        // Google kills the grant; the next rounds find it, and find the
        // bot taken again.
        w.google.kill_grant();
        let started = Instant::now();
        let mut totals = [0; 6];
        while w.status(&good[0]) != "needs_reauth" || w.status(telegram) != "active" {
            assert!(started.elapsed() < Duration::from_secs(30), "no round found them");
            for (total, n) in totals.iter_mut().zip(counts(&w.health_once())) {
                *total += n;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // checked, healthy, now needs_reauth, still refused, recovered, unknown
        assert_eq!(totals[2], 1, "only Gmail was marked: {totals:?}");
        assert_eq!(totals[4], 1, "only the bot recovered: {totals:?}");
        assert_eq!(totals[5], 0);
        assert!(w.shown(telegram).get("status_reason").is_none());
        assert_eq!(w.shown(&good[0])["status_reason"], "provider_refused");
        for id in good[1..].iter().filter(|id| *id != telegram) {
            assert_eq!(w.status(id), "active", "{id}");
        }
        for id in &bad {
            assert_eq!(w.status(id), "needs_reauth", "{id}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_finds_a_killed_grant_by_itself_and_tells_the_platform_signed() {
    Backend::each("keeper", async |db| {
        let w = World::new(db).await;
        let gmail = w.add(
            "gmail",
            "u_gmail",
            json!({"email": fakes::gmail::EMAIL, "refresh_token": fakes::gmail::REFRESH_TOKEN,
                   "scopes": fakes::gmail::SCOPES.split(' ').collect::<Vec<_>>()}),
        );
        let receiver = FakeWebhook::start().await.unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut env = w.env();
        env.push(("INTEGRATIONS_EVENTS_URL", receiver.url("/events")));
        env.push(("INTEGRATIONS_EVENTS_SECRET", secret.into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let served = Server::start(
            &cli::integrations(),
            &["serve", "--listen", "127.0.0.1:0"],
            &env,
        )
        .await;
        w.google.kill_grant();
        let started = Instant::now();
        let reauth = loop {
            let received = receiver.received();
            let payloads = verified(secret, &received);
            if let Some(found) = payloads
                .into_iter()
                .find(|p| p["type"] == "integration.needs_reauth")
            {
                break found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no needs_reauth event: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(reauth["data"]["id"], gmail.as_str());
        assert_eq!(reauth["data"]["type"], "gmail");
        assert_eq!(reauth["data"]["user_id"], "u_gmail");
        assert_eq!(reauth["data"]["reason"], "provider_refused");
        let words = reauth["data"]["message"].as_str().unwrap();
        assert!(words.contains("invalid_grant"), "{words}");
        assert!(!words.contains(fakes::gmail::REFRESH_TOKEN));
        assert_eq!(w.status(&gmail), "needs_reauth");
    })
    .await;
}
