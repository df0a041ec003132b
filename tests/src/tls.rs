//! TLS peers for tests: the throwaway test CA (`scripts/tls-test-certs.sh`), `stunnel` in front
//! of any TCP server, and a Kafka-protocol broker that speaks SASL_SSL with SCRAM (tansu with
//! `--authentication`, behind stunnel, advertising the TLS port). Missing tools skip a test,
//! unless `TIDEMARK_REQUIRE_TLS` is set (CI), where that is a failure.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::run_setup::free_port;

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `Some(())` when every tool is there; otherwise skip (or fail under `TIDEMARK_REQUIRE_TLS`).
pub fn tools(cmds: &[&str]) -> Option<()> {
    let missing: Vec<&str> = cmds.iter().copied().filter(|c| !have(c)).collect();
    if missing.is_empty() {
        return Some(());
    }
    assert!(
        std::env::var_os("TIDEMARK_REQUIRE_TLS").is_none(),
        "TLS test peers missing: {missing:?}"
    );
    eprintln!("skipped: {missing:?} not installed");
    None
}

/// The directory of the test CA and certificates: `TIDEMARK_TEST_TLS_DIR` (scripts/test.sh makes
/// it), or a new one.
pub fn certs() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TIDEMARK_TEST_TLS_DIR") {
        return Some(PathBuf::from(d));
    }
    tools(&["openssl"])?;
    let dir = tempfile::tempdir().unwrap().keep();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tls-test-certs.sh");
    let ok = Command::new(script).arg(&dir).status().unwrap().success();
    assert!(ok, "tls-test-certs.sh failed");
    Some(dir)
}

fn wait_listening(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} does not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `stunnel` terminating TLS on `port` (server certificate from the test CA) for a plain TCP
/// server on `connect`; with `verify_clients` a client certificate of the test CA is required.
#[derive(Debug)]
pub struct Stunnel {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Stunnel {
    pub fn start(certs: &Path, port: u16, connect: u16, verify_clients: bool) -> Stunnel {
        let dir = tempfile::tempdir().unwrap();
        let c = |f: &str| certs.join(f).display().to_string();
        let mut conf = format!(
            "foreground = yes\npid =\n[tls]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{connect}\n\
             cert = {}\nkey = {}\n",
            c("server.pem"),
            c("server.key"),
        );
        if verify_clients {
            conf.push_str(&format!(
                "CAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                c("ca.pem")
            ));
        }
        let path = dir.path().join("stunnel.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("stunnel")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel");
        wait_listening(port, "stunnel");
        Stunnel {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A broker reachable only over SASL_SSL: tansu requiring SCRAM authentication, behind stunnel.
#[derive(Debug)]
pub struct SecureKafka {
    tansu: Child,
    _stunnel: Stunnel,
    _dir: tempfile::TempDir,
    /// `localhost:<tls port>` (the name the server certificate holds).
    pub bootstrap: String,
}

impl SecureKafka {
    /// A broker with `topic` (`partitions`) and the SCRAM-SHA-512 user `user`/`password`.
    pub fn start(
        certs: &Path,
        topic: &str,
        partitions: i32,
        user: &str,
        password: &str,
    ) -> SecureKafka {
        let dir = tempfile::tempdir().unwrap();
        let (plain, tls) = (free_port(), free_port());
        // Users and topics are created through the plain port before authentication is on (the
        // tansu CLI speaks no SASL); the sqlite storage keeps them across the restart.
        let mut setup = tansu(dir.path(), plain, tls, false);
        for args in [
            vec!["user", "create", user, password],
            vec![
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ],
        ] {
            let ok = Command::new("tansu")
                .args(&args)
                .args(["--broker", &format!("tcp://127.0.0.1:{plain}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "tansu {args:?} failed");
        }
        kill(&mut setup);
        let tansu = tansu(dir.path(), plain, tls, true);
        let stunnel = Stunnel::start(certs, tls, plain, false);
        SecureKafka {
            tansu,
            _stunnel: stunnel,
            _dir: dir,
            bootstrap: format!("localhost:{tls}"),
        }
    }

    /// librdkafka properties of a client of this broker.
    pub fn client_properties(certs: &Path, user: &str, password: &str) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanisms", "SCRAM-SHA-512".to_owned()),
            ("sasl.username", user.to_owned()),
            ("sasl.password", password.to_owned()),
            (
                "ssl.ca.location",
                certs.join("ca.pem").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

fn tansu(dir: &Path, plain: u16, tls: u16, authentication: bool) -> Child {
    let mut cmd = Command::new("tansu");
    cmd.current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{plain}"),
        ])
        .args([
            "--advertised-listener-url",
            &format!("tcp://localhost:{tls}"),
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if authentication {
        cmd.arg("--authentication");
    }
    let child = cmd.spawn().expect("tansu");
    wait_listening(plain, "tansu");
    child
}

impl Drop for SecureKafka {
    fn drop(&mut self) {
        kill(&mut self.tansu);
    }
}
