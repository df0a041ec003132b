//! A real S3 server for tests and benchmarks: `moto_server` (PyPI `moto[server]`) on a free
//! port, with a bucket `lake`. Stopped (and resumed first, if a test paused it) when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts the server and creates the bucket `lake`; `None` when moto_server is not
    /// installed.
    pub fn start() -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Moto { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let ok = Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/lake")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "bucket creation failed");
        Some(server)
    }

    /// Sends the server a signal (`-STOP`, `-CONT`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// A `[bronze]` section landing under `s3://lake/<prefix>` on this server.
    pub fn bronze_toml(&self, prefix: &str) -> String {
        format!(
            "[bronze]\nurl = \"s3://lake/{prefix}\"\n[bronze.s3]\nendpoint = \"http://127.0.0.1:{}\"\nallow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n",
            self.port
        )
    }
}
