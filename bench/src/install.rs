//! Finding the external programs the harness drives (sipp, Kamailio), and
//! installing them with apt on Debian when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The first executable `name` in `PATH` (or `name` itself if it is a path).
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    // /usr/sbin is where Debian puts kamailio; not every user has it in PATH.
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Finds `program`, or installs the Debian `package` providing it when
/// `install` is set (apt-get, through sudo when not root).
pub fn ensure(program: &str, package: &str, install: bool) -> Result<PathBuf> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    if !install {
        bail!(
            "{program} not found in PATH (Debian package {package}); install it or drop --no-install"
        );
    }
    eprintln!("sipring-bench: {program} is missing: installing the Debian package {package}");
    let root = nix::unistd::geteuid().is_root();
    let apt = |args: &[&str]| -> Result<()> {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let st = c
            .status()
            .with_context(|| format!("running apt-get {}", args.join(" ")))?;
        if !st.success() {
            bail!("apt-get {} failed ({st})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", package])?;
    which(program).with_context(|| format!("{package} installed but {program} still not found"))
}

/// The first line of `program flag` (its version banner), trimmed.
pub fn version_line(program: &Path, flag: &str, needle: &str) -> String {
    let Ok(out) = Command::new(program).arg(flag).output() else {
        return format!("{} (version unknown)", program.display());
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| l.contains(needle))
        .unwrap_or("version unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs() {
        assert!(which("sh").is_some());
        assert!(which("/bin/sh").is_some());
        assert!(which("no-such-program-sipring").is_none());
        assert!(ensure("no-such-program-sipring", "none", false).is_err());
    }
}
