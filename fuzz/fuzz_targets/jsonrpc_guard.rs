//! The JSON-RPC guard (`sidecar::guard`) over in-memory streams:
//! arbitrary bytes split into lines reach the server exactly when a line is
//! JSON, in order and byte for byte, and every other non-blank line is
//! answered with one JSON-RPC parse error.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    // What the guard should do with each line, from the bytes alone.
    let mut passed = Vec::new();
    let mut refused = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        let body = line.trim_ascii();
        if body.is_empty() {
            continue;
        }
        // JSON by its grammar: `1e400` is JSON though no f64 holds it.
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            passed.extend_from_slice(line);
        } else {
            refused += 1;
        }
    }

    RUNTIME.block_on(async {
        let input = std::io::Cursor::new(data.to_vec());
        // Room for every answer, so that the guard never waits for this reader.
        let (output, from_guard) = tokio::io::duplex(1 << 20);
        let (mut server_in, server_out) = sidecar::guard(input, output);
        let mut seen = Vec::new();
        server_in
            .read_to_end(&mut seen)
            .await
            .expect("the server's input reads");
        assert_eq!(seen, passed, "what reached the server");
        let mut replies = BufReader::new(from_guard);
        let mut answers = Vec::new();
        while answers.len() < refused {
            let mut line = String::new();
            let read = replies
                .read_line(&mut line)
                .await
                .expect("the replies read");
            assert!(
                read > 0,
                "the guard stopped after {} of {refused} answers",
                answers.len()
            );
            answers.push(line);
        }
        for answer in answers {
            let reply: Value = serde_json::from_str(&answer).expect("an answer is JSON");
            assert_eq!(reply["jsonrpc"], "2.0");
            assert_eq!(reply["id"], Value::Null);
            assert_eq!(reply["error"]["code"], -32700);
        }
        // The server is done: the guard's output ends with nothing more.
        drop(server_out);
        let mut rest = Vec::new();
        replies
            .read_to_end(&mut rest)
            .await
            .expect("the replies read");
        assert!(rest.is_empty(), "more than one answer per line: {rest:?}");
    });
});
