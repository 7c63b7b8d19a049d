//! `xs scru128`: prints a new SCRU128 id, or unpacks an id into its fields and packs them back.
//! Works offline; no daemon involved.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

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
            unpack(parse_id(&id)?).to_string()
        }
        Some(Command::Pack) => {
            let input = read_stdin()?;
            let fields: Value = serde_json::from_str(&input).context("stdin is not valid JSON")?;
            pack(&fields)?.to_string()
        }
    };
    write_stdout(format!("{out}\n").as_bytes())
}

fn unpack(id: xs::Id) -> Value {
    json!({
        "timestamp": id.timestamp() as f64 / 1000.0,
        "counter_hi": id.counter_hi(),
        "counter_lo": id.counter_lo(),
        "node": format!("{:08x}", id.entropy()),
    })
}

fn pack(fields: &Value) -> Result<xs::Id> {
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| anyhow!("missing field {name:?}"))
    };
    let secs = field("timestamp")?
        .as_f64()
        .filter(|s| *s >= 0.0)
        .ok_or_else(|| anyhow!("\"timestamp\" must be a non-negative number of seconds"))?;
    let counter = |name: &str| -> Result<u32> {
        field(name)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| anyhow!("{name:?} must be a whole number"))
    };
    let node = field("node")?
        .as_str()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(|| anyhow!("\"node\" must be a hex string of at most 8 digits"))?;
    let ms = (secs * 1000.0).round() as u64;
    match xs::Id::try_from_fields(ms, counter("counter_hi")?, counter("counter_lo")?, node) {
        Ok(id) => Ok(id),
        Err(_) => bail!("a field is out of range (timestamp < 2^48 ms, counters < 2^24)"),
    }
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
    }
}
