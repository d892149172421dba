//! The `stuffed` binary: parse the command line, run it, map errors to exit codes.
use clap::Parser;

fn main() {
    // Die quietly on a closed pipe (`stuffed results list | head`), like other Unix tools.
    // Safety: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = stuffed::cli::Cli::parse();
    let code = match stuffed::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", stuffed::report_error(&err));
            stuffed::exit_code_for(&err)
        }
    };
    std::process::exit(code);
}
