//! A TCP proxy that can take its peer away: while it is down, open connections are cut and new
//! ones are closed as soon as they are accepted, as a database that went away looks to a client.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    down: watch::Sender<bool>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<port>` to `upstream` from now on, in the current runtime.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (down, rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() {
                    continue; // dropped: the client sees its connection closed
                }
                tokio::spawn(forward(client, upstream, rx.clone()));
            }
        });
        Proxy { port, down }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::up`].
    pub fn down(&self) {
        self.down.send_replace(true);
    }

    pub fn up(&self) {
        self.down.send_replace(false);
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut down: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = down.wait_for(|d| *d) => {}
    }
}
