//! Synthetic and file inputs for long-context evaluation: the `newlines` probe (a long run of
//! '\n') and plain text files.
use std::path::Path;

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// `len` tokens of the newline probe: the tokenizer's encoding of '\n' repeated.
pub fn newlines(tok: &Tokenizer, len: usize) -> Vec<u32> {
    let unit = tok.encode("\n");
    unit.iter().copied().cycle().take(len).collect()
}

/// The tokens of a text file; with `len`, exactly the first `len` (an error when shorter).
pub fn text_file(tok: &Tokenizer, path: &Path, len: Option<usize>) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let ids = tok.encode(&text);
    match len {
        None if ids.len() < 2 => Err(Error::at(path, "needs at least 2 tokens")),
        None => Ok(ids),
        Some(n) if ids.len() < n => Err(Error::at(path, format!("has {} tokens, {n} needed", ids.len()))),
        Some(n) => Ok(ids[..n].to_vec()),
    }
}
