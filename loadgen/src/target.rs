//! What a run drives: a service's base URL, how to sign in to it, and the
//! process whose CPU is counted.

use std::time::Duration;

use anyhow::{Context, bail};

/// One service under load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// How the reports name it.
    pub name: String,
    /// Where `POST {base}/api/{user_id}/chat` is served.
    pub base: String,
    /// Its process, for CPU per turn (Linux: `/proc/<pid>/stat`).
    pub pid: Option<u32>,
    pub auth: Auth,
}

/// How the bearer token of each user is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// One token, for one user.
    Token(String),
    /// HS256 tokens minted for each user with this secret (`sub` = user).
    Secret(String),
}

impl Target {
    /// `URL` or `url=URL[,name=N][,pid=P][,token=T|secret=S]`; the token or
    /// secret falls back to `default_auth`.
    pub fn parse(spec: &str, default_auth: Option<&Auth>) -> anyhow::Result<Target> {
        let (mut name, mut base, mut pid, mut auth) = (None, None, None, default_auth.cloned());
        if !spec.contains('=') {
            base = Some(spec.to_string());
        } else {
            for field in spec.split(',') {
                let (key, value) = field
                    .split_once('=')
                    .with_context(|| format!("{field:?} in --target is not key=value"))?;
                match key.trim() {
                    "url" => base = Some(value.to_string()),
                    "name" => name = Some(value.to_string()),
                    "pid" => pid = Some(value.parse().context("pid= takes a process id")?),
                    "token" => auth = Some(Auth::Token(value.to_string())),
                    "secret" => auth = Some(Auth::Secret(value.to_string())),
                    other => {
                        bail!("unknown --target key {other:?} (url, name, pid, token, secret)")
                    }
                }
            }
        }
        let base = base
            .context("--target needs a url")?
            .trim_end_matches('/')
            .to_string();
        if !base.starts_with("http://") {
            bail!("--target url must be http://… (got {base:?})");
        }
        let auth = auth.context("each target needs a token or a secret (--token, --secret)")?;
        Ok(Target {
            name: name.unwrap_or_else(|| base.clone()),
            base,
            pid,
            auth,
        })
    }

    /// The bearer token for `user`.
    pub fn token_for(&self, user: &str) -> String {
        match &self.auth {
            Auth::Token(token) => token.clone(),
            Auth::Secret(secret) => mint(secret, user),
        }
    }
}

/// An HS256 token for `user`, valid for a day.
fn mint(secret: &str, user: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        iat: u64,
        exp: u64,
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: user,
        iat: now,
        exp: now + 86_400,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 over plain claims cannot fail")
}

/// The CPU time (user + system) process `pid` has used so far, all its
/// threads included, ended ones too.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_time(&stat, CLOCK_TICKS_PER_SECOND)
}

/// utime and stime are fields 14 and 15, counted after the command name,
/// which is in parentheses and may hold spaces.
fn parse_cpu_time(stat: &str, ticks_per_second: u64) -> anyhow::Result<Duration> {
    let after_name = stat
        .rsplit_once(')')
        .context("a /proc stat line without a command name")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("a short /proc stat line")?
            .parse()
            .context("a /proc stat field that is not a number")
    };
    // After the name: state is field 3, so utime (14) is index 11.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(
        total * 1_000_000_000 / ticks_per_second,
    ))
}

/// `sysconf(_SC_CLK_TCK)`: the kernel's USER_HZ, fixed at 100 in its ABI.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_url_or_a_list_of_fields() {
        let token = Auth::Token("t".into());
        let bare = Target::parse("http://127.0.0.1:8000/", Some(&token)).unwrap();
        assert_eq!(bare.base, "http://127.0.0.1:8000");
        assert_eq!(bare.name, "http://127.0.0.1:8000");
        assert_eq!(bare.pid, None);
        let full = Target::parse("url=http://h:1,name=new,pid=42,secret=s", Some(&token)).unwrap();
        assert_eq!(
            (full.name.as_str(), full.pid, &full.auth),
            ("new", Some(42), &Auth::Secret("s".into()))
        );
        assert!(Target::parse("http://h:1", None).is_err());
        assert!(Target::parse("url=https://h:1", Some(&token)).is_err());
        assert!(Target::parse("url=http://h:1,port=2", Some(&token)).is_err());
    }

    #[test]
    fn minted_tokens_name_their_user() {
        let target = Target::parse("url=http://h:1,secret=s3cret", None).unwrap();
        let token = target.token_for("load-7");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "load-7");
    }

    #[test]
    fn cpu_time_is_utime_plus_stime() {
        let stat =
            "1234 (tokio (worker) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(
            parse_cpu_time(stat, 100).unwrap(),
            Duration::from_millis(3000)
        );
        let own = cpu_time(std::process::id()).unwrap();
        assert!(own < Duration::from_secs(3600));
    }
}
