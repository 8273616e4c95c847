//! The product's example account, as the tests seed it: the user
//! `u_amouzou` with the profiles `vzfin` (the default) and `coding`.

use crate::cli;

/// The example account.
pub struct Account;

impl Account {
    /// The example user.
    pub const USER: &str = "u_amouzou";
    /// Another user of the same store.
    pub const OTHER: &str = "u_other";
    /// The example user's default profile.
    pub const VZFIN: &str = "prof_vzfin";
    /// The example user's other profile.
    pub const CODING: &str = "prof_coding";

    /// Adds [`Account::USER`]'s profiles `prof_vzfin` (slug `vzfin`, the
    /// default) and `prof_coding` (slug `coding`) to the store at `url`
    /// with the keyring `keys`, with the `integrations` CLI.
    pub fn seed(url: &str, keys: &str) {
        let (user, vzfin, coding) = (Self::USER, Self::VZFIN, Self::CODING);
        cli::run(
            url,
            keys,
            &[
                "profiles",
                "add",
                vzfin,
                "--user",
                user,
                "--slug",
                "vzfin",
                "--default",
            ],
        );
        cli::run(
            url,
            keys,
            &[
                "profiles", "add", coding, "--user", user, "--slug", "coding",
            ],
        );
    }
}
