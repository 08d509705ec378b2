//! What a package installs beside the binary: the man pages and the shell completions, made from
//! the command line's own definition (`edm-cast manpage DIR`, `edm-cast completions SHELL`, both
//! hidden) so that they always say what this binary takes. bench/deb.sh calls them.

use crate::cli::Cli;
use crate::error::Error;
use clap::CommandFactory;
use std::path::PathBuf;
use std::process::ExitCode;

/// `edm-cast manpage DIR`.
#[derive(clap::Args, Debug)]
pub struct ManpageArgs {
    /// Folder to write edm-cast.1 and one page per command into (created if missing).
    pub dir: PathBuf,
}

/// `edm-cast completions SHELL`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// Writes edm-cast.1, edm-cast-send.1, ... into the folder.
pub fn manpages(args: ManpageArgs) -> Result<ExitCode, Error> {
    let write = |source| Error::Write {
        path: args.dir.clone(),
        source,
    };
    std::fs::create_dir_all(&args.dir).map_err(write)?;
    clap_mangen::generate_to(Cli::command(), &args.dir).map_err(write)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the completion script to stdout.
pub fn completions(args: CompletionsArgs) -> Result<ExitCode, Error> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "edm-cast",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
