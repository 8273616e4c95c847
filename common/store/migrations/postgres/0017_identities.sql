-- External identities (issue 24): `external_id` is the identity of every
-- type that has one, unique per type across users (the index of 0001): a
-- Slack team and the user who connected it (`<team>:<user>`), a Telegram
-- bot, a Gmail address (lower case), a Teller enrollment. Only a
-- provider's flow writes it. A Slack event finds its row by it, so
-- `chat_hash` serves paired Telegram chats alone. Slack and Gmail rows
-- from before get theirs at the server's start, which can open configs.
UPDATE user_integrations SET chat_hash = NULL WHERE type = 'slack';
