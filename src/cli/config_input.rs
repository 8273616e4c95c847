//! Reading a config from stdin or a file, never from argv.

use std::io::Read;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

const MAX_CONFIG: usize = 64 * 1024;

/// Reads the config named by `--config`: `-` is stdin, `@path` a file.
pub fn read(source: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_CONFIG + 1));
    let limit = (MAX_CONFIG + 1) as u64;
    if source == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut buf)
            .context("cannot read the config from stdin")?;
    } else if let Some(path) = source.strip_prefix('@') {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .with_context(|| format!("cannot read the config file {path}"))?;
    } else {
        bail!(
            "--config takes `-` (JSON on stdin) or `@path` (JSON in a file); secrets never go on the command line"
        );
    }
    if buf.len() > MAX_CONFIG {
        bail!("the config is larger than {} KiB", MAX_CONFIG / 1024);
    }
    Ok(buf)
}
