//! End-user anonymity: raw user ids become keyed hashes, shown as stable pseudonyms.
//!
//! The key is generated on first start and kept in the data directory, so the
//! same user gets the same key (and name) across restarts, while nobody without
//! the key can test a guessed user id against the store.

use convlog_core::UserKey;
use hmac::{KeyInit, Mac};
use std::path::Path;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The secret behind user keys.
#[derive(Clone)]
pub struct UserKeyer {
    secret: [u8; 32],
}

impl std::fmt::Debug for UserKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKeyer(..)")
    }
}

impl UserKeyer {
    /// Loads the secret from `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<UserKeyer> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut secret = [0u8; 32];
                secret.copy_from_slice(&bytes);
                Ok(UserKeyer { secret })
            }
            Ok(_) => Err(std::io::Error::other(format!(
                "{} is not a 32-byte secret",
                path.display()
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
                let tmp = path.with_extension("tmp");
                write_private(&tmp, &secret)?;
                std::fs::rename(&tmp, path)?;
                Ok(UserKeyer { secret })
            }
            Err(err) => Err(err),
        }
    }

    /// A keyer with a fixed secret, for tests.
    pub fn from_secret(secret: [u8; 32]) -> UserKeyer {
        UserKeyer { secret }
    }

    /// The key of `user_id` within `bot_id`: 128 bits of HMAC-SHA256, hex.
    pub fn key(&self, bot_id: &str, user_id: &str) -> UserKey {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length works");
        mac.update(bot_id.as_bytes());
        mac.update(&[0]);
        mac.update(user_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(32);
        for byte in &digest[..16] {
            hex.push_str(&format!("{byte:02x}"));
        }
        UserKey(hex)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

const ADJECTIVES: &[&str] = &[
    "Amber", "Azure", "Bold", "Brave", "Bright", "Calm", "Clever", "Coral", "Cosmic", "Crimson",
    "Curious", "Dapper", "Eager", "Early", "Emerald", "Fancy", "Fearless", "Fluffy", "Gentle",
    "Golden", "Graceful", "Happy", "Hazel", "Honest", "Humble", "Indigo", "Ivory", "Jolly", "Keen",
    "Kind", "Lively", "Lucky", "Lunar", "Magic", "Mellow", "Merry", "Mighty", "Misty", "Modest",
    "Noble", "Olive", "Patient", "Plucky", "Polite", "Proud", "Quick", "Quiet", "Rapid", "Ruby",
    "Rustic", "Sandy", "Scarlet", "Serene", "Sharp", "Shiny", "Silent", "Silver", "Sleepy",
    "Smooth", "Snowy", "Solar", "Sparkly", "Speedy", "Steady", "Stormy", "Sunny", "Swift", "Teal",
    "Tidy", "Tiny", "Twilight", "Velvet", "Violet", "Vivid", "Warm", "Wild", "Windy", "Wise",
    "Witty", "Zesty",
];

const ANIMALS: &[&str] = &[
    "Otter", "Badger", "Beaver", "Bison", "Crane", "Dolphin", "Eagle", "Falcon", "Ferret", "Finch",
    "Fox", "Gazelle", "Gecko", "Heron", "Ibis", "Jaguar", "Koala", "Lemur", "Leopard", "Lynx",
    "Marten", "Meerkat", "Moose", "Narwhal", "Newt", "Ocelot", "Orca", "Owl", "Panda", "Panther",
    "Parrot", "Pelican", "Penguin", "Puffin", "Quail", "Rabbit", "Raccoon", "Raven", "Robin",
    "Salmon", "Seal", "Sparrow", "Squirrel", "Stork", "Swan", "Tapir", "Tiger", "Toucan", "Turtle",
    "Walrus", "Weasel", "Whale", "Wolf", "Wombat", "Wren", "Yak", "Zebra", "Hedgehog", "Kestrel",
    "Magpie",
];

/// The display name of a user key, e.g. `Amber Otter 417`: stable, not reversible.
pub fn pseudonym(key: &UserKey) -> String {
    let bits = u64::from_str_radix(key.0.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    let adjective = ADJECTIVES[(bits % ADJECTIVES.len() as u64) as usize];
    let animal = ANIMALS[((bits >> 16) % ANIMALS.len() as u64) as usize];
    let number = (bits >> 32) % 1000;
    format!("{adjective} {animal} {number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_bot_and_differ_between_bots() {
        let keyer = UserKeyer::from_secret([7; 32]);
        assert_eq!(keyer.key("acme", "+491511"), keyer.key("acme", "+491511"));
        assert_ne!(keyer.key("acme", "+491511"), keyer.key("other", "+491511"));
        assert_eq!(keyer.key("acme", "u").0.len(), 32);
    }

    #[test]
    fn keys_depend_on_the_secret() {
        let a = UserKeyer::from_secret([1; 32]).key("acme", "u");
        let b = UserKeyer::from_secret([2; 32]).key("acme", "u");
        assert_ne!(a, b);
    }

    #[test]
    fn pseudonyms_look_like_names() {
        let name = pseudonym(&UserKeyer::from_secret([3; 32]).key("acme", "u1"));
        let parts: Vec<&str> = name.split(' ').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(parts[2].parse::<u32>().unwrap() < 1000);
    }

    #[test]
    fn secret_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("convlog-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user-key.secret");
        let first = UserKeyer::load_or_create(&path).unwrap().key("b", "u");
        let second = UserKeyer::load_or_create(&path).unwrap().key("b", "u");
        assert_eq!(first, second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
