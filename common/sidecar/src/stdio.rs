//! A stdio transport for MCP servers that answers malformed lines.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::net::unix::pipe;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::task::JoinHandle;

/// Stdio for an MCP server that answers a line that is not JSON with a
/// JSON-RPC parse error (id `null`) and keeps serving; every other line is
/// passed through. Returns the reader and writer to hand to the MCP server.
pub fn guarded_stdio() -> (impl AsyncRead + Unpin, impl AsyncWrite + Unpin) {
    guard(stdin(), stdout())
}

/// [`guarded_stdio`], with the task that copies the replies to stdout: it
/// ends once the server's side is dropped and every reply is written.
pub(super) fn guarded_stdio_joined() -> (DuplexStream, DuplexStream, JoinHandle<()>) {
    guarded(stdin(), stdout())
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

/// The longest request line passed to the server, newline excluded. A
/// longer one is answered with [`TOO_LONG`] and skipped without being held.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// The answer to a line that is not JSON.
const PARSE_ERROR: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error: the line is not JSON\"}}\n";

/// The answer to a line longer than [`MAX_LINE`].
const TOO_LONG: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"Invalid Request: the line is longer than 4 MiB\"}}\n";

/// [`guarded_stdio`] over any pair of streams (also the entry point for
/// fuzzing the guard in memory). Returns the server's side: what it reads
/// (the valid lines of `input`) and where it writes (copied to `output`,
/// with the answers to bad lines placed only between whole replies).
pub fn guard<R, W>(input: R, output: W) -> (impl AsyncRead + Unpin, impl AsyncWrite + Unpin)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_in, server_out, _) = guarded(input, output);
    (server_in, server_out)
}

fn guarded<R, W>(input: R, output: W) -> (DuplexStream, DuplexStream, JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_in, to_server) = tokio::io::duplex(64 * 1024);
    let (from_server, server_out) = tokio::io::duplex(64 * 1024);
    let (errors, error_lines) = tokio::sync::mpsc::channel(16);
    tokio::spawn(pass_requests(input, to_server, errors));
    let replies = tokio::spawn(pass_replies(from_server, output, error_lines));
    (server_in, server_out, replies)
}

/// Copies each JSON line of `input` to the server; sends the answer to
/// every other line to the reply side.
async fn pass_requests(
    input: impl AsyncRead + Unpin,
    mut to_server: impl AsyncWrite + Unpin,
    errors: Sender<&'static [u8]>,
) {
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        let answer = match read_line(&mut input, &mut line).await {
            Ok(Line::End) | Err(_) => break,
            Ok(Line::TooLong) => TOO_LONG,
            Ok(Line::Whole) => {
                let body = line.trim_ascii();
                if body.is_empty() {
                    continue;
                }
                if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                    if to_server.write_all(&line).await.is_err() {
                        break;
                    }
                    continue;
                }
                PARSE_ERROR
            }
        };
        if errors.send(answer).await.is_err() {
            break;
        }
    }
}

/// How [`read_line`] ended.
enum Line {
    /// A line (the last one may lack its newline) is in the buffer.
    Whole,
    /// The line was longer than [`MAX_LINE`]: skipped, the buffer empty.
    TooLong,
    /// The input ended.
    End,
}

/// Reads one line into `line`, keeping at most [`MAX_LINE`] bytes of it.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => Line::Whole,
            });
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let taken = newline.map_or(buf.len(), |i| i + 1);
        let content = taken - usize::from(newline.is_some());
        if !too_long && line.len() + content > MAX_LINE {
            too_long = true;
            *line = Vec::new();
        }
        if !too_long {
            line.extend_from_slice(&buf[..taken]);
        }
        input.consume(taken);
        if newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

/// Copies the server's replies to `output` as they come, and the answers to
/// bad lines between them: an answer that arrives while a reply is half
/// written waits for that reply's newline.
async fn pass_replies(
    from_server: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    mut errors: Receiver<&'static [u8]>,
) {
    let mut replies = BufReader::new(from_server);
    // Whether everything written so far ends with a newline.
    let mut between = true;
    let mut waiting: Vec<&'static [u8]> = Vec::new();
    let mut errors_open = true;
    loop {
        let wrote = tokio::select! {
            read = replies.fill_buf() => {
                let Ok(buf) = read else { break };
                if buf.is_empty() {
                    break;
                }
                // While answers wait, stop at the end of the current reply.
                let n = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) if !waiting.is_empty() => i + 1,
                    _ => buf.len(),
                };
                let mut wrote = output.write_all(&buf[..n]).await;
                between = buf[n - 1] == b'\n';
                replies.consume(n);
                if between {
                    for answer in waiting.drain(..) {
                        if wrote.is_ok() {
                            wrote = output.write_all(answer).await;
                        }
                    }
                }
                wrote
            }
            answer = errors.recv(), if errors_open => match answer {
                Some(answer) if between => output.write_all(answer).await,
                Some(answer) => {
                    waiting.push(answer);
                    Ok(())
                }
                None => {
                    errors_open = false;
                    Ok(())
                }
            },
        };
        if wrote.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    /// The client's ends of a guard over in-memory streams, and the server's.
    struct Wired {
        client_in: tokio::io::DuplexStream,
        client_out: tokio::io::DuplexStream,
        server_in: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
        server_out: Box<dyn AsyncWrite + Unpin + Send>,
    }

    fn wired() -> Wired {
        let (client_in, guard_in) = duplex(1 << 20);
        let (guard_out, client_out) = duplex(16 << 20);
        let (server_in, server_out) = guard(guard_in, guard_out);
        Wired {
            client_in,
            client_out,
            server_in: BufReader::new(Box::new(server_in)),
            server_out: Box::new(server_out),
        }
    }

    impl Wired {
        async fn send(&mut self, line: &[u8]) {
            self.client_in.write_all(line).await.unwrap();
        }

        async fn request(&mut self) -> String {
            let mut line = String::new();
            self.server_in.read_line(&mut line).await.unwrap();
            line
        }

        /// Every line the client got, once both sides have hung up.
        async fn replies(mut self) -> Vec<serde_json::Value> {
            drop((self.client_in, self.server_out, self.server_in));
            let mut out = Vec::new();
            self.client_out.read_to_end(&mut out).await.unwrap();
            out.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    serde_json::from_slice(l).unwrap_or_else(|_| {
                        panic!(
                            "a reply arrived cut: {:?}",
                            String::from_utf8_lossy(&l[..l.len().min(80)])
                        )
                    })
                })
                .collect()
        }
    }

    /// Lets every task that is ready run (the test runtime has one thread).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_bad_line_during_a_long_reply_leaves_the_reply_whole() {
        let mut w = wired();
        w.send(b"{\"id\":1}\n").await;
        assert_eq!(w.request().await, "{\"id\":1}\n");
        // Half of a reply longer than every buffer on its way...
        let long = "x".repeat(300 * 1024);
        let reply = format!("{{\"id\":1,\"result\":\"{long}\"}}\n");
        let (head, tail) = reply.split_at(200 * 1024);
        w.server_out.write_all(head.as_bytes()).await.unwrap();
        // ... a line that is not JSON, answered while the reply is unfinished ...
        w.send(b"{this is not json\n{\"id\":2}\n").await;
        assert_eq!(w.request().await, "{\"id\":2}\n");
        settle().await;
        // ... then the rest of it, and the next reply.
        w.server_out.write_all(tail.as_bytes()).await.unwrap();
        w.server_out
            .write_all(b"{\"id\":2,\"result\":2}\n")
            .await
            .unwrap();
        let replies = w.replies().await;
        assert_eq!(replies.len(), 3, "{}", replies.len());
        assert_eq!(replies[0]["result"].as_str(), Some(long.as_str()));
        assert_eq!(replies[1]["error"]["code"], -32700);
        assert_eq!(replies[2]["id"], 2);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_answered_and_skipped() {
        let (mut client_in, guard_in) = duplex(1 << 20);
        let (guard_out, client_out) = duplex(1 << 20);
        let (server_in, server_out) = guard(guard_in, guard_out);
        let huge = format!("{{\"id\":1,\"pad\":\"{}\"}}\n", "x".repeat(MAX_LINE));
        let at_limit = format!("{{\"id\":2,\"pad\":\"{}\"}}", "y".repeat(MAX_LINE - 17));
        let client = tokio::spawn(async move {
            client_in.write_all(huge.as_bytes()).await.unwrap();
            let rest = format!("{at_limit}\n{{\"id\":3}}\n");
            client_in.write_all(rest.as_bytes()).await.unwrap();
            client_in
        });
        let mut w = Wired {
            client_in: duplex(1).0,
            client_out,
            server_in: BufReader::new(Box::new(server_in)),
            server_out: Box::new(server_out),
        };
        let first = w.request().await;
        assert_eq!(
            first.len(),
            MAX_LINE + 1,
            "the first line passed is the one of the limit"
        );
        assert_eq!(w.request().await, "{\"id\":3}\n");
        w.client_in = client.await.unwrap();
        let replies = w.replies().await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["error"]["code"], -32600);
        assert_eq!(replies[0]["id"], serde_json::Value::Null);
    }
}
