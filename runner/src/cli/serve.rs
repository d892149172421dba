//! `stuffed serve`: the local, read-only web dashboard over the results database (the server is
//! `crate::serve`). Listens on loopback unless told otherwise, and says where at start.
use std::net::SocketAddr;

use anyhow::Context;

use super::common::{runtime, DbArgs};
use crate::serve;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on, IP:PORT or HOST:PORT (loopback unless told otherwise; port 0 picks a
    /// free one).
    #[arg(long, default_value = "127.0.0.1:8765")]
    bind: String,
    /// The runs directories whose files (logs, checkpoints) may be served; a path recorded in
    /// the database outside them is never served (default: results/runs and `runs` beside the
    /// database). Repeatable.
    #[arg(long)]
    runs_dir: Vec<std::path::PathBuf>,
    /// Require this access token on every request (for a dashboard bound beyond loopback):
    /// `auto` makes a random one and prints the URL carrying it. Prefer $STUFFED_SERVE_TOKEN
    /// to the flag on shared machines (other users see command lines).
    #[arg(long, env = "STUFFED_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        crate::store::Db::must_exist(&self.db.db)?;
        runtime()?.block_on(async {
            let addr: SocketAddr = match self.bind.parse() {
                Ok(a) => a,
                Err(_) => tokio::net::lookup_host(&self.bind).await.ok().and_then(|mut a| a.next()).with_context(|| format!("--bind {}: expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:8765", self.bind))?,
            };
            let token = match self.token.as_deref() {
                None | Some("") => None,
                Some("auto") => Some(serve::generate_token().context("making an access token")?),
                Some(t) => {
                    serve::validate_token(t).map_err(anyhow::Error::msg)?;
                    Some(t.to_string())
                }
            };
            let runs_dirs = if self.runs_dir.is_empty() { serve::default_runs_dirs(&self.db.db) } else { serve::canonical_dirs(&self.runs_dir) };
            if runs_dirs.len() < self.runs_dir.len() {
                anyhow::bail!("--runs-dir: {} is not a directory", self.runs_dir.iter().find(|d| !d.is_dir()).map_or(String::new(), |d| d.display().to_string()));
            }
            let db = self.db.open_read_only().await?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            let local = listener.local_addr()?;
            let opts = serve::Options {
                db_label: self.db.db.display().to_string(),
                loopback_only: serve::is_loopback(&local),
                scratch: serve::default_scratch(),
                base_dirs: serve::default_base_dirs(&self.db.db),
                runs_dirs: runs_dirs.clone(),
                token: token.clone(),
            };
            let app = serve::router(db, opts)?;
            println!("stuffed serve: read-only dashboard of {}", self.db.db.display());
            let with_token = token.as_ref().map_or(String::new(), |t| format!("?token={t}"));
            if serve::is_loopback(&local) {
                println!("listening on http://{local}/{with_token} (loopback only: other machines cannot connect; --bind 0.0.0.0:{} --token auto to share)", local.port());
            } else if token.is_some() {
                println!("listening on http://{local}/{with_token} on a non-loopback address: requests need the access token (read-only)");
            } else {
                println!(
                    "listening on http://{local}/ on a non-loopback address: anyone who can reach this machine can read these results (read-only, no authentication; --token auto requires a token)"
                );
            }
            let shown: Vec<String> = runs_dirs.iter().map(|d| d.display().to_string()).collect();
            println!("serving logs and checkpoints only from inside {} (--runs-dir DIR to choose)", shown.join(", "));
            println!("JSON API at http://{local}/api; Ctrl-C to stop");
            serve::serve(listener, app, shutdown()).await
        })?;
        Ok(0)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("stuffed serve: stopping");
}
