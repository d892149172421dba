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
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        if !self.db.db.exists() {
            anyhow::bail!("no results database at {} (run a sweep first, or give --db PATH)", self.db.db.display());
        }
        runtime()?.block_on(async {
            let addr: SocketAddr = match self.bind.parse() {
                Ok(a) => a,
                Err(_) => tokio::net::lookup_host(&self.bind).await.ok().and_then(|mut a| a.next()).with_context(|| format!("--bind {}: expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:8765", self.bind))?,
            };
            let db = self.db.open().await?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            let local = listener.local_addr()?;
            let opts = serve::Options {
                db_label: self.db.db.display().to_string(),
                loopback_only: serve::is_loopback(&local),
                scratch: serve::default_scratch(),
                base_dirs: serve::default_base_dirs(&self.db.db),
            };
            let app = serve::router(db, opts)?;
            println!("stuffed serve: read-only dashboard of {}", self.db.db.display());
            if serve::is_loopback(&local) {
                println!("listening on http://{local}/ (loopback only: other machines cannot connect; --bind 0.0.0.0:{} to share)", local.port());
            } else {
                println!(
                    "listening on http://{local}/ on a non-loopback address: anyone who can reach this machine can read these results (read-only, no authentication)"
                );
            }
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
