//! `xs nu [--install]`: prints the `xs.nu` module (the store commands for an interactive
//! Nushell session, each running this `xs` binary), or installs it where Nushell autoloads
//! files at start-up (`$XDG_CONFIG_HOME/nushell/autoload`, default `~/.config/...`).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use crate::client;

/// The module's source.
pub const XS_NU: &str = include_str!("../nu/xs.nu");

#[derive(clap::Args)]
pub struct Args {
    /// Write the module into Nushell's autoload directory instead of printing it
    #[arg(long)]
    install: bool,
}

pub fn run(args: Args) -> Result<()> {
    if !args.install {
        return client::write_stdout(XS_NU.as_bytes());
    }
    let dir = autoload_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("xs.nu");
    std::fs::write(&path, XS_NU).with_context(|| format!("cannot write {}", path.display()))?;
    client::write_stdout(format!("installed {}\n", path.display()).as_bytes())
}

fn autoload_dir() -> Result<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("$HOME is not set"))?)
            .join(".config"),
    };
    Ok(config.join("nushell").join("autoload"))
}
