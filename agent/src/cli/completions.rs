//! `saturn completions SHELL`: prints a shell completion script on stdout.
//!
//! Install, e.g. for bash: `saturn completions bash > /etc/bash_completion.d/saturn`,
//! for zsh: `saturn completions zsh > "${fpath[1]}/_saturn"`.

use clap_complete::Shell;

/// Writes the completion script of `cmd` for `shell` to stdout.
///
/// The script completes the command's own name (`saturn`), so it matches the installed
/// binary whatever path the user ran it from.
pub fn print_completions(shell: Shell, cmd: &mut clap::Command) {
    let bin_name = cmd.get_name().to_owned();
    // Generated into memory first: clap_complete panics on a failed write, and a closed
    // pipe (`saturn completions bash | head`) is not worth a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, cmd, bin_name, &mut script);
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
}
