//! HTTP over turmoil's simulated TCP: a listener the service's own serve
//! loop accepts from, and a one-connection-per-request hyper client.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

pub const PORT: u16 = 8080;

/// turmoil's listener as an `axum::serve::Listener`, so that the production
/// serve loop (`accounts::http::serve`) runs unchanged in the simulation.
pub struct SimListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                // As tokio's listener does in axum: an accept error is the
                // peer's problem; wait a little and go on accepting.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// What a client saw of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status {
        code: u16,
        body: String,
    },
    /// No answer within the client's timeout: the request may or may not
    /// have been applied.
    Timeout,
    /// The connection failed (refused, reset, closed early).
    Failed(String),
}

/// Aborts the connection task when the request is over, timed out or not:
/// turmoil TCP has no retransmission, so a connection that lost a message
/// would otherwise hang forever.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Sends one request on a fresh connection to `host`, giving up after `timeout`.
pub async fn send(host: &str, method: Method, path_and_query: &str, timeout: Duration) -> Reply {
    let mut connection = AbortOnDrop(None);
    let exchange = exchange(host, method, path_and_query, &mut connection);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((code, body))) => Reply::Status { code, body },
        Ok(Err(error)) => Reply::Failed(error),
        Err(_) => Reply::Timeout,
    }
}

async fn exchange(
    host: &str,
    method: Method,
    path_and_query: &str,
    connection: &mut AbortOnDrop,
) -> Result<(u16, String), String> {
    let stream = turmoil::net::TcpStream::connect((host, PORT))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    connection.0 = Some(tokio::spawn(async move {
        // Its errors reach the request below as well.
        let _ = driver.await;
    }));
    let request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}
