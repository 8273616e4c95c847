//! Serving a fake on loopback.

use axum::Router;

/// A fake's server task on `127.0.0.1`, stopped when dropped.
pub(crate) struct Served {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` over plain HTTP on a free loopback port.
pub(crate) async fn serve(app: Router) -> anyhow::Result<Served> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Served { addr, task })
}
