//! What a chat is known by in the store: the clear surface of a row (a
//! Telegram bot and its paired chat) and its keyed hash in `chat_hash`, so
//! that an inbound message finds its row in one indexed read.

use model::IntegrationType;
use model::config::DecryptedConfig;
use model::sealing::Sealer;

/// The clear value a row's `chat_hash` is the keyed hash of: a Telegram
/// row's bot and paired chat; `None` for a row no chat finds (another type,
/// a bot not paired).
pub(crate) fn surface(
    kind: IntegrationType,
    external_id: Option<&str>,
    config: &DecryptedConfig,
) -> Option<String> {
    let field = |name: &str| config.get(kind, name).ok().flatten();
    match kind {
        IntegrationType::Telegram => {
            let chat: i64 = field("owner_chat_id")?.parse().ok()?;
            // The bot of `<bot>` or `<bot>:<user>` (the platform's bot).
            let bot = external_id?.split(':').next()?;
            Some(telegram_chat(bot, chat))
        }
        _ => None,
    }
}

/// What a Telegram chat of a bot is known by.
pub(crate) fn telegram_chat(bot_id: &str, chat_id: i64) -> String {
    format!("telegram_chat|{bot_id}|{chat_id}")
}

/// The `chat_hash` of a `kind` row with `config`, under the keyring's first key.
pub(crate) fn chat_hash(
    keyring: &dyn Sealer,
    kind: IntegrationType,
    external_id: Option<&str>,
    config: &DecryptedConfig,
) -> Option<String> {
    surface(kind, external_id, config).map(|s| keyring.lookup_hash(&s))
}

/// Replaces a row's sealed config and its `chat_hash` only if the config is
/// still the one read (compare-and-swap): `$1` new config, `$2` hash, `$3`
/// id, `$4` old config.
pub(crate) const SWAP_WITH_HASH: &str = "UPDATE user_integrations SET encrypted_config = $1, chat_hash = $2 \
     WHERE id = $3 AND encrypted_config = $4";
