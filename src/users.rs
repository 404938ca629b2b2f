//! Users ("subscribers"): `sipring user add|del|list|passwd|enable|disable`,
//! and the admin socket through which these commands reach a running
//! server.
//!
//! A user is an AOR `user@domain` with HA1 digests for MD5 and SHA-256
//! (H(user:realm:password); the password itself is never stored), an
//! optional E.164 alias (`+15551234567`: callers may dial
//! `sip:+15551234567@domain` or `tel:+15551234567`) and an enabled flag.
//!
//! Where the commands write: the store the configuration selects. The
//! embedded store's file is locked while `sipring serve` runs, so then the
//! commands go through the server's admin socket, `<data_dir>/admin.sock`
//! (a Unix socket, mode 0600: only the server's user may use it): the
//! server applies them through its own store, and its cores' caches see
//! the change at once.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_lite::future::block_on;

use crate::auth::digest::ha1;
use crate::store::{Store, StoreError, User};

/// Runs `sipring user ...`: what it prints goes to `out`; the error is
/// for the user (exit status 1).
pub fn run(args: &crate::cli::UserArgs, out: &mut dyn Write) -> Result<(), String> {
    use crate::cli::UserAction;
    let config = args.load_config().map_err(|e| e.to_string())?;
    let (store, embedded) = open_for_users(&config)?;
    let read_password = |given: &Option<String>| -> Result<String, String> {
        if let Some(p) = given {
            return Ok(p.clone());
        }
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        let p = line.trim_end_matches(['\r', '\n']).to_owned();
        if p.is_empty() {
            return Err("no password (--password, or one line on stdin)".into());
        }
        Ok(p)
    };
    let result = (|| -> Result<(), String> {
        match &args.action {
            UserAction::Add {
                aor,
                password,
                phone,
                realm,
                disabled,
            } => {
                let aor = Aor::parse(aor)?;
                let phone = phone.as_deref().map(normalize_phone).transpose()?;
                if store.get(&aor.key())?.is_some() {
                    return Err(format!(
                        "{} exists (passwd changes its password)",
                        aor.key()
                    ));
                }
                let pw = read_password(password)?;
                let u = new_user(&aor, &pw, realm.as_deref(), phone, !disabled);
                store.put(u)?;
                writeln!(out, "added {}", aor.key()).map_err(|e| e.to_string())
            }
            UserAction::Del { aor } => {
                let aor = Aor::parse(aor)?;
                if !store.delete(&aor.key())? {
                    return Err(format!("no user {}", aor.key()));
                }
                writeln!(out, "deleted {}", aor.key()).map_err(|e| e.to_string())
            }
            UserAction::List => {
                for u in store.list()? {
                    writeln!(
                        out,
                        "{}\trealm={}\tphone={}\t{}",
                        u.aor,
                        u.realm,
                        u.phone.as_deref().unwrap_or("-"),
                        if u.enabled { "enabled" } else { "disabled" }
                    )
                    .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            UserAction::Passwd { aor, password } => {
                let aor = Aor::parse(aor)?;
                let Some(old) = store.get(&aor.key())? else {
                    return Err(format!("no user {}", aor.key()));
                };
                let pw = read_password(password)?;
                let u = new_user(&aor, &pw, Some(&old.realm), old.phone, old.enabled);
                store.put(u)?;
                writeln!(out, "password of {} changed", aor.key()).map_err(|e| e.to_string())
            }
            UserAction::Enable { aor } | UserAction::Disable { aor } => {
                let on = matches!(args.action, UserAction::Enable { .. });
                let aor = Aor::parse(aor)?;
                let Some(mut u) = store.get(&aor.key())? else {
                    return Err(format!("no user {}", aor.key()));
                };
                u.enabled = on;
                store.put(u)?;
                let what = if on { "enabled" } else { "disabled" };
                writeln!(out, "{what} {}", aor.key()).map_err(|e| e.to_string())
            }
        }
    })();
    drop(store);
    if let Some(e) = embedded {
        e.close();
    }
    result
}

/// The store user commands use: the configured one, or (embedded, while a
/// server holds it) the server's admin socket. With the embedded store
/// opened here, its handle too (to close it).
fn open_for_users(
    config: &crate::config::Config,
) -> Result<(UserStore, Option<crate::store::embedded::EmbeddedStore>), String> {
    use crate::store::StoreSelection;
    use crate::store::embedded::{EmbeddedStore, OpenError};
    match config.store_selection().map_err(|e| e.to_string())? {
        StoreSelection::Embedded(dir) => {
            match EmbeddedStore::open_with(&dir, config.store.embedded_options()) {
                Ok(s) => Ok((UserStore::Direct(Arc::new(s.clone())), Some(s))),
                Err(OpenError::Locked(_)) => Ok((UserStore::Server(dir.join(ADMIN_SOCKET)), None)),
                Err(e) => Err(e.to_string()),
            }
        }
        StoreSelection::Cassandra(c) => {
            let s =
                crate::store::cassandra::CassandraStore::connect(c).map_err(|e| e.to_string())?;
            Ok((UserStore::Direct(Arc::new(s)), None))
        }
    }
}

/// The admin socket's file name in the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// An address of record, `user@domain` (domain in lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aor {
    /// The user part (case-sensitive).
    pub user: String,
    /// The domain (lower case).
    pub domain: String,
}

impl Aor {
    /// Parses `user@domain` or `sip:user@domain` (also `sips:`).
    pub fn parse(s: &str) -> Result<Aor, String> {
        let bare = s
            .strip_prefix("sip:")
            .or_else(|| s.strip_prefix("sips:"))
            .unwrap_or(s);
        let Some((user, domain)) = bare.rsplit_once('@') else {
            return Err(format!("{s:?}: an AOR is user@domain"));
        };
        let user_ok = !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b));
        if !user_ok {
            return Err(format!("{s:?}: bad user part {user:?}"));
        }
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !domain_ok {
            return Err(format!("{s:?}: bad domain {domain:?}"));
        }
        Ok(Aor {
            user: user.to_owned(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// `user@domain`, the store's key.
    pub fn key(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

/// Normalizes an E.164 number: `+` and 1 to 15 digits (visual separators
/// `-`, `.`, `(`, `)` and spaces are dropped).
pub fn normalize_phone(s: &str) -> Result<String, String> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let ok = digits.len() >= 2
        && digits.len() <= 16
        && digits.starts_with('+')
        && digits[1..].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(digits)
    } else {
        Err(format!(
            "{s:?}: a phone alias is E.164, + and up to 15 digits"
        ))
    }
}

/// The user record for `aor` with `password`: HA1s for `realm` (default:
/// the AOR's domain).
pub fn new_user(
    aor: &Aor,
    password: &str,
    realm: Option<&str>,
    phone: Option<String>,
    enabled: bool,
) -> User {
    let realm = realm.unwrap_or(&aor.domain).to_owned();
    User {
        aor: aor.key(),
        ha1_md5: ha1(false, &aor.user, &realm, password),
        ha1_sha256: ha1(true, &aor.user, &realm, password),
        realm,
        phone,
        enabled,
    }
}

/// Where user commands go: the store itself, or a running server.
#[derive(Debug)]
pub enum UserStore {
    /// A store opened by this process.
    Direct(Arc<dyn Store>),
    /// The admin socket of the `sipring serve` that holds the store.
    Server(PathBuf),
}

impl UserStore {
    /// The user with this AOR.
    pub fn get(&self, aor: &str) -> Result<Option<User>, String> {
        match self {
            UserStore::Direct(s) => block_on(s.user(aor)).map_err(|e| e.to_string()),
            UserStore::Server(p) => {
                let lines = admin_request(p, &format!("GET\t{aor}"))?;
                match lines.first().map(String::as_str) {
                    Some("NONE") => Ok(None),
                    Some(l) => decode_user(l).map(Some),
                    None => Err("empty answer".into()),
                }
            }
        }
    }

    /// Creates or replaces a user; returns once it is durable.
    pub fn put(&self, user: User) -> Result<(), String> {
        match self {
            UserStore::Direct(s) => block_on(s.put_user(user)).map_err(|e| e.to_string()),
            UserStore::Server(p) => {
                admin_request(p, &format!("PUT\t{}", encode_user(&user)))?;
                Ok(())
            }
        }
    }

    /// Deletes a user and its bindings; whether it existed.
    pub fn delete(&self, aor: &str) -> Result<bool, String> {
        match self {
            UserStore::Direct(s) => block_on(s.delete_user(aor)).map_err(|e| e.to_string()),
            UserStore::Server(p) => {
                let lines = admin_request(p, &format!("DEL\t{aor}"))?;
                Ok(lines.first().map(String::as_str) == Some("OK 1"))
            }
        }
    }

    /// Every user.
    pub fn list(&self) -> Result<Vec<User>, String> {
        match self {
            UserStore::Direct(s) => block_on(s.list_users()).map_err(|e| e.to_string()),
            UserStore::Server(p) => admin_request(p, "LIST")?
                .iter()
                .map(|l| decode_user(l))
                .collect(),
        }
    }
}

fn encode_user(u: &User) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        u.aor,
        u.realm,
        u.ha1_md5,
        u.ha1_sha256,
        u.phone.as_deref().unwrap_or("-"),
        u8::from(u.enabled)
    )
}

fn decode_user(line: &str) -> Result<User, String> {
    let f: Vec<&str> = line.split('\t').collect();
    let [tag, aor, realm, md5, sha, phone, enabled] = f[..] else {
        return Err(format!("bad user line {line:?}"));
    };
    if tag != "USER" && tag != "PUT" {
        return Err(format!("bad user line {line:?}"));
    }
    Ok(User {
        aor: aor.into(),
        realm: realm.into(),
        ha1_md5: md5.into(),
        ha1_sha256: sha.into(),
        phone: (phone != "-").then(|| phone.to_owned()),
        enabled: enabled == "1",
    })
}

/// One request on the admin socket: the answer's lines (`ERR ...` is an
/// error).
fn admin_request(path: &Path, line: &str) -> Result<Vec<String>, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "the store is in use by a running sipring, and its admin socket {} does not answer: {e}",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    writeln!(s, "{line}").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for l in BufReader::new(s).lines() {
        let l = l.map_err(|e| e.to_string())?;
        if l == "END" {
            return Ok(out);
        }
        if let Some(e) = l.strip_prefix("ERR ") {
            return Err(e.to_owned());
        }
        out.push(l);
    }
    Err("the server closed the admin socket early".into())
}

/// The admin socket of a running server: a thread that answers user
/// commands through the server's store. Removed when dropped.
#[derive(Debug)]
pub struct AdminServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Listens on `path` (a stale socket file is replaced; mode 0600).
    pub fn start(path: &Path, store: Arc<dyn Store>) -> std::io::Result<AdminServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sipring-admin".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(c) = conn {
                        serve_admin(c, &*store);
                    }
                }
            })?;
        Ok(AdminServer {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_admin(conn: UnixStream, store: &dyn Store) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut line = String::new();
    let Ok(mut w) = conn.try_clone() else {
        return;
    };
    if BufReader::new(conn).read_line(&mut line).is_err() {
        return;
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (cmd, rest) = line.split_once('\t').unwrap_or((line, ""));
    let err = |e: StoreError| vec![format!("ERR {e}")];
    let reply: Vec<String> = match cmd {
        "GET" => match block_on(store.user(rest)) {
            Ok(Some(u)) => vec![format!("USER\t{}", encode_user(&u))],
            Ok(None) => vec!["NONE".into()],
            Err(e) => err(e),
        },
        "PUT" => match decode_user(line) {
            Ok(u) => match block_on(store.put_user(u)) {
                Ok(()) => vec!["OK".into()],
                Err(e) => err(e),
            },
            Err(e) => vec![format!("ERR {e}")],
        },
        "DEL" => match block_on(store.delete_user(rest)) {
            Ok(existed) => vec![format!("OK {}", u8::from(existed))],
            Err(e) => err(e),
        },
        "LIST" => match block_on(store.list_users()) {
            Ok(users) => users
                .iter()
                .map(|u| format!("USER\t{}", encode_user(u)))
                .collect(),
            Err(e) => err(e),
        },
        _ => vec![format!("ERR unknown command {cmd:?}")],
    };
    for l in reply {
        if writeln!(w, "{l}").is_err() {
            return;
        }
    }
    let _ = writeln!(w, "END");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aors_and_phones_parse_and_normalize() {
        let a = Aor::parse("sip:alice@Example.COM").unwrap();
        assert_eq!(
            (a.user.as_str(), a.domain.as_str()),
            ("alice", "example.com")
        );
        assert_eq!(a.key(), "alice@example.com");
        assert_eq!(Aor::parse("u000001@127.0.0.1").unwrap().domain, "127.0.0.1");
        assert_eq!(
            Aor::parse("+15551234567@x.org").unwrap().user,
            "+15551234567"
        );
        for bad in ["alice", "@x.org", "al ice@x.org", "a@", "a@x y", "a\t@x"] {
            assert!(Aor::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_phone("+1 (555) 123-4567").unwrap(),
            "+15551234567"
        );
        for bad in ["15551234567", "+", "+1555abc", "+1234567890123456"] {
            assert!(normalize_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_keep_only_digests() {
        let a = Aor::parse("alice@example.com").unwrap();
        let u = new_user(&a, "s3cret", None, Some("+15551230001".into()), true);
        assert_eq!(u.realm, "example.com");
        assert_eq!(u.ha1_md5, ha1(false, "alice", "example.com", "s3cret"));
        assert_eq!(u.ha1_sha256.len(), 64);
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(decode_user(&format!("USER\t{}", encode_user(&u))), Ok(u));
    }

    #[test]
    fn the_admin_socket_serves_a_store() {
        let dir = std::env::temp_dir().join(format!("sipring-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::store::embedded::EmbeddedStore::open(&dir).unwrap();
        let sock = dir.join(ADMIN_SOCKET);
        let server = AdminServer::start(&sock, Arc::new(store.clone())).unwrap();
        let client = UserStore::Server(sock.clone());
        let a = Aor::parse("bob@example.com").unwrap();
        let u = new_user(&a, "pw", None, None, true);
        client.put(u.clone()).unwrap();
        assert_eq!(client.get("bob@example.com").unwrap(), Some(u.clone()));
        assert_eq!(
            block_on(store.user("bob@example.com")).unwrap(),
            Some(u.clone())
        );
        assert_eq!(client.list().unwrap(), vec![u]);
        assert!(client.delete("bob@example.com").unwrap());
        assert!(!client.delete("bob@example.com").unwrap());
        assert_eq!(client.get("bob@example.com").unwrap(), None);
        drop(server);
        assert!(!sock.exists());
        assert!(client.list().is_err());
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
