//! The `sipring` command line (clap). `main.rs` dispatches on [`Command`]:
//! `serve` runs the proxy, `user` manages users (`crate::users`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// sipring: a thread-per-core SIP proxy cluster on io_uring.
#[derive(Debug, Parser)]
#[command(name = "sipring", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy until SIGINT/SIGTERM (logs to stderr; RUST_LOG filters).
    Serve(ServeArgs),
    /// Manage users (subscribers) in the store: add, del, list, passwd,
    /// enable, disable. While `sipring serve` runs on the embedded store,
    /// the commands go through its admin socket.
    User(UserArgs),
}

/// `sipring user` options and its action.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// TOML configuration file (the same as `serve`'s: `[store]`, `[server] data_dir`).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [default: ./sipring-data].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The store: `embedded` [default] or `cassandra://host1,host2/keyspace`.
    #[arg(long, value_name = "URL", global = true)]
    pub store: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub action: UserAction,
}

/// The user actions.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user (fails if it exists). Only the HA1 digests (MD5, SHA-256)
    /// of the password are stored.
    Add {
        /// The address of record, `user@domain` (or `sip:user@domain`).
        aor: String,
        /// The password [default: read one line from stdin].
        #[arg(long)]
        password: Option<String>,
        /// An E.164 alias (`+15551234567`): callers may dial it as
        /// `sip:+15551234567@domain` or `tel:+15551234567`.
        #[arg(long, value_name = "E164")]
        phone: Option<String>,
        /// The digest realm [default: the AOR's domain].
        #[arg(long)]
        realm: Option<String>,
        /// Add the user disabled (it can neither register nor be called).
        #[arg(long)]
        disabled: bool,
    },
    /// Delete a user and its registrations.
    Del {
        /// The address of record.
        aor: String,
    },
    /// List the users: AOR, realm, phone alias, enabled.
    List,
    /// Change a user's password.
    Passwd {
        /// The address of record.
        aor: String,
        /// The new password [default: read one line from stdin].
        #[arg(long)]
        password: Option<String>,
    },
    /// Let a disabled user register and be called again.
    Enable {
        /// The address of record.
        aor: String,
    },
    /// Stop a user from registering and being called.
    Disable {
        /// The address of record.
        aor: String,
    },
}

impl UserArgs {
    /// The configuration: the file (or the defaults), then these flags.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::from_toml("", Path::new("<defaults>"))?,
        };
        if let Some(d) = &self.data_dir {
            c.server.data_dir = d.clone();
        }
        if let Some(s) = &self.store {
            c.store.url = s.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// `sipring serve` options; each overrides the config file's value.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Public SIP address, UDP and TCP [default: 0.0.0.0:5060].
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Number of cores (executors) [default: all].
    #[arg(long, value_name = "N")]
    pub cores: Option<u16>,
    /// Send every request to this next hop.
    #[arg(long, value_name = "HOST:PORT")]
    pub forward_to: Option<String>,
    /// Serve Prometheus metrics at http://IP:PORT/metrics.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<SocketAddr>,
    /// The SIP domain served [default: the host name].
    #[arg(long, value_name = "D")]
    pub domain: Option<String>,
    /// Directory for the embedded store [default: ./sipring-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store: `embedded` [default] or
    /// `cassandra://host1,host2[:port]/keyspace[?rf=N]` (docs/storage.md).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Run a blind UDP relay to --forward-to instead of the proxy (a
    /// benchmark baseline that measures the shell alone).
    #[arg(long, requires = "forward_to")]
    pub relay: bool,
}

impl ServeArgs {
    /// The configuration: the file (or the defaults), then these flags.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::from_toml("", Path::new("<defaults>"))?,
        };
        if let Some(l) = self.listen {
            c.server.listen = l;
        }
        if let Some(n) = self.cores {
            c.server.cores = n;
        }
        if let Some(f) = &self.forward_to {
            c.proxy.forward_to = Some(f.clone());
        }
        if let Some(m) = self.metrics {
            c.metrics.listen = Some(m);
        }
        if let Some(d) = &self.domain {
            c.server.domain = Some(d.clone());
        }
        if let Some(d) = &self.data_dir {
            c.server.data_dir = d.clone();
        }
        if let Some(s) = &self.store {
            c.store.url = s.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let cli = Cli::try_parse_from([
            "sipring",
            "serve",
            "--listen",
            "127.0.0.1:5070",
            "--cores",
            "1",
            "--forward-to",
            "127.0.0.1:5080",
            "--domain",
            "example.org",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let c = args.load_config().unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(c.server.cores, 1);
        assert_eq!(c.proxy.forward_to.as_deref(), Some("127.0.0.1:5080"));
        assert_eq!(c.effective_domain(), "example.org");
        assert!(Cli::try_parse_from(["sipring", "serve", "--relay"]).is_err());

        let cli = Cli::try_parse_from([
            "sipring",
            "serve",
            "--store",
            "cassandra://10.0.0.1,10.0.0.2/calls",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let c = args.load_config().unwrap();
        let crate::store::StoreSelection::Cassandra(cc) = c.store_selection().unwrap() else {
            panic!("--store did not select cassandra");
        };
        assert_eq!(cc.keyspace, "calls");
        let cli = Cli::try_parse_from(["sipring", "serve", "--store", "cassandra://h/bad-ks"]);
        let Command::Serve(args) = cli.unwrap().command else {
            panic!("not serve");
        };
        assert!(args.load_config().is_err());
    }

    #[test]
    fn user_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "sipring",
            "user",
            "add",
            "alice@example.com",
            "--password",
            "s3cret",
            "--phone",
            "+15551230001",
            "--data-dir",
            "/tmp/d",
        ])
        .unwrap();
        let Command::User(args) = cli.command else {
            panic!("not user");
        };
        let UserAction::Add {
            aor,
            password,
            phone,
            disabled,
            ..
        } = &args.action
        else {
            panic!("not add");
        };
        assert_eq!(aor, "alice@example.com");
        assert_eq!(password.as_deref(), Some("s3cret"));
        assert_eq!(phone.as_deref(), Some("+15551230001"));
        assert!(!disabled);
        assert_eq!(
            args.load_config().unwrap().server.data_dir,
            PathBuf::from("/tmp/d")
        );
        for argv in [
            &["sipring", "user", "list"][..],
            &["sipring", "user", "del", "a@b"],
            &["sipring", "user", "passwd", "a@b", "--password", "x"],
            &["sipring", "user", "disable", "a@b"],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
        assert!(Cli::try_parse_from(["sipring", "user", "add"]).is_err());
    }
}
