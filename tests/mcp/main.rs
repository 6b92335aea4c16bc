//! plugboard driven as users drive it: the built binary, a real MCP client, every transport.
//! Timeouts, backoff, lockouts and retry hints are tested in process instead (`inproc.rs`),
//! under paused time, to the exact virtual duration.

mod sse_client;
mod support;

#[path = "../support/airtable.rs"]
mod fake_airtable;
#[path = "../support/github.rs"]
mod fake_github;
#[path = "../support/llm.rs"]
mod fake_llm;

mod agents;
mod airtable;
mod airtable_tools;
mod bad_input;
mod cli;
mod core;
mod dashboard;
mod files;
mod github;
mod hostile;
mod inproc;
mod limits;
mod oauth;
mod organize;
mod protocol;
mod protocol_input;
mod protocol_stream;
mod replicas;
mod rest;
mod scenario;
mod shared;
mod shared_calls;
mod shared_github;
mod snapshots;
mod transports;
mod upstream;
