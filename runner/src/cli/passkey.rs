//! `stuffed passkey sample`: print one passkey prompt, its passkey and needle position.
use serde_json::json;
use stuffed_model::data::passkey::{PasskeyFormat, PasskeyTemplate};
use stuffed_model::rng::Rng;
use stuffed_model::Tokenizer;

use super::common::print_json;
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One prompt for --len tokens with the needle at --depth.
    Sample(SampleArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Sample(a) => a.run(),
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Template {
    Authors,
    Exact,
}

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// bytes, gpt2 or hf:PATH.
    #[arg(long, default_value = "bytes")]
    tokenizer: String,
    /// Prompt length in tokens.
    #[arg(long)]
    len: usize,
    /// Needle depth in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    depth: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Generator: authors (their released code; at most --len tokens) or exact (exactly --len).
    #[arg(long, value_enum, default_value_t = Template::Authors)]
    template: Template,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl SampleArgs {
    fn run(self) -> anyhow::Result<i32> {
        let tok = Tokenizer::from_spec(&self.tokenizer)?;
        let format = match self.template {
            Template::Authors => PasskeyFormat::Authors,
            Template::Exact => PasskeyFormat::Exact,
        };
        let tpl = PasskeyTemplate::new(&tok, format);
        let key = tpl.draw_passkey(&mut Rng::new(self.seed));
        let p = tpl.prompt(self.len, self.depth, &key)?;
        let text = tok.decode(&p.tokens);
        match self.format {
            Format::Json => print_json(&json!({"passkey": p.passkey, "len": p.len, "depth": p.depth,
                "needle_position": p.needle_position, "blocks": p.blocks, "needle_index": p.needle_index, "template": format.to_string(), "tokenizer": tok.spec(), "prompt": text}))?,
            Format::Text => {
                println!("{text}");
                eprintln!(
                    "passkey {} | {} tokens | needle at token {} (depth {}) | {} blocks",
                    p.passkey, p.len, p.needle_position, p.depth, p.blocks
                );
            }
        }
        Ok(0)
    }
}
