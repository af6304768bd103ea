//! The one piece of HTTP/1.1 the loopback stand-ins need (the Runtime API emulator, the JWKS,
//! Management API and DynamoDB stand-ins, the proxies): read one request, write one response,
//! close; and, for the proxies, read one reply.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Request {
    head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The request target, e.g. `/@connections/abc`.
    pub fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("")
    }

    pub fn method(&self) -> &str {
        self.head.split_whitespace().next().unwrap_or("")
    }

    /// The request line and headers (each line ending in CRLF), without the headers named.
    pub fn head_without(&self, name: &str) -> String {
        let mut out = String::new();
        for (i, line) in self.head.split("\r\n").enumerate() {
            let skip = i > 0 && line.split_once(':').is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name));
            if !skip {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out
    }

    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one request, body included (by Content-Length); `None` if the peer goes away.
pub async fn read_request(socket: &mut (impl AsyncRead + Unpin)) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut request = Request { head, body: Vec::new() };
            let length = request.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let n = socket.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                buffer.extend_from_slice(&chunk[..n]);
            }
            request.body = buffer[end + 4..end + 4 + length].to_vec();
            return Some(request);
        }
        let n = socket.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one reply: to the end its `content-length` marks, else to the close. Not to the close
/// when the length is known — moto's server closes about 10 ms after its reply.
pub async fn read_reply(socket: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
            if let Some(length) = length.filter(|l| reply.len() >= end + 4 + l) {
                reply.truncate(end + 4 + length);
                return Some(reply);
            }
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return Some(reply);
        }
        reply.extend_from_slice(&chunk[..n]);
    }
}

/// Writes one response and ends the connection (clients reconnect for the next request).
pub async fn respond(socket: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) {
    let mut response = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    let _ = socket.write_all(response.as_bytes()).await;
}
