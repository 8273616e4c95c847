//! Events to the platform (issue 27), from outside: a change made through
//! the CLI reaches `INTEGRATIONS_EVENTS_URL` from `integrations serve`,
//! signed as Standard Webhooks are (checked with the `standardwebhooks`
//! library from PyPI, not with our code), in order, and still after the
//! server was killed with SIGKILL between the change and its delivery.

use std::time::{Duration, Instant};

use base64::Engine as _;
use fakes::Fault;
use fakes::webhook::{Delivery, FakeWebhook};
use serde_json::{Value, json};
use testkit::serve::Server;
use testkit::{Backend, Database, cli};

const USER: &str = "u_amouzou";

/// Verifies `deliveries` with the Standard Webhooks library: their payloads.
pub fn verified(secret: &str, deliveries: &[Delivery]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/standard_webhooks.py");
    let request = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| json!({
            "headers": d.headers.iter().map(|(n, v)| (n.clone(), Value::from(v.as_str()))).collect::<serde_json::Map<String, Value>>(),
            "body": String::from_utf8_lossy(&d.body),
        })).collect::<Vec<_>>(),
    });
    let library = fakes::python::package("standardwebhooks", "standardwebhooks").unwrap();
    let out = fakes::python::run(
        script.as_ref(),
        Some(&library),
        request.to_string().as_bytes(),
    )
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Standard Webhooks library refused a delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `integrations serve` on `db`, sending its events to `url`.
async fn serve(db: &Database, keys: &str, url: &str, secret: &str) -> Server {
    Server::start(
        &cli::integrations(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("INTEGRATIONS_DB", &db.url),
            ("INTEGRATIONS_KEYS", keys),
            ("INTEGRATIONS_EVENTS_URL", url),
            ("INTEGRATIONS_EVENTS_SECRET", secret),
        ],
    )
    .await
}

/// Waits, at most a minute, until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_platform_signed_in_order_and_survive_a_kill() {
    Backend::each("events", async |db| {
        let keys = cli::run(&db.url, "", &["keys", "generate"])
            .trim()
            .to_string();
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let receiver = FakeWebhook::start().await.unwrap();
        receiver
            .faults()
            .inject(Fault::status("/events", 500, json!({})).times(usize::MAX));
        let mut server = serve(&db, &keys, &receiver.url("/events"), &secret).await;

        // Two changes through the CLI, which knows nothing of events.
        cli::run(
            &db.url,
            &keys,
            &[
                "profiles", "add", "prof_fin", "--user", USER, "--slug", "fin",
            ],
        );
        let config = json!({"enrollment_id": "enr_ev", "access_token": "test_token_ev",
                            "institution_name": "PNC"});
        let id = cli::run_with_stdin(
            &db.url,
            &keys,
            &["add", "teller", "--user", USER, "--config", "-"],
            &config.to_string(),
        )
        .trim()
        .to_string();
        cli::run(&db.url, &keys, &["scope", &id, "--agents", "prof_fin"]);

        // The first attempt fails; the server dies before another.
        until("a first attempt", || {
            !receiver.faults().requests().is_empty()
        })
        .await;
        let first_id = receiver.faults().requests()[0].message_key.clone();
        server.child.start_kill().unwrap();
        server.child.wait().await.unwrap();
        receiver.faults().clear_faults();
        assert!(receiver.received().is_empty());

        // Another process takes over once the dead one's lease lapses.
        let _again = serve(&db, &keys, &receiver.url("/events"), &secret).await;
        until("both events", || receiver.received().len() >= 2).await;
        let deliveries = receiver.received();
        let payloads = verified(&secret, &deliveries);
        let kinds: Vec<&str> = payloads
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["integration.connected", "integration.scope_changed"]
        );
        for payload in &payloads {
            assert_eq!(payload["data"]["id"], id.as_str());
            assert_eq!(payload["data"]["type"], "teller");
            assert_eq!(payload["data"]["user_id"], USER);
        }
        assert_eq!(payloads[1]["data"]["profile_ids"], json!(["prof_fin"]));
        // The same event, the same webhook-id, across processes.
        assert_eq!(deliveries[0].header("webhook-id"), first_id.as_deref());
        let shown = String::from_utf8_lossy(&deliveries[0].body).to_string();
        assert!(!shown.contains("test_token_ev"), "{shown}");
    })
    .await;
}
