//! Passwords: argon2id (OWASP's parameters, the crate's defaults: 19 MiB, 2 passes), hashed
//! and checked on the blocking pool, at most [`AT_ONCE`] at a time so that a flood of
//! sign-ins costs a queue, not 19 MiB each. A sign-in for a name that does not exist checks
//! the password against a hash all the same, so that the time taken does not say which
//! names exist.
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Hashes computed at once; the rest wait their turn.
const AT_ONCE: usize = 2;
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(AT_ONCE));

/// Shortest and longest password accepted, in characters.
pub const MIN_CHARS: usize = 10;
pub const MAX_CHARS: usize = 256;

/// What a password must be, or why it is not.
pub fn check(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(format!("the password must have at least {MIN_CHARS} characters"));
    }
    if chars > MAX_CHARS {
        return Err(format!("the password must have at most {MAX_CHARS} characters"));
    }
    Ok(())
}

/// The PHC string of `password` (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: String) -> anyhow::Result<String> {
    let _turn = HASHING.acquire().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await?
}

/// Whether `password` is the one `phc` was made from; `None` checks against a hash of
/// nothing (and is never true), taking the same time.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    let Ok(_turn) = HASHING.acquire().await else { return false };
    let matches = tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let Ok(parsed) = PasswordHash::new(phc.as_deref().unwrap_or(&DECOY)) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await;
    matches.unwrap_or(false)
}

/// A hash to check unknown names against.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(b"no account has this password", &salt).expect("argon2 hashes").to_string()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_matches_its_hash_only() {
        let phc = hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await);
        assert!(!verify("correct horse batterY".into(), Some(phc.clone())).await);
        assert!(!verify("no account has this password".into(), None).await, "the decoy never matches");
        assert!(!verify("x".into(), Some("not a hash".into())).await);
    }

    #[test]
    fn lengths_are_checked_in_characters() {
        assert!(check("short").is_err());
        assert!(check("ééééééééé").is_err(), "9 characters, 18 bytes");
        assert!(check("éééééééééé").is_ok());
        assert!(check(&"x".repeat(257)).is_err());
    }
}
