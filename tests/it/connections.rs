//! Issue 24, point 4, against one address's flood: the real `integrations
//! serve`, on loopback, clients bound to addresses of 127/8 (all of it is
//! loopback on Linux) to stand for different peers.
//!
//! - one address holds at most `HTTP_MAX_CONNECTIONS_PER_IP`, so it cannot
//!   take every place and another address is served; past that, a new
//!   connection from it closes that address's own connection waiting
//!   longest on its client, or is refused at once when none waits;
//! - when every place is taken, a new connection closes the one waiting
//!   longest on its client (not through a head, between requests, or with
//!   a body still arriving): sockets that send a byte and wait, or trickle
//!   bodies, from as many addresses as it takes or from the address a
//!   client shares with them, do not keep a client with a whole request
//!   out;
//! - a client that has not read its answer for 2 s waits on it too, and may
//!   be closed for a newcomer;
//! - a chunked body whose size line never ends (endless zeros) is cut off
//!   after a bounded number of bytes, not read for the whole body deadline;
//! - while more than three quarters of the places are taken, connections
//!   that have sent nothing are closed after the first-byte deadline (2 s),
//!   so silent sockets from many addresses do not hold the cap for the
//!   head deadline (15 s); a connection that began its head is left be.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use testkit::{cli, serve};

/// A connection that has sent nothing for this long is closed while the
/// process is crowded (`connections::FIRST_BYTE_DEADLINE`).
const FIRST_BYTE_DEADLINE: Duration = Duration::from_secs(2);

/// `integrations serve` on an empty SQLite store.
struct Server {
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
    addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// With `HTTP_MAX_CONNECTIONS` = `max` and `HTTP_MAX_CONNECTIONS_PER_IP`
    /// = `per_address`.
    async fn start(max: usize, per_address: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let keys = cli::run(&url, "", &["keys", "generate"]).trim().to_string();
        let mut cmd = tokio::process::Command::new(crate::BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("INTEGRATIONS_DB", &url)
            .env("INTEGRATIONS_KEYS", &keys)
            .env("NO_COLOR", "1")
            .env("HTTP_MAX_CONNECTIONS", max.to_string())
            .env("HTTP_MAX_CONNECTIONS_PER_IP", per_address.to_string());
        let (child, base, log) = serve::spawn(&mut cmd).await;
        Self {
            _dir: dir,
            _child: child,
            addr: base.trim_start_matches("http://").parse().unwrap(),
            log,
        }
    }

    /// A connection from `127.0.0.<host>`.
    async fn connect_from(&self, host: u8) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, host], 0)))
            .unwrap();
        socket.connect(self.addr).await.unwrap()
    }

    /// `GET /healthz` from `127.0.0.<host>` on a fresh connection: its
    /// status, or why none came within `bound`.
    async fn healthz_from(&self, host: u8, bound: Duration) -> Result<u16, String> {
        let probe = async {
            let mut stream = self.connect_from(host).await;
            let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            // A refused connection may be closed before it takes this.
            let _ = stream.write_all(request).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).to_string()
        };
        let answer = tokio::time::timeout(bound, probe)
            .await
            .map_err(|_| format!("no answer within {bound:?}"))?;
        answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {answer:?}"))
    }

    /// Its stderr so far.
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Whether `stream` is still open: nothing to read on it within 100 ms
/// (these connections are sent nothing while held).
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf))
        .await
        .is_err()
}

/// Those of `streams` still open ([`still_open`], all at once).
async fn open_ones(streams: Vec<TcpStream>) -> Vec<TcpStream> {
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in streams {
        checks.spawn(async move { still_open(&mut stream).await.then_some(stream) });
    }
    let mut open = Vec::new();
    while let Some(checked) = checks.join_next().await {
        open.extend(checked.unwrap());
    }
    open
}

/// One address opens more connections than the whole cap and sends
/// nothing: it holds `HTTP_MAX_CONNECTIONS_PER_IP` of them (not closed
/// early: the process is not crowded), each newcomer past that closing the
/// address's connection waiting longest (so never more are held), and
/// another address is served within 1 s, and so is a whole request from
/// the same address; the evictions are logged. (An address none of whose
/// connections waits is refused: `connections::tests`.)
#[tokio::test]
async fn one_address_holds_at_most_its_share_and_another_is_served() {
    const MAX: usize = 200;
    const PER_ADDRESS: usize = 50;
    let server = Server::start(MAX, PER_ADDRESS).await;
    let mut held = Vec::new();
    for _ in 0..MAX + 10 {
        held.push(server.connect_from(1).await);
    }
    // The server accepts (and closes) the last ones a moment after the
    // kernel has: look again until it has caught up, for 10 s at most.
    let mut open = open_ones(held).await;
    let looking = Instant::now();
    while open.len() > PER_ADDRESS && looking.elapsed() < Duration::from_secs(10) {
        open = open_ones(open).await;
    }
    assert_eq!(
        open.len(),
        PER_ADDRESS,
        "one address holds its share, each one past it in the place of its own"
    );
    let started = Instant::now();
    let status = server.healthz_from(2, Duration::from_secs(1)).await;
    assert_eq!(status, Ok(200), "another address is served");
    assert!(started.elapsed() < Duration::from_secs(1));
    // Not crowded (a quarter of the places): silent connections are left
    // be past the first-byte deadline.
    tokio::time::sleep(FIRST_BYTE_DEADLINE + Duration::from_secs(1)).await;
    let open = open_ones(open).await;
    assert_eq!(open.len(), PER_ADDRESS, "closed while not crowded");
    // A whole request from the same address is served, in the place of
    // one of them.
    let status = server.healthz_from(1, Duration::from_secs(1)).await;
    assert_eq!(status, Ok(200), "the address's own waiting one makes room");
    let open = open_ones(open).await;
    assert_eq!(open.len(), PER_ADDRESS - 1);
    drop(open);
    let log = server.log();
    assert!(
        log.contains("closing those waiting longest to make room"),
        "the evictions are logged: {log}"
    );
}

/// Four addresses each hold their share of connections, every place of
/// the process, most of them silent, the rest a head begun: `/healthz` from
/// a fifth is answered at once, in the place of the connection idle longest
/// (and only that one); after the first-byte deadline (not before, and not
/// the 15 s of the head deadline) silent ones are closed until no more than
/// three quarters of the places are taken, the connections that began
/// their head are left be.
#[tokio::test]
async fn silent_sockets_of_many_addresses_are_closed_after_the_first_byte_deadline() {
    const MAX: usize = 40;
    const PER_ADDRESS: usize = 10;
    const TALKING: usize = 5;
    let server = Server::start(MAX, PER_ADDRESS).await;
    let opened = Instant::now();
    let mut silent = Vec::new();
    let mut talking = Vec::new();
    for host in 1..=4 {
        for i in 0..PER_ADDRESS {
            let mut stream = server.connect_from(host).await;
            if host == 4 && i < TALKING {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\n")
                    .await
                    .unwrap();
                talking.push(stream);
            } else {
                silent.push(stream);
            }
        }
    }
    let status = server.healthz_from(9, Duration::from_secs(1)).await;
    assert_eq!(status, Ok(200), "served in a place made for it");
    let mut silent = silent.into_iter();
    let mut longest = silent.next().unwrap();
    assert!(
        !still_open(&mut longest).await,
        "the connection idle longest"
    );
    // Not before the deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let silent = open_ones(silent.collect()).await;
    assert_eq!(
        silent.len(),
        MAX - TALKING - 1,
        "none closed after {:?}",
        opened.elapsed()
    );
    // Soon after it.
    tokio::time::sleep_until((opened + FIRST_BYTE_DEADLINE + Duration::from_millis(1500)).into())
        .await;
    let silent = open_ones(silent).await;
    assert!(
        silent.len() + TALKING <= MAX * 3 / 4,
        "{} silent connections left after {:?}",
        silent.len(),
        opened.elapsed()
    );
    let talking = open_ones(talking).await;
    assert_eq!(talking.len(), TALKING, "a head under way is left be");
}

/// Every place taken by connections that each sent one byte of a head, or
/// a whole request and then nothing (kept alive), from as many addresses as
/// it takes, opened anew as they are closed: a client with a whole request
/// is served within 1 s each time, the connection idle longest closed to
/// make room (so never more than the cap are held), and the evictions are
/// logged.
#[tokio::test]
async fn connections_that_send_a_byte_and_wait_do_not_keep_a_whole_request_out() {
    const MAX: usize = 64;
    const PER_ADDRESS: usize = 16;
    let server = Server::start(MAX, PER_ADDRESS).await;
    let mut held = Vec::new();
    for host in 1..=4u8 {
        for i in 0..PER_ADDRESS {
            let mut stream = server.connect_from(host).await;
            if i % 2 == 0 {
                stream.write_all(b"G").await.unwrap();
            } else {
                let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
                stream.write_all(request).await.unwrap();
                let mut answer = [0u8; 512];
                let n = stream.read(&mut answer).await.unwrap();
                assert!(answer[..n].starts_with(b"HTTP/1.1 200 "));
            }
            held.push(stream);
        }
    }
    for round in 0..20u8 {
        let status = server
            .healthz_from(100 + round, Duration::from_secs(1))
            .await;
        assert_eq!(status, Ok(200), "round {round}");
        // The attacker takes the freed place again.
        let mut stream = server.connect_from(5).await;
        stream.write_all(b"G").await.unwrap();
        held.push(stream);
    }
    let open = open_ones(held).await;
    assert!(
        open.len() <= MAX,
        "{} held: one closed for each let in",
        open.len()
    );
    let log = server.log();
    assert!(
        log.contains("closing those waiting longest to make room"),
        "the evictions are logged: {log}"
    );
}

/// A connection from `127.0.0.<host>` that sends a sign-in request's head
/// and the first byte of its 1,000-byte body, and nothing more.
async fn trickling_from(server: &Server, host: u8) -> TcpStream {
    let mut stream = server.connect_from(host).await;
    let head = "POST /v1/dashboard/sign-in HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Co-located tenants: every place of one address is taken by bodies
/// trickled to an unauthenticated route, refilled as they are closed; a
/// client at the same address with a whole request is served within 1 s
/// each time, in the place of the trickle waiting longest.
#[tokio::test]
async fn bodies_trickled_from_a_shared_address_do_not_keep_its_other_clients_out() {
    const MAX: usize = 200;
    const PER_ADDRESS: usize = 16;
    let server = Server::start(MAX, PER_ADDRESS).await;
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(trickling_from(&server, 1).await);
    }
    for round in 0..10 {
        let status = server.healthz_from(1, Duration::from_secs(1)).await;
        assert_eq!(status, Ok(200), "round {round}");
        held.push(trickling_from(&server, 1).await);
    }
    let open = open_ones(held).await;
    assert!(
        open.len() <= PER_ADDRESS,
        "{} held from one address",
        open.len()
    );
}

/// Every place of the process taken by trickled bodies from several
/// addresses, none over its share, refilled as they are closed: `/healthz`
/// from another address is served within 1 s each time, in the place of
/// the trickle waiting longest.
#[tokio::test]
async fn bodies_trickled_from_many_addresses_do_not_keep_a_whole_request_out() {
    const MAX: usize = 40;
    const PER_ADDRESS: usize = 10;
    let server = Server::start(MAX, PER_ADDRESS).await;
    let mut held = Vec::new();
    for host in 1..=4 {
        for _ in 0..PER_ADDRESS {
            held.push(trickling_from(&server, host).await);
        }
    }
    for round in 0..5u8 {
        let status = server
            .healthz_from(10 + round, Duration::from_secs(1))
            .await;
        assert_eq!(status, Ok(200), "round {round}");
        // The attacker takes the freed place again.
        held.push(trickling_from(&server, 5).await);
    }
    let open = open_ones(held).await;
    assert!(
        open.len() <= MAX,
        "{} held: one closed for each let in",
        open.len()
    );
}

/// A chunked body whose size line is endless zeros (no chunk ever ends, so
/// no byte of data): its connection is closed once it has sent a bounded
/// amount, long before the body deadline, and the process serves on.
#[tokio::test]
async fn a_chunk_size_line_that_never_ends_is_cut_off() {
    let server = Server::start(64, 16).await;
    let mut stream = server.connect_from(1).await;
    let head = "POST /v1/dashboard/sign-in HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let zeros = vec![b'0'; 16 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    let cut = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&zeros)).await {
            Ok(Ok(())) => sent += zeros.len(),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
        assert!(sent < 64 << 20, "{sent} bytes of size line taken");
    };
    assert!(cut, "the connection was not closed after {sent} bytes");
    assert!(started.elapsed() < Duration::from_secs(10));
    let status = server.healthz_from(2, Duration::from_secs(1)).await;
    assert_eq!(status, Ok(200));
}

/// Every place taken by clients that pipeline requests for large answers
/// and read none of them (a small receive window, as on a slow path): once
/// their writes have waited longer than the read grace (2 s), a client
/// with a whole request is served in the place of one of them, each time.
#[tokio::test]
async fn clients_that_stop_reading_their_answers_do_not_keep_a_whole_request_out() {
    const MAX: usize = 8;
    let server = Server::start(MAX, MAX).await;
    let mut held = Vec::new();
    for _ in 0..MAX {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(1024).unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let mut stream = socket.connect(server.addr).await.unwrap();
        let requests = "GET /v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(50);
        stream.write_all(requests.as_bytes()).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for round in 0..3u8 {
        let status = server
            .healthz_from(10 + round, Duration::from_secs(1))
            .await;
        assert_eq!(status, Ok(200), "round {round}");
    }
    let open = open_ones(held).await;
    assert!(
        open.len() <= MAX - 3,
        "{} of the readers kept their place",
        open.len()
    );
}
