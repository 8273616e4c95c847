//! Telegram's server side of `integrations serve` over real HTTP, with the
//! fake Telegram delivering updates to our webhook as Telegram would:
//! connecting bots, pairing, inbound routing, thread claims, disconnecting;
//! forged secrets, replayed codes and racing taps included.

use fakes::telegram as tg;
use reqwest::StatusCode;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};

use testkit::Backend;

use crate::chat::{self, USER};

/// [`chat::World`] on SQLite, for Telegram.
struct World(chat::World);

impl std::ops::Deref for World {
    type Target = chat::World;

    fn deref(&self) -> &chat::World {
        &self.0
    }
}

impl World {
    /// A server with the platform bot when `platform`.
    async fn new(platform: bool) -> Self {
        Self::with_env(platform, &[]).await
    }

    /// A world whose server also gets `extra` in its environment.
    async fn with_env(platform: bool, extra: &[(&str, &str)]) -> Self {
        let mut env = extra.to_vec();
        if platform {
            env.insert(0, ("PLATFORM_TELEGRAM_BOT_TOKEN", tg::PLATFORM_BOT_TOKEN));
        }
        Self(chat::World::start(Backend::sqlite("tg"), &env).await)
    }

    /// Connects the fake's first bot; its id and link code.
    async fn connect(&self, body: Value) -> (String, String) {
        let (status, connected) = self
            .api("POST", "/v1/integrations/telegram/connect", body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{connected}");
        let link = connected["link_url"].as_str().unwrap();
        let code = link.split("?start=").nth(1).unwrap().to_string();
        (connected["id"].as_str().unwrap().to_string(), code)
    }

    async fn say(&self, chat: i64, text: &str) -> u16 {
        self.telegram
            .deliver(tg::BOT_TOKEN, tg::text_update(chat, chat, text))
            .await
            .unwrap()
    }

    /// The last message the bot sent to `chat`.
    fn last_reply(&self, chat: i64) -> String {
        self.telegram
            .sent()
            .iter()
            .rev()
            .find(|m| m.chat_id == chat)
            .map(|m| m.text.clone())
            .unwrap_or_default()
    }

    /// `agent` notifies through the bot `id` with thread-claim buttons
    /// labelled `label`: the message id and the claim and keep buttons' data.
    async fn notify_thread(
        &self,
        agent: &RunningService<RoleClient, ()>,
        id: &str,
        message: &str,
        label: &str,
    ) -> (i64, String, String) {
        let args = json!({"message": message, "channel": format!("telegram:{id}"), "claim_thread": true, "claim_thread_label": label});
        let result = agent
            .call_tool(
                CallToolRequestParams::new("notify_user")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true), "{:?}", result.content);
        let sent = self
            .telegram
            .sent()
            .into_iter()
            .rev()
            .find(|m| m.reply_markup.is_some())
            .unwrap();
        let buttons = sent.reply_markup.unwrap()["inline_keyboard"][0].clone();
        (
            sent.message_id,
            buttons[0]["callback_data"].as_str().unwrap().to_string(),
            buttons[1]["callback_data"].as_str().unwrap().to_string(),
        )
    }

    /// The text of the last answer to a tap.
    fn last_answer(&self) -> String {
        self.telegram
            .answered()
            .last()
            .and_then(|a| a.text.clone())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_connects_and_pairs_once_with_its_owner() {
    let w = World::new(false).await;
    // Refusals before anything is stored.
    for (body, status, code) in [
        (
            json!({"bot_token": "not-a-token"}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            json!({"bot_token": "123:AAunknown-token-the-fake-does-not-know"}),
            StatusCode::BAD_REQUEST,
            "VALIDATION_FAILED",
        ),
        (
            json!({"bot_token": tg::BOT_TOKEN, "bound_profile_id": "prof_nobody"}),
            StatusCode::BAD_REQUEST,
            "PROFILE_NOT_FOUND",
        ),
    ] {
        let (got, answer) = w
            .api("POST", "/v1/integrations/telegram/connect", body)
            .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
        assert!(
            !answer
                .to_string()
                .contains(tg::BOT_TOKEN.split(':').nth(1).unwrap())
        );
    }
    let (id, code) = w
        .connect(json!({"bot_token": tg::BOT_TOKEN, "bound_profile_id": "prof_vzfin"}))
        .await;
    assert_eq!(
        w.telegram.webhook(tg::BOT_TOKEN).unwrap(),
        format!("{}/api/telegram/webhook/{}", w.base, tg::BOT_ID)
    );
    let (status, _) = w
        .api(
            "POST",
            "/v1/integrations/telegram/connect",
            json!({"bot_token": tg::BOT_TOKEN}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Forged or missing secrets: 401.
    let update = tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, &format!("/start {code}"));
    assert_eq!(
        w.telegram
            .deliver_with_secret(tg::BOT_TOKEN, update.clone(), Some("forged"))
            .await
            .unwrap(),
        401
    );
    assert_eq!(
        w.telegram
            .deliver_with_secret(tg::BOT_TOKEN, update.clone(), None)
            .await
            .unwrap(),
        401
    );

    // A wrong code, then the right one, then a replay from another chat.
    assert_eq!(w.say(tg::OWNER_CHAT, "/start wrongcode").await, 200);
    assert!(
        w.last_reply(tg::OWNER_CHAT).contains("not valid"),
        "{}",
        w.last_reply(tg::OWNER_CHAT)
    );
    assert_eq!(w.say(tg::OWNER_CHAT, &format!("/start {code}")).await, 200);
    assert!(
        w.last_reply(tg::OWNER_CHAT).contains("Linked"),
        "{}",
        w.last_reply(tg::OWNER_CHAT)
    );
    let shown: Value = serde_json::from_str(&w.cli(&["show", &id, "--json"])).unwrap();
    assert_eq!(shown["config"]["owner_chat_id"], tg::OWNER_CHAT);
    assert_eq!(shown["config"]["bot_token"], "********");
    assert_eq!(
        w.telegram
            .deliver(
                tg::BOT_TOKEN,
                tg::text_update(tg::OTHER_CHAT, tg::OTHER_CHAT, &format!("/link {code}"))
            )
            .await
            .unwrap(),
        200
    );
    assert!(w.last_reply(tg::OTHER_CHAT).contains("not valid"));

    // A second chat cannot take over, even with a fresh code.
    let (status, fresh) = w
        .api(
            "POST",
            "/v1/integrations/telegram/regenerate-link-code",
            json!({"id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let fresh = fresh["link_url"]
        .as_str()
        .unwrap()
        .split("?start=")
        .nth(1)
        .unwrap()
        .to_string();
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::text_update(tg::OTHER_CHAT, tg::OTHER_CHAT, &format!("/link {fresh}")),
        )
        .await
        .unwrap();
    assert!(
        w.last_reply(tg::OTHER_CHAT)
            .contains("already linked to another chat")
    );
    // An expired code.
    let (_, stale) = w
        .api(
            "POST",
            "/v1/integrations/telegram/regenerate-link-code",
            json!({"id": id}),
        )
        .await;
    let stale = stale["link_url"]
        .as_str()
        .unwrap()
        .split("?start=")
        .nth(1)
        .unwrap()
        .to_string();
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&w.url).await.unwrap();
        sqlx::query("UPDATE connect_keys SET expires_at = 0")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::text_update(tg::OTHER_CHAT, tg::OTHER_CHAT, &format!("/start {stale}")),
        )
        .await
        .unwrap();
    assert!(w.last_reply(tg::OTHER_CHAT).contains("not valid"));

    // Bind it elsewhere, and back.
    let (status, row) = w
        .api(
            "PATCH",
            &format!("/v1/integrations/{id}"),
            json!({"bound_profile_id": "prof_coding"}),
        )
        .await;
    assert_eq!(
        (status, row["bound_profile_id"].as_str()),
        (StatusCode::OK, Some("prof_coding"))
    );
    let (status, row) = w
        .api(
            "PATCH",
            &format!("/v1/integrations/{id}"),
            json!({"bound_profile_id": null}),
        )
        .await;
    assert_eq!(
        (status, row["bound_profile_id"].clone()),
        (StatusCode::OK, Value::Null)
    );

    // A code of another bot neither pairs this one nor is spent.
    let (status, second) = w
        .api(
            "POST",
            "/v1/integrations/telegram/connect",
            json!({"bot_token": tg::BOT2_TOKEN}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let code2 = second["link_url"]
        .as_str()
        .unwrap()
        .split("?start=")
        .nth(1)
        .unwrap()
        .to_string();
    w.say(tg::OWNER_CHAT, &format!("/start {code2}")).await;
    assert!(
        w.last_reply(tg::OWNER_CHAT).contains("already linked"),
        "{}",
        w.last_reply(tg::OWNER_CHAT)
    );
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::text_update(tg::OTHER_CHAT, tg::OTHER_CHAT, &format!("/start {code2}")),
        )
        .await
        .unwrap();
    assert!(w.last_reply(tg::OTHER_CHAT).contains("not valid"));
    w.telegram
        .deliver(
            tg::BOT2_TOKEN,
            tg::text_update(tg::OTHER_CHAT, tg::OTHER_CHAT, &format!("/start {code2}")),
        )
        .await
        .unwrap();
    assert!(
        w.last_reply(tg::OTHER_CHAT).contains("Linked"),
        "{}",
        w.last_reply(tg::OTHER_CHAT)
    );
    // One bot's secret on another bot's path, or a path that is not a bot id.
    let secret = w.telegram.webhook_secret(tg::BOT_TOKEN).unwrap();
    for path in [
        format!("{}", tg::BOT2_ID),
        "%25".to_string(),
        "1%20OR%201".to_string(),
    ] {
        let status = w
            .http
            .post(format!("{}/api/telegram/webhook/{path}", w.base))
            .header(tg::SECRET_HEADER, &secret)
            .json(&tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, "hi"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }

    // Disconnecting deletes the webhook, the row and its threads.
    let (status, deleted) = w
        .api("DELETE", &format!("/v1/integrations/{id}"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(w.telegram.deleted_webhooks(), [tg::BOT_TOKEN]);
    assert_eq!(w.count("SELECT count(*) FROM user_integrations").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_messages_are_routed_into_the_outbox_and_forwarded() {
    let w = World::new(false).await;
    let (id, code) = w.connect(json!({"bot_token": tg::BOT_TOKEN})).await;
    w.say(tg::OWNER_CHAT, &format!("/start {code}")).await;
    let (status, _) = w
        .api(
            "PATCH",
            &format!("/v1/integrations/{id}"),
            json!({"profile_ids": ["prof_vzfin"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(
        w.say(tg::OWNER_CHAT, "What did I spend on food?").await,
        200
    );
    assert_eq!(w.say(tg::OWNER_CHAT, "@vzfin: and on rent?").await, 200);
    assert_eq!(w.say(tg::OWNER_CHAT, "@coding fix the build").await, 200);
    assert!(
        w.last_reply(tg::OWNER_CHAT).contains("not granted"),
        "{}",
        w.last_reply(tg::OWNER_CHAT)
    );
    // A stranger is not heard.
    assert_eq!(
        w.telegram
            .deliver(
                tg::BOT_TOKEN,
                tg::text_update(tg::OTHER_CHAT, tg::OTHER_CHAT, "hello?")
            )
            .await
            .unwrap(),
        200
    );
    for command in ["/new", "/end", "/agents", "/help"] {
        w.say(tg::OWNER_CHAT, command).await;
    }
    let replies: Vec<String> = w
        .telegram
        .sent()
        .iter()
        .filter(|m| m.chat_id == tg::OWNER_CHAT)
        .map(|m| m.text.clone())
        .collect();
    assert!(replies.iter().any(|r| r.contains("@vzfin")), "{replies:?}");
    assert!(replies.iter().any(|r| r.contains("/agents")), "{replies:?}");

    let inbound = w.inbound().await;
    let owner_chat = tg::OWNER_CHAT.to_string();
    let seen: Vec<(&str, &str, Option<&str>)> = inbound
        .iter()
        .map(|m| {
            (
                m["profile_id"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
                m["command"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("prof_vzfin", "What did I spend on food?", None),
            ("prof_vzfin", "and on rent?", None),
            ("prof_vzfin", "/new", Some("new")),
            ("prof_vzfin", "/end", Some("end")),
            ("prof_vzfin", "/agents", Some("agents")),
            ("prof_vzfin", "/help", Some("help")),
        ]
    );
    assert!(
        inbound
            .iter()
            .all(|m| m["chat_id"] == owner_chat.as_str() && m["integration_id"] == id.as_str())
    );
    let cursor = inbound[1]["seq"].as_i64().unwrap();
    let (_, page) = w
        .api("GET", &format!("/v1/inbound?after={cursor}"), Value::Null)
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    let lines = w.cli(&["inbound", "--user", USER, "--after", &cursor.to_string()]);
    assert_eq!(lines.lines().count(), 4);

    // Each outbox row is also POSTed, signed like an outbound webhook.
    let forwarded = w.forwarded(6).await;
    assert_eq!(forwarded.len(), 6);
    assert!(
        forwarded[0]
            .headers
            .iter()
            .any(|(name, value)| name == "webhook-signature" && value.starts_with("v1,"))
    );
    // A failing reply does not make Telegram redeliver: still 200.
    w.telegram.faults().inject(fakes::Fault::status(
        "sendMessage",
        500,
        json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}),
    ));
    assert_eq!(w.say(tg::OWNER_CHAT, "/agents").await, 200);
    // Nor does an update whose handling fails in the store.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&w.url).await.unwrap();
        sqlx::query("DROP TABLE inbound_messages")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(w.say(tg::OWNER_CHAT, "is anyone there?").await, 200);
    // ...and the failure is recorded for the operator.
    assert_eq!(
        w.count("SELECT count(*) FROM audit_log WHERE tool = 'webhook_update' AND decision = 'error' AND detail LIKE '%inbound_messages%'").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_threads_are_claimed_once_by_the_owner() {
    let w = World::new(false).await;
    let (id, code) = w.connect(json!({"bot_token": tg::BOT_TOKEN})).await;
    w.say(tg::OWNER_CHAT, &format!("/start {code}")).await;
    let agent = w.agent("prof_vzfin", "sess_taxes").await;
    let notify = async |message: &str| w.notify_thread(&agent, &id, message, "Taxes").await;

    // A stranger's tap is refused; two racing taps of the owner claim it once.
    let (message, claim, _) = notify("Your tax form is ready.").await;
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::callback_update(tg::OWNER_CHAT, tg::OTHER_CHAT, message, &claim),
        )
        .await
        .unwrap();
    assert!(
        w.telegram
            .answered()
            .last()
            .unwrap()
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("Only the owner")
    );
    let tap = || {
        w.telegram.deliver(
            tg::BOT_TOKEN,
            tg::callback_update(tg::OWNER_CHAT, tg::OWNER_CHAT, message, &claim),
        )
    };
    let (a, b) = tokio::join!(tap(), tap());
    assert_eq!((a.unwrap(), b.unwrap()), (200, 200));
    let answers: Vec<String> = w
        .telegram
        .answered()
        .iter()
        .rev()
        .take(2)
        .map(|a| a.text.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.contains("Replies now go to the Taxes thread"))
            .count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.contains("already handled"))
            .count(),
        1,
        "{answers:?}"
    );
    let edited = w.telegram.edited();
    assert_eq!(edited.len(), 1);
    assert_eq!(edited[0].message_id, message);

    // "Keep my chat" dismisses; a dismissed row cannot be claimed after.
    let (message, claim, keep) = notify("Quarterly estimate due.").await;
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::callback_update(tg::OWNER_CHAT, tg::OWNER_CHAT, message, &keep),
        )
        .await
        .unwrap();
    assert!(
        w.telegram
            .answered()
            .last()
            .unwrap()
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("Kept")
    );
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::callback_update(tg::OWNER_CHAT, tg::OWNER_CHAT, message, &claim),
        )
        .await
        .unwrap();
    assert!(
        w.telegram
            .answered()
            .last()
            .unwrap()
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("already handled")
    );

    // A row older than 24 hours is refused.
    let (message, claim, _) = notify("Old news.").await;
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&w.url).await.unwrap();
        sqlx::query("UPDATE telegram_threads SET sent_at = '2020-01-01T00:00:00.000000Z' WHERE message_id = $1")
            .bind(message)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::callback_update(tg::OWNER_CHAT, tg::OWNER_CHAT, message, &claim),
        )
        .await
        .unwrap();
    assert!(
        w.telegram
            .answered()
            .last()
            .unwrap()
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("expired")
    );

    // A plain reply with no tap claims the newest open row, after routing.
    notify("Receipt needed for the donation.").await;
    w.say(tg::OWNER_CHAT, "@vzfin Here it is").await;
    let inbound = w.inbound().await;
    let last = inbound.last().unwrap();
    assert_eq!(last["claimed_session_id"], "sess_taxes");
    assert_eq!(last["profile_id"], "prof_vzfin");
    assert_eq!(last["text"], "[Switched to Taxes thread] Here it is");
    w.say(tg::OWNER_CHAT, "and another").await;
    assert_eq!(
        w.inbound().await.last().unwrap()["claimed_session_id"],
        Value::Null
    );
    agent.cancel().await.unwrap();

    // Deleting the bot deletes its threads.
    assert_eq!(w.count("SELECT count(*) FROM telegram_threads").await, 4);
    w.api("DELETE", &format!("/v1/integrations/{id}"), Value::Null)
        .await;
    assert_eq!(w.count("SELECT count(*) FROM telegram_threads").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_bot_pairs_each_user_and_keeps_its_webhook() {
    let without = World::new(false).await;
    let (status, body) = without
        .api(
            "POST",
            "/v1/integrations/telegram/connect-platform",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let w = World::new(true).await;
    let (status, connected) = w
        .api(
            "POST",
            "/v1/integrations/telegram/connect-platform",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{connected}");
    let id = connected["id"].as_str().unwrap().to_string();
    let code = connected["link_url"]
        .as_str()
        .unwrap()
        .split("?start=")
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(connected["bot_username"], tg::PLATFORM_BOT_USERNAME);
    let update = tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, &format!("/start {code}"));
    assert_eq!(
        w.telegram
            .deliver(tg::PLATFORM_BOT_TOKEN, update)
            .await
            .unwrap(),
        200
    );
    let shown: Value = serde_json::from_str(&w.cli(&["show", &id, "--json"])).unwrap();
    assert_eq!(
        (
            shown["config"]["owner_chat_id"].as_i64(),
            shown["config"]["owner"].as_str()
        ),
        (Some(tg::OWNER_CHAT), Some("platform"))
    );
    w.telegram
        .deliver(
            tg::PLATFORM_BOT_TOKEN,
            tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, "hi"),
        )
        .await
        .unwrap();
    assert_eq!(w.inbound().await.len(), 1);
    let (status, _) = w
        .api(
            "POST",
            "/v1/integrations/telegram/connect-platform",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, deleted) = w
        .api("DELETE", &format!("/v1/integrations/{id}"), Value::Null)
        .await;
    assert_eq!(
        (status, deleted["revoked"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert!(
        w.telegram.deleted_webhooks().is_empty(),
        "the shared bot's webhook was deleted"
    );
}

/// Connects the fake's first bot granted to every profile and pairs the owner.
async fn paired_bot(w: &World) -> String {
    let (id, code) = w.connect(json!({"bot_token": tg::BOT_TOKEN})).await;
    w.say(tg::OWNER_CHAT, &format!("/start {code}")).await;
    assert!(w.last_reply(tg::OWNER_CHAT).contains("Linked"));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_joins_only_a_thread_of_its_profile_while_it_is_granted() {
    let w = World::new(false).await;
    let id = paired_bot(&w).await;
    let finance = w.agent("prof_vzfin", "sess_taxes").await;

    // A message routed to @coding does not carry the finance agent's session.
    w.notify_thread(&finance, &id, "Your tax form is ready.", "Taxes")
        .await;
    w.say(tg::OWNER_CHAT, "@coding fix the build").await;
    let last = w.inbound().await.pop().unwrap();
    assert_eq!(
        (
            &last["profile_id"],
            &last["claimed_session_id"],
            &last["text"]
        ),
        (&json!("prof_coding"), &Value::Null, &json!("fix the build"))
    );
    // ...while one routed to @vzfin does.
    w.say(tg::OWNER_CHAT, "@vzfin here it is").await;
    let last = w.inbound().await.pop().unwrap();
    assert_eq!(last["claimed_session_id"], "sess_taxes");

    // Once the bot is no longer granted to vzfin, its thread is not claimed,
    // by a tap or by a reply.
    let (message, claim, _) = w
        .notify_thread(&finance, &id, "Quarterly estimate due.", "Estimates")
        .await;
    let (status, _) = w
        .api(
            "PATCH",
            &format!("/v1/integrations/{id}"),
            json!({"scope": "agents", "profile_ids": ["prof_coding"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    w.telegram
        .deliver(
            tg::BOT_TOKEN,
            tg::callback_update(tg::OWNER_CHAT, tg::OWNER_CHAT, message, &claim),
        )
        .await
        .unwrap();
    assert!(
        !w.last_answer().contains("Replies now go"),
        "{}",
        w.last_answer()
    );
    w.say(tg::OWNER_CHAT, "@coding and the tests").await;
    assert_eq!(
        w.inbound().await.pop().unwrap()["claimed_session_id"],
        Value::Null
    );
    assert_eq!(
        w.count(
            "SELECT count(*) FROM telegram_threads WHERE label = 'Estimates' AND claimed_at IS NULL"
        )
        .await,
        1
    );
    finance.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_gets_its_answer_before_a_slow_forward_and_a_redelivery_writes_nothing() {
    let w = World::new(false).await;
    paired_bot(&w).await;
    // The forward target holds its answer for a while...
    w.forward.faults().inject(fakes::Fault::delay(
        "/inbound",
        std::time::Duration::from_secs(5),
    ));
    let update = json!({"update_id": 900_000_001, "message": tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, "hello?")["message"]});
    assert_eq!(
        w.telegram
            .deliver(tg::BOT_TOKEN, update.clone())
            .await
            .unwrap(),
        200
    );
    // ...and Telegram had its 200 before the forward was answered.
    assert!(
        w.forward.received().is_empty(),
        "the webhook waited for the forward"
    );
    // Telegram redelivers the same update: still one row, one forward.
    assert_eq!(
        w.telegram.deliver(tg::BOT_TOKEN, update).await.unwrap(),
        200
    );
    let forwarded = w.forwarded(1).await;
    let inbound = w.inbound().await;
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    assert_eq!(
        w.count("SELECT count(*) FROM inbound_messages WHERE update_id = 900000001")
            .await,
        1
    );
    let body: Value = serde_json::from_slice(&forwarded[0].body).unwrap();
    assert_eq!(body["id"], inbound[0]["id"]);
    // A redelivered command is answered once.
    let agents = json!({"update_id": 900_000_002, "message": tg::text_update(tg::OWNER_CHAT, tg::OWNER_CHAT, "/agents")["message"]});
    for _ in 0..2 {
        w.telegram
            .deliver(tg::BOT_TOKEN, agents.clone())
            .await
            .unwrap();
    }
    let answers = w
        .telegram
        .sent()
        .iter()
        .filter(|m| m.text.contains("Your agents here"))
        .count();
    assert_eq!(answers, 1);
    assert_eq!(w.forwarded(2).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_counts_against_the_notification_rate_limit() {
    let w = World::with_env(false, &[("NOTIFY_MAX_PER_MINUTE", "2")]).await;
    let id = paired_bot(&w).await;
    let sent_before = w.telegram.sent().len();
    for _ in 0..2 {
        let (status, body) = w
            .api("POST", &format!("/v1/integrations/{id}/test"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let response = w
        .http
        .post(format!("{}/v1/integrations/{id}/test", w.base))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 a minute")
    );
    assert_eq!(
        w.telegram.sent().len(),
        sent_before + 2,
        "nothing sent past the limit"
    );
    let (_, document) = w.api("GET", "/v1/openapi.json", Value::Null).await;
    assert!(
        document["paths"]["/v1/integrations/{id}/test"]["post"]["responses"]["429"].is_object()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_that_cannot_be_reached_is_502_provider_unavailable_and_stores_nothing() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}");
    let w = World::with_env(false, &[("TELEGRAM_API_BASE", &unreachable)]).await;
    let (status, answer) = w
        .api(
            "POST",
            "/v1/integrations/telegram/connect",
            json!({"bot_token": tg::BOT_TOKEN}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"]["code"], "PROVIDER_UNAVAILABLE", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("could not be reached"), "{message}");
    assert!(!message.contains(tg::BOT_TOKEN.split(':').nth(1).unwrap()));
    let (_, listed) = w
        .api("GET", "/v1/integrations?type=telegram", Value::Null)
        .await;
    assert_eq!(listed["integrations"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_that_answers_as_a_service_that_is_down_is_502_and_a_refusal_stays_400() {
    let w = World::new(false).await;
    w.telegram.faults().inject(fakes::Fault::status(
        &format!("/bot{}/getMe", tg::BOT_TOKEN),
        502,
        json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
    ));
    let connect = |token: &str| {
        w.api(
            "POST",
            "/v1/integrations/telegram/connect",
            json!({"bot_token": token}),
        )
    };
    let (status, answer) = connect(tg::BOT_TOKEN).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("PROVIDER_UNAVAILABLE")),
        "{answer}"
    );
    let (status, answer) = connect("123:AAunknown-token-the-fake-does-not-know").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_FAILED")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Telegram refused the bot token"),
        "{answer}"
    );
    // Telegram back: the same bot connects.
    assert_eq!(connect(tg::BOT_TOKEN).await.0, StatusCode::CREATED);
}
