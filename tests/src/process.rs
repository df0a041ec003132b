//! A real `tidemark` process under test: its log captured as it runs, waits on what it prints,
//! SIGTERM with the time it took to exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::merge_scenario::tidemark_bin;

/// A running `tidemark` and what it printed to stderr so far.
#[derive(Debug)]
pub struct Tidemark {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Tidemark {
    /// Starts `tidemark --config <config> --log-format json <args>`.
    pub fn start(config: &std::path::Path, args: &[&str]) -> Tidemark {
        let mut child = Command::new(tidemark_bin())
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (sink, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Tidemark { child, log }
    }

    /// Waits until the log holds `text` (or panics after `within`).
    pub fn wait_for(&self, text: &str, within: Duration) {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.log.lock().unwrap().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no `{text}` in the log:\n{}", self.log.lock().unwrap());
    }

    /// Sends SIGTERM and returns how long the process took to exit.
    pub fn terminate(mut self) -> Duration {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return sent.elapsed();
            }
            if sent.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("SIGTERM ignored:\n{}", self.log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tidemark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
