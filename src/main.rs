fn main() -> std::process::ExitCode {
    // The files plugin's text extractor: this binary, run on one document in a child process
    // with limits (see plugboard::plugins::files::extract).
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(plugboard::plugins::files::EXTRACT_ARG) {
        return plugboard::plugins::files::extract_child_main(&args.next().unwrap_or_default());
    }
    plugboard::cli::main()
}
