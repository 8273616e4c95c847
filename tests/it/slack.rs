//! Slack as a chat surface of `integrations serve` over real HTTP, with the
//! fake Slack delivering signed events to `/api/slack/events` as Slack
//! would (redelivering a late or failed answer): verification, routing into
//! the outbox, what is ignored, redeliveries, notification threads, and one
//! routing with the resolver's plans on the product's example. Each test
//! runs on SQLite, and on PostgreSQL when `INTEGRATIONS_TEST_POSTGRES` is set.

use std::time::Duration;

use fakes::slack;
use fakes::slack::events::{self, Attempt, SIGNING_SECRET};
use fakes::telegram as tg;
use reqwest::StatusCode;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

use testkit::{Backend, Database, cli};

use crate::chat::{self, USER};

/// The user who connected Slack, and their direct messages with the bot.
const OWNER: &str = slack::USER_ID;

/// [`chat::World`] with Slack connected by [`OWNER`].
struct World {
    chat: chat::World,
    /// The Slack integration's id.
    id: String,
    /// For the messages' `ts`.
    next_ts: std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for World {
    type Target = chat::World;

    fn deref(&self) -> &chat::World {
        &self.chat
    }
}

impl World {
    /// A server on `db` with the profiles vzfin (the default) and coding,
    /// the fake Slack's Request URL set to its events, and Slack connected
    /// by [`OWNER`].
    async fn new(db: Database) -> Self {
        let chat = chat::World::start(db, &[]).await;
        // Setting the Request URL: the server answers Slack's challenge.
        chat.slack
            .set_request_url(&format!("{}/api/slack/events", chat.base))
            .await
            .unwrap();
        let id = chat.add(
            "slack",
            &[],
            json!({"bot_token": slack::SLACK_TOKEN, "team_id": slack::TEAM_ID, "team_name": "Vox Gateway", "authed_user_id": OWNER, "bot_user_id": slack::BOT_USER_ID}),
        );
        Self {
            chat,
            id,
            next_ts: 100.into(),
        }
    }

    async fn patch(&self, id: &str, body: Value) {
        let (status, answer) = self
            .api("PATCH", &format!("/v1/integrations/{id}"), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    /// A new message `ts`.
    fn ts(&self) -> String {
        let n = self
            .next_ts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("1700000100.{n:06}")
    }

    /// Delivers `event` as Slack does: the attempts it took.
    async fn deliver(&self, event: Value) -> Vec<Attempt> {
        self.slack
            .deliver(&self.slack.envelope(event))
            .await
            .unwrap()
    }

    /// [`OWNER`] writes `text` to the bot; it is answered at once, 200.
    async fn say(&self, text: &str) -> String {
        let ts = self.ts();
        answered_once(&self.deliver(events::dm(OWNER, text, &ts)).await);
        ts
    }

    /// [`OWNER`] replies `text` in the thread of `parent`.
    async fn reply(&self, parent: &str, text: &str) {
        let ts = self.ts();
        answered_once(
            &self
                .deliver(events::dm_reply(OWNER, text, &ts, parent))
                .await,
        );
    }

    /// The last outbox row: profile, text, session.
    async fn last(&self) -> (String, String, Value) {
        let last = self.inbound().await.pop().expect("an outbox row");
        (
            last["profile_id"].as_str().unwrap().into(),
            last["text"].as_str().unwrap().into(),
            last["claimed_session_id"].clone(),
        )
    }

    /// The bot's replies in Slack, once there are at least `n`.
    async fn posted(&self, n: usize) -> Vec<slack::Posted> {
        for _ in 0..200 {
            let posted = self.slack.posted();
            if posted.len() >= n {
                return posted;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} messages posted, not {n}", self.slack.posted().len());
    }

    /// `agent` notifies over Slack with `claim_thread`: the posted message.
    async fn notify_thread(
        &self,
        agent: &RunningService<RoleClient, ()>,
        label: &str,
    ) -> slack::Posted {
        let args = json!({"message": "Your tax form is ready.", "channel": "slack", "claim_thread": true, "claim_thread_label": label});
        let result = agent
            .call_tool(
                CallToolRequestParams::new("notify_user")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true), "{:?}", result.content);
        self.slack.posted().pop().unwrap()
    }
}

/// Slack got a 2xx to its first delivery, within its 3 seconds.
fn answered_once(attempts: &[Attempt]) {
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].status, Some(200), "{attempts:?}");
    assert!(attempts[0].elapsed < events::ANSWER_WITHIN, "{attempts:?}");
}

async fn each_backend(test: impl AsyncFn(World)) {
    Backend::each("slack", async |db| test(World::new(db).await).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_refused_unless_slack_signed_it_within_five_minutes() {
    each_backend(async |w: World| {
        let url = format!("{}/api/slack/events", w.base);
        let envelope = w.slack.envelope(events::dm(OWNER, "hello", &w.ts()));
        let body = serde_json::to_vec(&envelope).unwrap();
        let now = events::now();
        let post = async |body: &[u8], at: i64, secret: &str| {
            w.slack
                .post_signed(&url, body, at, secret, &[])
                .await
                .unwrap()
        };
        let mut altered = body.clone();
        let at = altered.len() - 2;
        altered[at] ^= 1;
        // Offsets from the moment of sending, 30 s past the five minutes
        // on either side: a slow run cannot bring one back within them.
        for (body, offset, secret, case) in [
            (&body[..], 0, "not the signing secret", "another secret"),
            (&body[..], -330, SIGNING_SECRET, "stale"),
            (&body[..], 330, SIGNING_SECRET, "from the future"),
        ] {
            let response = post(body, events::now() + offset, secret).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
            let text = response.text().await.unwrap();
            assert!(!text.contains(SIGNING_SECRET), "{text}");
        }
        // A body changed after signing, or signed for another timestamp.
        let signed = events::signature(SIGNING_SECRET, now, &body);
        for (payload, timestamp) in [
            (&altered[..], now.to_string()),
            (&body[..], (now - 1).to_string()),
        ] {
            let status = w
                .http
                .post(&url)
                .header("X-Slack-Request-Timestamp", timestamp)
                .header("X-Slack-Signature", &signed)
                .body(payload.to_vec())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // Missing headers.
        for headers in [
            vec![("X-Slack-Request-Timestamp", now.to_string())],
            vec![("X-Slack-Signature", signed.clone())],
            vec![],
        ] {
            let mut request = w.http.post(&url).body(body.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            assert_eq!(
                request.send().await.unwrap().status(),
                StatusCode::UNAUTHORIZED
            );
        }
        // A url_verification is no exception.
        let challenge = serde_json::to_vec(
            &json!({"type": "url_verification", "challenge": "c1", "token": "t"}),
        )
        .unwrap();
        assert_eq!(
            post(&challenge, now, "forged").await.status(),
            StatusCode::UNAUTHORIZED
        );
        let answer: Value = post(&challenge, now, SIGNING_SECRET)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer, json!({"challenge": "c1"}));
        assert!(
            w.inbound().await.is_empty(),
            "a refused request wrote nothing"
        );

        // The same event, signed: written.
        assert_eq!(
            post(&body, now, SIGNING_SECRET).await.status(),
            StatusCode::OK
        );
        assert_eq!(w.inbound().await.len(), 1);
        assert!(!w.log.lock().unwrap().contains(SIGNING_SECRET));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_messages_and_mentions_are_routed_into_the_outbox_and_forwarded() {
    each_backend(async |w: World| {
        let first = w.say("What did I spend on food?").await;
        w.say("@coding fix the build").await;
        let mention_ts = w.ts();
        answered_once(
            &w.deliver(events::mention(
                OWNER,
                "C0GENERAL",
                "@vzfin: and on rent?",
                &mention_ts,
            ))
            .await,
        );
        w.reply(&first, "and on coffee?").await;
        let inbound = w.inbound().await;
        let seen: Vec<(&str, &str, &str, Option<&str>)> = inbound
            .iter()
            .map(|m| {
                (
                    m["profile_id"].as_str().unwrap(),
                    m["text"].as_str().unwrap(),
                    m["channel"].as_str().unwrap(),
                    m["thread_ts"].as_str(),
                )
            })
            .collect();
        let dm = events::dm_channel(OWNER);
        assert_eq!(
            seen,
            [
                ("prof_vzfin", "What did I spend on food?", dm.as_str(), None),
                ("prof_coding", "fix the build", dm.as_str(), None),
                ("prof_vzfin", "and on rent?", "C0GENERAL", None),
                (
                    "prof_vzfin",
                    "and on coffee?",
                    dm.as_str(),
                    Some(first.as_str())
                ),
            ]
        );
        assert_eq!(inbound[0]["ts"], first.as_str());
        assert_eq!(inbound[2]["ts"], mention_ts.as_str());
        assert!(inbound.iter().all(|m| m["integration_id"] == w.id.as_str()
            && m["chat_id"] == m["channel"]
            && m["claimed_session_id"].is_null()
            && m["command"].is_null()));
        let lines = cli::run(&w.url, &w.keys, &["inbound", "--user", USER]);
        assert_eq!(lines.lines().count(), 4, "{lines}");

        // Each row is also POSTed, signed like an outbound webhook.
        let forwarded = w.forwarded(4).await;
        assert_eq!(forwarded.len(), 4);
        assert!(forwarded.iter().all(|f| {
            f.header("webhook-signature")
                .is_some_and(|s| s.starts_with("v1,"))
        }));
        let body: Value = serde_json::from_slice(&forwarded[3].body).unwrap();
        assert_eq!(
            (&body["channel"], &body["thread_ts"]),
            (&json!(dm), &json!(first))
        );

        // A message that cannot be routed is answered in its thread, not written.
        let unknown = w.say("@nobody hi").await;
        let posted = w.posted(1).await;
        assert!(
            posted[0].text.contains("no profile is named @nobody"),
            "{}",
            posted[0].text
        );
        assert_eq!(posted[0].thread_ts.as_deref(), Some(unknown.as_str()));
        w.patch(&w.id, json!({"profile_ids": ["prof_vzfin"]})).await;
        w.say("@coding and the tests").await;
        assert!(
            w.posted(2).await[1]
                .text
                .contains("not granted to profile @coding")
        );
        assert_eq!(w.inbound().await.len(), 4);

        // Not heard: our bot's own replies (and its notifications), edits,
        // another user, our bot's user, a channel message without a
        // mention, another team, an unknown event.
        let mut edited = events::dm(OWNER, "What did I spend on fuel?", &w.ts());
        edited["subtype"] = json!("message_changed");
        let mut bot_message = events::dm("U0OTHERBOT", "beep", &w.ts());
        bot_message["bot_id"] = json!("B0OTHER");
        bot_message["subtype"] = json!("bot_message");
        // An app posting in the owner's name carries its bot_id alone.
        let mut app_as_owner = events::dm(OWNER, "posted by an app", &w.ts());
        app_as_owner["bot_id"] = json!("B0OTHER");
        let mut in_channel = events::dm(OWNER, "hello channel", &w.ts());
        in_channel["channel_type"] = json!("channel");
        in_channel["channel"] = json!("C0GENERAL");
        let mut ignored = vec![
            events::bot_echo(&posted[0]),
            edited,
            bot_message,
            app_as_owner,
            events::dm("U0STRANGER", "hello?", &w.ts()),
            events::dm(slack::BOT_USER_ID, "it is me", &w.ts()),
            in_channel,
            json!({"type": "reaction_added", "user": OWNER, "reaction": "thumbsup"}),
        ]
        .into_iter()
        .map(|event| w.slack.envelope(event))
        .collect::<Vec<_>>();
        let mut other_team = w
            .slack
            .envelope(events::dm(OWNER, "from elsewhere", &w.ts()));
        other_team["team_id"] = json!("T0ELSEWHERE");
        ignored.push(other_team);
        for envelope in &ignored {
            answered_once(&w.slack.deliver(envelope).await.unwrap());
        }
        // ...nor, while it is disabled, the owner.
        w.patch(&w.id, json!({"enabled": false})).await;
        w.say("anyone?").await;
        assert_eq!(w.inbound().await.len(), 4, "nothing else was written");
        assert_eq!(w.slack.posted().len(), 2, "and nothing answered");
        w.patch(&w.id, json!({"enabled": true})).await;
        w.say("back").await;
        assert_eq!(w.last().await.1, "back");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_is_answered_before_a_slow_forward_and_a_redelivery_writes_once() {
    each_backend(async |w: World| {
        // The forward target holds its answer for a while...
        w.forward
            .faults()
            .inject(fakes::Fault::delay("/inbound", Duration::from_secs(5)));
        let envelope = w.slack.envelope(events::dm(OWNER, "hello?", &w.ts()));
        // ...and Slack has its answer first, within its 3 seconds.
        answered_once(&w.slack.deliver(&envelope).await.unwrap());
        assert!(w.forward.received().is_empty(), "the answer waited for the forward");
        // Slack delivers the same event again: one row, one forward.
        let again = w.slack.attempt(&envelope, 1, Some("http_timeout")).await.unwrap();
        assert_eq!(again.status, Some(200));
        let forwarded = w.forwarded(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(w.forward.received().len(), 1);
        let inbound = w.inbound().await;
        assert_eq!(inbound.len(), 1, "{inbound:?}");
        let body: Value = serde_json::from_slice(&forwarded[0].body).unwrap();
        assert_eq!(body["id"], inbound[0]["id"]);

        // When the store fails the event is answered 500, and Slack
        // delivers it again, three times at most; each failure is kept for
        // the operator.
        w.exec("DROP TABLE inbound_messages").await;
        let attempts = w
            .slack
            .deliver(&w.slack.envelope(events::dm(OWNER, "is anyone there?", &w.ts())))
            .await
            .unwrap();
        let outcome: Vec<(u32, Option<u16>)> = attempts.iter().map(|a| (a.retry, a.status)).collect();
        assert_eq!(outcome, [(0, Some(500)), (1, Some(500)), (2, Some(500)), (3, Some(500))]);
        let (status, _) = w.api("GET", "/v1/inbound", Value::Null).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            w.count("SELECT count(*) FROM audit_log WHERE server = 'slack' AND tool = 'webhook_update' AND decision = 'error' AND detail LIKE '%inbound_messages%'").await,
            4
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_in_a_notifications_thread_carries_its_session_only_for_its_profile() {
    each_backend(async |mut w: World| {
        let finance = w.agent("prof_vzfin", "sess_taxes").await;
        let taxes = w.notify_thread(&finance, "Taxes").await;
        let footer = taxes.attachments.as_ref().unwrap()[0]["footer"].as_str().unwrap().to_string();
        assert!(footer.contains("Reply in this thread") && footer.contains("Taxes"), "{footer}");
        // Slack tells us of our own notification: not heard.
        answered_once(&w.deliver(events::bot_echo(&taxes)).await);
        assert!(w.inbound().await.is_empty());

        // Every reply in its thread routed to vzfin continues the session.
        w.reply(&taxes.ts, "here it is").await;
        assert_eq!(w.last().await, ("prof_vzfin".into(), "here it is".into(), json!("sess_taxes")));
        w.reply(&taxes.ts, "and the receipt").await;
        assert_eq!(w.last().await.2, json!("sess_taxes"));
        // One routed to another profile does not, nor one outside the thread.
        w.reply(&taxes.ts, "@coding fix the build").await;
        assert_eq!(w.last().await, ("prof_coding".into(), "fix the build".into(), Value::Null));
        w.say("unrelated").await;
        assert_eq!(w.last().await.2, Value::Null);

        // A thread of another profile's session is joined only by its profile.
        let coding = w.agent("prof_coding", "sess_build").await;
        let build = w.notify_thread(&coding, "Build").await;
        w.reply(&build.ts, "looks good").await;
        assert_eq!(w.last().await, ("prof_vzfin".into(), "looks good".into(), Value::Null));
        w.reply(&build.ts, "@coding ship it").await;
        assert_eq!(w.last().await, ("prof_coding".into(), "ship it".into(), json!("sess_build")));

        // Once Slack is no longer granted to vzfin, its thread is not joined.
        w.patch(&w.id, json!({"scope": "agents", "profile_ids": ["prof_coding"]})).await;
        let before = w.inbound().await.len();
        w.reply(&taxes.ts, "@vzfin still there?").await;
        assert_eq!(w.inbound().await.len(), before, "not routed to vzfin");
        w.reply(&build.ts, "@coding and now?").await;
        assert_eq!(w.last().await.2, json!("sess_build"));
        finance.cancel().await.unwrap();
        coding.cancel().await.unwrap();

        // Deleting the integration deletes its threads.
        let (status, _) = w.api("DELETE", &format!("/v1/integrations/{}", w.id), Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        w.id = w.add(
            "slack",
            &[],
            json!({"bot_token": slack::SLACK_TOKEN, "team_id": slack::TEAM_ID, "authed_user_id": OWNER}),
        );
        w.reply(&build.ts, "@coding after reconnecting").await;
        assert_eq!(w.last().await.2, Value::Null);
    })
    .await;
}

/// The plan's `inbound` of `profile`: surface id → routing.
fn inbound_of(w: &World, profile: &str) -> Vec<(String, String)> {
    let resolver = testkit::bin("resolver");
    let out = std::process::Command::new(resolver)
        .args(["plan", "--user", USER, "--profile", profile])
        .env_clear()
        .env("INTEGRATIONS_DB", &w.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["inbound"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["integration_id"].as_str().unwrap().into(),
                s["routing"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Connects the fake Telegram's bot `token` (bound to `bound`) and pairs
/// the owner's chat: the row's id.
async fn paired_bot(w: &World, token: &str, bound: Option<&str>) -> String {
    let (status, connected) = w
        .api(
            "POST",
            "/v1/integrations/telegram/connect",
            json!({"bot_token": token, "bound_profile_id": bound}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{connected}");
    let code = connected["link_url"]
        .as_str()
        .unwrap()
        .split("?start=")
        .nth(1)
        .unwrap();
    let start = tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, &format!("/start {code}"));
    assert_eq!(w.telegram.deliver(token, start).await.unwrap(), 200);
    connected["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_go_where_the_plans_inbound_says_on_the_product_example() {
    each_backend(async |w: World| {
        // `shared/seeds/integrations-and-scope.txt`: Slack (Vox Gateway)
        // for all, @VonzioBot for all and unbound, @VZFinance_bot for
        // vzfin and bound to it, Gmail, two Teller enrollments for vzfin,
        // Email and a Webhook.
        let vonzio = paired_bot(&w, tg::BOT_TOKEN, None).await;
        let finance = paired_bot(&w, tg::BOT2_TOKEN, Some("prof_vzfin")).await;
        w.patch(&finance, json!({"scope": "agents", "profile_ids": ["prof_vzfin"]})).await;
        w.add("gmail", &[], json!({"email": "amouzou@gmail.com", "refresh_token": "1//r"}));
        for bank in ["PNC", "Chase"] {
            w.add("teller", &["--agents", "prof_vzfin"], json!({"enrollment_id": format!("enr_{bank}"), "access_token": "test_token_x", "institution_name": bank}));
        }
        w.add("email", &[], json!({"api_key": "re_1", "from_address": "alerts@app.vonz.io", "to_address": "amouzou@gmail.com"}));
        w.add("webhook", &[], json!({"url": "https://hooks.zapier.com/hooks/catch/1/x"}));
        let surfaces = [("slack", w.id.clone()), ("vonzio", vonzio), ("finance", finance)];
        let profiles = [("prof_vzfin", "vzfin"), ("prof_coding", "coding")];

        // Sends `text` on each surface: the profile each one was written for.
        let routed = async |surface: &str, text: &str| -> Option<String> {
            let before = w.inbound().await.len();
            match surface {
                "slack" => {
                    w.say(text).await;
                }
                bot => {
                    let token = if bot == "vonzio" { tg::BOT_TOKEN } else { tg::BOT2_TOKEN };
                    let update = tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, text);
                    assert_eq!(w.telegram.deliver(token, update).await.unwrap(), 200);
                }
            }
            let inbound = w.inbound().await;
            assert!(inbound.len() <= before + 1);
            (inbound.len() > before).then(|| inbound.last().unwrap()["profile_id"].as_str().unwrap().to_string())
        };
        let agree = async || {
            let plans: Vec<(&str, Vec<(String, String)>)> =
                profiles.iter().map(|(id, _)| (*id, inbound_of(&w, id))).collect();
            let mut table = Vec::new();
            for (surface, id) in &surfaces {
                let routing = |profile: &str| {
                    plans.iter().find(|(p, _)| *p == profile).and_then(|(_, inbound)| {
                        inbound.iter().find(|(s, _)| s == id).map(|(_, r)| r.as_str())
                    })
                };
                // Unprefixed: to the one profile whose plan says bound or default.
                let unprefixed: Vec<&str> = profiles
                    .iter()
                    .filter(|(p, _)| matches!(routing(p), Some("bound" | "default")))
                    .map(|(p, _)| *p)
                    .collect();
                assert!(unprefixed.len() <= 1, "{surface}: {unprefixed:?}");
                let got = routed(surface, "hello").await;
                assert_eq!(got.as_deref(), unprefixed.first().copied(), "{surface} hello");
                table.push((*surface, "hello".to_string(), got));
                // `@slug`: to that profile when its plan lists the surface.
                for (profile, slug) in profiles {
                    let text = format!("@{slug} hello");
                    let got = routed(surface, &text).await;
                    let expected = routing(profile).map(|_| profile.to_string());
                    assert_eq!(got, expected, "{surface} {text}");
                    table.push((*surface, text, got));
                }
            }
            table
        };
        let some = |p: &str| Some(p.to_string());
        let before_changes = agree().await;
        assert_eq!(
            before_changes,
            [
                ("slack", "hello".into(), some("prof_vzfin")),
                ("slack", "@vzfin hello".into(), some("prof_vzfin")),
                ("slack", "@coding hello".into(), some("prof_coding")),
                ("vonzio", "hello".into(), some("prof_vzfin")),
                ("vonzio", "@vzfin hello".into(), some("prof_vzfin")),
                ("vonzio", "@coding hello".into(), some("prof_coding")),
                ("finance", "hello".into(), some("prof_vzfin")),
                ("finance", "@vzfin hello".into(), some("prof_vzfin")),
                ("finance", "@coding hello".into(), None),
            ]
        );
        // coding becomes the default profile, and Slack is scoped to vzfin:
        // the plans change, and the messages follow them.
        let (status, _) = w
            .api("PUT", "/v1/profiles/prof_coding", json!({"slug": "coding", "is_default": true}))
            .await;
        assert_eq!(status, StatusCode::OK);
        w.patch(&surfaces[0].1, json!({"scope": "agents", "profile_ids": ["prof_vzfin"]})).await;
        let after = agree().await;
        assert_eq!(after[0], ("slack", "hello".into(), None), "coding is not granted Slack");
        assert_eq!(after[3], ("vonzio", "hello".into(), some("prof_coding")));
        assert_eq!(after[6], ("finance", "hello".into(), some("prof_vzfin")), "bound");
    })
    .await;
}

/// The attacker of the review's reproductions: another user of the same
/// Slack workspace, with their own API token, profile and Slack row.
const ATTACKER: &str = "u_mallory";
/// The attacker's own Slack user.
const ATTACKER_SLACK: &str = "U0MALLORY";

/// The attacker's API token and Slack row, older than the victim's
/// ([`OWNER`]).
async fn attacker(w: &World) -> (String, String) {
    let token = cli::run(&w.url, &w.keys, &["tokens", "create", "--user", ATTACKER])
        .trim()
        .to_string();
    let (status, _) = w
        .api_with(
            &token,
            "PUT",
            "/v1/profiles/prof_mallory",
            json!({"slug": "mallory", "is_default": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let row = w.add_for(
        ATTACKER,
        "slack",
        &[],
        json!({"bot_token": slack::SLACK_TOKEN, "team_id": slack::TEAM_ID, "authed_user_id": ATTACKER_SLACK}),
    );
    w.exec(&format!(
        "UPDATE user_integrations SET created_at = '2001-01-01T00:00:00.000000Z' WHERE id = '{row}'"
    ))
    .await;
    (token, row)
}

/// `agent` notifies over Slack: whether it was sent, and its text.
async fn notify(agent: &RunningService<RoleClient, ()>, message: &str) -> (bool, String) {
    let args = json!({"message": message, "channel": "slack"});
    let result = agent
        .call_tool(
            CallToolRequestParams::new("notify_user")
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    (
        result.is_error != Some(true),
        format!("{:?}", result.content),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_patch_another_users_slack_identity_into_their_row() {
    each_backend(async |w: World| {
        let (token, row) = attacker(&w).await;
        // The review's PATCH: the victim's team and user into the
        // attacker's older row. Refused, field by field, naming no one.
        for config in [
            json!({"team_id": slack::TEAM_ID, "authed_user_id": OWNER}),
            json!({"authed_user_id": OWNER}),
            json!({"team_id": "T0ELSEWHERE"}),
        ] {
            let (status, body) = w
                .api_with(
                    &token,
                    "PATCH",
                    &format!("/v1/integrations/{row}"),
                    json!({ "config": config }),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("connecting Slack again"), "{message}");
            assert!(
                !message.contains(USER) && !message.contains(&w.id),
                "{message}"
            );
        }
        // The victim's DM lands in the victim's outbox, not the attacker's.
        w.say("pay my rent from checking").await;
        let (profile, text, _) = w.last().await;
        assert_eq!(
            (profile.as_str(), text.as_str()),
            ("prof_vzfin", "pay my rent from checking")
        );
        assert_eq!(w.inbound().await[0]["integration_id"], w.id.as_str());
        let (status, theirs) = w
            .api_with(&token, "GET", "/v1/inbound?after=0", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(theirs["messages"], json!([]), "{theirs}");
        // The attacker's own DMs still reach the attacker.
        answered_once(&w.deliver(events::dm(ATTACKER_SLACK, "mine", &w.ts())).await);
        let (_, theirs) = w
            .api_with(&token, "GET", "/v1/inbound?after=0", Value::Null)
            .await;
        assert_eq!(theirs["messages"][0]["text"], "mine", "{theirs}");
        assert_eq!(w.inbound().await.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attackers_notifications_never_reach_the_victims_slack() {
    each_backend(async |w: World| {
        let (token, row) = attacker(&w).await;
        let (status, _) = w
            .api_with(
                &token,
                "PATCH",
                &format!("/v1/integrations/{row}"),
                json!({"config": {"authed_user_id": OWNER}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let agent = w.agent_of(ATTACKER, "prof_mallory", "sess_mallory").await;
        let (sent, said) = notify(&agent, "Your account is locked: reply with your code").await;
        assert!(sent, "{said}");
        let to_victim = events::dm_channel(OWNER);
        let channels: Vec<String> = w.slack.posted().into_iter().map(|p| p.channel).collect();
        assert_eq!(channels, [events::dm_channel(ATTACKER_SLACK)]);

        // A store from before the rule, where the attacker's row already
        // named the victim (the PATCH was accepted then): both rows lose
        // the identity when the keyring is next at hand, and the
        // attacker's notifications are refused, not sent to the victim.
        w.exec("UPDATE user_integrations SET external_id = NULL").await;
        w.exec(&format!("DELETE FROM user_integrations WHERE id = '{row}'")).await;
        let patched = w.add_for(
            ATTACKER,
            "slack",
            &[],
            json!({"bot_token": slack::SLACK_TOKEN, "team_id": slack::TEAM_ID, "authed_user_id": OWNER}),
        );
        w.exec(&format!("UPDATE user_integrations SET external_id = NULL, created_at = '2001-01-01T00:00:00.000000Z' WHERE id = '{patched}'")).await;
        let migrated = cli::run(&w.url, &w.keys, &["migrate"]);
        assert!(migrated.contains("set needs_reauth"), "{migrated}");
        let (sent, said) = notify(&agent, "Your account is locked: reply with your code").await;
        assert!(!sent && said.contains("reconnect Slack"), "{said}");
        assert!(
            w.slack.posted().iter().all(|p| p.channel != to_victim),
            "a notification reached the victim"
        );
        // Nor do the victim's DMs go to the attacker's older row.
        w.say("pay my rent from checking").await;
        let (_, theirs) = w
            .api_with(&token, "GET", "/v1/inbound?after=0", Value::Null)
            .await;
        assert_eq!(theirs["messages"], json!([]), "{theirs}");
        agent.cancel().await.unwrap();
    })
    .await;
}
