//! `tessera`: the server and the operator CLI.

fn main() -> std::process::ExitCode {
    tessera::cli::run()
}
