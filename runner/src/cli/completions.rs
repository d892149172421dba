//! `stuffed completions SHELL`: the shell completion script of the whole command tree
//! (clap_complete), on standard output. `make install` writes them where the shells look.
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut super::Cli::command(), "stuffed", &mut out);
        super::common::write_stdout(&out)?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut super::super::Cli::command(), "stuffed", &mut out);
        String::from_utf8(out).expect("completions are UTF-8")
    }

    #[test]
    fn completions_for_bash_zsh_and_fish_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            for word in ["sweep", "results", "report", "completions", "ssd"] {
                assert!(s.contains(word), "{shell} completions lack {word}");
            }
        }
    }
}
