//! `xs scru128`: prints a new SCRU128 id, or unpacks an id into its fields and packs them back,
//! in cross.stream's shape (`{ts_ms, counter_hi, counter_lo, node}`). Works offline; no daemon
//! involved.

use std::io::Read;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::write_stdout;
use crate::commands::parse_id;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print an id's fields as JSON: ts_ms (ms since the epoch), counter_hi, counter_lo, node
    Unpack {
        /// The id, or - to read it from stdin
        #[arg(value_name = "ID", default_value = "-")]
        id: String,
    },
    /// Read the JSON that unpack prints from stdin and print the id
    Pack,
}

pub async fn run(args: Args) -> Result<()> {
    let out = match args.command {
        None => scru128::new().to_string(),
        Some(Command::Unpack { id }) => {
            let id = if id == "-" { read_stdin()? } else { id };
            serde_json::to_string(&unpack(parse_id(&id)?))?
        }
        Some(Command::Pack) => {
            let input = read_stdin()?;
            let fields: Fields = serde_json::from_str(&input).map_err(|e| {
                anyhow!("stdin is not {{\"ts_ms\", \"counter_hi\", \"counter_lo\", \"node\"}} as `xs scru128 unpack` prints: {e}")
            })?;
            pack(&fields)?.to_string()
        }
    };
    write_stdout(format!("{out}\n").as_bytes())
}

/// The fields of an id, as `unpack` prints them and `pack` reads them (other keys, such as the
/// `when` that Nushell's `.id unpack` adds, are ignored).
#[derive(Serialize, Deserialize)]
struct Fields {
    /// Milliseconds since the Unix epoch.
    ts_ms: u64,
    counter_hi: u32,
    counter_lo: u32,
    /// The 32-bit entropy field, in hex.
    node: String,
}

fn unpack(id: xs::Id) -> Fields {
    Fields {
        ts_ms: id.timestamp(),
        counter_hi: id.counter_hi(),
        counter_lo: id.counter_lo(),
        node: format!("{:08x}", id.entropy()),
    }
}

fn pack(fields: &Fields) -> Result<xs::Id> {
    let node = u32::from_str_radix(&fields.node, 16)
        .map_err(|_| anyhow!("\"node\" must be a hex string of at most 8 digits"))?;
    xs::Id::try_from_fields(fields.ts_ms, fields.counter_hi, fields.counter_lo, node)
        .map_err(|_| anyhow!("a field is out of range (ts_ms < 2^48, counters < 2^24)"))
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read stdin")?;
    Ok(s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_pack_round_trip() {
        let id = scru128::new();
        assert_eq!(pack(&unpack(id)).unwrap(), id);
        let json = serde_json::to_string(&unpack(id)).unwrap();
        assert!(json.starts_with(r#"{"ts_ms":"#), "{json}");
    }
}
