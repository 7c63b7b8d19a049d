//! `xs scru128`: prints a new SCRU128 id, or unpacks an id into its fields and packs them back.
//! Works offline; no daemon involved.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
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
    /// Print an id's fields as JSON: timestamp (seconds), counter_hi, counter_lo, node
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
            let fields: Fields = serde_json::from_str(&input)
                .context("stdin is not the JSON that `xs scru128 unpack` prints")?;
            pack(&fields)?.to_string()
        }
    };
    write_stdout(format!("{out}\n").as_bytes())
}

/// The fields of an id, as `unpack` prints them and `pack` reads them.
#[derive(Serialize, Deserialize)]
struct Fields {
    /// Seconds since the Unix epoch (ms precision).
    timestamp: f64,
    counter_hi: u32,
    counter_lo: u32,
    /// The 32-bit entropy field, in hex.
    node: String,
}

fn unpack(id: xs::Id) -> Fields {
    Fields {
        timestamp: id.timestamp() as f64 / 1000.0,
        counter_hi: id.counter_hi(),
        counter_lo: id.counter_lo(),
        node: format!("{:08x}", id.entropy()),
    }
}

fn pack(fields: &Fields) -> Result<xs::Id> {
    if fields.timestamp < 0.0 || !fields.timestamp.is_finite() {
        bail!("\"timestamp\" must be a non-negative number of seconds");
    }
    let node = u32::from_str_radix(&fields.node, 16)
        .map_err(|_| anyhow!("\"node\" must be a hex string of at most 8 digits"))?;
    let ms = (fields.timestamp * 1000.0).round() as u64;
    xs::Id::try_from_fields(ms, fields.counter_hi, fields.counter_lo, node)
        .map_err(|_| anyhow!("a field is out of range (timestamp < 2^48 ms, counters < 2^24)"))
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
        assert!(json.starts_with(r#"{"timestamp":"#));
    }
}
