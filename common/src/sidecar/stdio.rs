//! A stdio transport for MCP servers that answers malformed lines.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

/// Stdio for an MCP server that answers a line that is not JSON with a
/// JSON-RPC parse error (id `null`) and keeps serving; every other line is
/// passed through. Returns the reader and writer to hand to the MCP server.
pub fn guarded_stdio() -> (impl AsyncRead + Unpin, impl AsyncWrite + Unpin) {
    guard(stdin(), stdout())
}

// tokio's own stdin and stdout hand every read and write to a blocking
// thread: two thread wake-ups per message. When the agent runtime connects
// us with pipes, as it does, they are polled on the runtime's thread instead.

fn stdin() -> Box<dyn AsyncRead + Unpin + Send> {
    match dup(std::io::stdin()).and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok()) {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdin()),
    }
}

/// Standard output as a non-blocking pipe, unless stderr writes to the same
/// pipe: the log's blocking writes must not meet a full non-blocking pipe.
fn stdout() -> Box<dyn AsyncWrite + Unpin + Send> {
    let out = dup(std::io::stdout());
    let shared_with_stderr = match (&out, dup(std::io::stderr())) {
        (Some(out), Some(err)) => same_file(out, err),
        _ => true,
    };
    match out
        .filter(|_| !shared_with_stderr)
        .and_then(|fd| pipe::Sender::from_owned_fd(fd).ok())
    {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdout()),
    }
}

fn dup(stream: impl AsFd) -> Option<OwnedFd> {
    stream.as_fd().try_clone_to_owned().ok()
}

fn same_file(a: &OwnedFd, b: OwnedFd) -> bool {
    let meta = |fd: OwnedFd| std::fs::File::from(fd).metadata().ok();
    match (a.try_clone().ok().and_then(meta), meta(b)) {
        (Some(a), Some(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => true,
    }
}

/// [`guarded_stdio`] over any pair of streams.
pub fn guard<R, W>(input: R, output: W) -> (impl AsyncRead + Unpin, impl AsyncWrite + Unpin)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    const PARSE_ERROR: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error: the line is not JSON\"}}\n";
    let (server_in, mut to_server) = tokio::io::duplex(64 * 1024);
    let (from_server, server_out) = tokio::io::duplex(64 * 1024);
    let (errors, mut error_lines) = tokio::sync::mpsc::channel::<()>(16);
    tokio::spawn(async move {
        let mut lines = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let body = line.trim_ascii();
            if body.is_empty() {
                continue;
            }
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                if to_server.write_all(&line).await.is_err() {
                    break;
                }
            } else if errors.send(()).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut output = output;
        let mut replies = BufReader::new(from_server);
        let mut line = Vec::new();
        loop {
            line.clear();
            let wrote = tokio::select! {
                read = replies.read_until(b'\n', &mut line) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => output.write_all(&line).await,
                },
                Some(()) = error_lines.recv() => output.write_all(PARSE_ERROR).await,
            };
            if wrote.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    (server_in, server_out)
}
