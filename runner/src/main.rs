//! The `stuffed` binary: parse the command line, run it, map errors to exit codes.
use clap::Parser;

fn main() {
    // Die quietly on a closed pipe (`stuffed results list | head`), like other Unix tools.
    // Safety: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // A failed write to standard output (`> /dev/full`) inside println! is an error message
    // and exit code 1, not a panic with a backtrace (commands that print much use
    // `write_stdout`, which returns the error instead).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(cause) = msg.strip_prefix("failed printing to stdout: ") {
            eprintln!("error: writing to standard output: {cause}");
            std::process::exit(stuffed::exit::ERROR);
        }
        default_hook(info);
    }));
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
