//! `stuffed serve`: the local, read-only web dashboard over the results database.
use super::common::DbArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:8765")]
    bind: String,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        anyhow::bail!("the dashboard is being built: {} on {} is not served yet", self.db.db.display(), self.bind)
    }
}
