//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`; not in a default
//! build). Each takes the fuzzer's bytes, feeds them to one family of parsers that read bytes
//! from outside the process, and asserts what must hold whatever the bytes: no panic, and the
//! family's own invariants (a request both decoders read is the same request, a path that
//! resolves lies inside a root, an error has a message). A failed assertion is a crash the
//! fuzzer keeps; each one found became a regression test next to its parser.
//!
//! - [`server`]: JSON-RPC decoding (our fast path and rmcp's), the stdio line framing, the
//!   HTTP guard's Host/Origin/bearer rules.
//! - [`config`]: plugin manifests, `.env`, tool arguments against their schemas.
//! - [`sandbox`]: the files plugin's path resolver.
//! - [`plugins`]: Airtable import rows, Airtable's and GitHub's answers.
//! - [`agents`]: the provider formats' answers, error bodies and event streams.
//!
//! Inputs with several parts put one per line first (a setting, a header), then the payload.

pub mod agents;
pub mod config;
pub mod plugins;
pub mod sandbox;
pub mod server;

/// Run `future` to completion on this thread's runtime (no I/O or timer drivers: the targets
/// read from memory).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime without drivers starts");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// `bytes` up to the first line break, and what follows it.
fn first_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// `bytes` cut into pieces whose lengths cycle through `sizes` (each at least 1).
fn pieces<'a>(bytes: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |&s| usize::from(s).max(1))
            .min(rest.len());
        let (piece, tail) = rest.split_at(size);
        out.push(piece);
        rest = tail;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    //! Every seed and every input the fuzzer kept in `fuzz/corpus/` runs through its target
    //! here, so `cargo test --features fuzzing` replays the corpus without cargo-fuzz.

    use std::path::Path;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("no corpus at {}", dir.display());
        };
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus at {}", dir.display());
    }

    #[test]
    fn the_corpus_passes_every_target() {
        replay("jsonrpc_decode", super::server::jsonrpc);
        replay("stdio_framing", super::server::stdio);
        replay("http_guard", super::server::guard);
        replay("manifest", super::config::manifest);
        replay("dotenv", super::config::dotenv);
        replay("tool_arguments", super::config::tool_arguments);
        replay("sandbox_paths", super::sandbox::paths);
        replay("import_rows", super::plugins::import_rows);
        replay("airtable_responses", super::plugins::airtable);
        replay("github_responses", super::plugins::github);
        replay("agent_replies", super::agents::replies);
        replay("agent_streams", super::agents::streams);
    }

    #[test]
    fn pieces_cover_the_input_in_order() {
        let bytes = b"abcdefghij";
        let joined: Vec<u8> = super::pieces(bytes, &[3, 0, 2]).concat();
        assert_eq!(joined, bytes);
        assert_eq!(super::pieces(bytes, &[]).len(), 1);
    }
}
