//! Several doors end to end with the userspace gate on loopback (issue 10,
//! "Must show"): three doors with different sequences, a shared knock
//! port, two protected ports on one door and an allow list. Each door
//! opens only its own ports for the knocker only; a source outside
//! `allow` never opens. Then a reload per door.

use std::path::Path;
use std::time::Duration;

use portknock::config::file;

use super::in_process::{Running, knock, opens_within, served};
use crate::util::{Reached, connect_from, free_ports, knock_from, loopback};

const LIMIT: Duration = Duration::from_secs(10);

/// Ports of the three doors: knock ports `k`, protected ports `p`.
struct Ports {
    k: Vec<u16>,
    p: Vec<u16>,
}

impl Ports {
    fn new() -> Self {
        Ports {
            k: free_ports(7),
            p: free_ports(4),
        }
    }

    /// "ssh": k0,k1,k2 -> p0 and p1; "web": k0,k3 -> p2 (shares k0);
    /// "lan": k4,k5 -> p3, only from 127.0.0.16/28; plus `extra`.
    fn file(&self, web: &[u16], extra: &str) -> String {
        let (k, p) = (&self.k, &self.p);
        let web: Vec<String> = web.iter().map(u16::to_string).collect();
        format!(
            r#"bind = ["127.0.0.1"]
firewall = "userspace"
capture = "socket"

[[door]]
name = "ssh"
sequence = [{}, {}, {}]
window = "10s"
access = "1m"
lockout = "1s"
protected = ["tcp/{}", "tcp/{}"]

[[door]]
name = "web"
sequence = [{}]
window = "10s"
access = "1m"
lockout = "1s"
protected = ["tcp/{}"]

[[door]]
name = "lan"
sequence = [{}, {}]
window = "10s"
access = "1m"
lockout = "1s"
protected = ["tcp/{}"]
allow = ["127.0.0.16/28"]
{extra}"#,
            k[0],
            k[1],
            k[2],
            p[0],
            p[1],
            web.join(", "),
            p[2],
            k[4],
            k[5],
            p[3]
        )
    }

    fn ssh(&self) -> Vec<u16> {
        self.k[..3].to_vec()
    }

    fn web(&self) -> Vec<u16> {
        vec![self.k[0], self.k[3]]
    }

    fn lan(&self) -> Vec<u16> {
        vec![self.k[4], self.k[5]]
    }
}

fn start(dir: &Path, text: &str) -> (Running, std::path::PathBuf) {
    let path = dir.join("portknock.toml");
    std::fs::write(&path, text).unwrap();
    (
        Running::start(file::load(&path).unwrap(), Some(&path)),
        path,
    )
}

fn reset(source: &str, port: u16) -> bool {
    connect_from(source, loopback(port)) == Reached::Reset
}

#[test]
fn three_doors_each_open_their_own_ports_for_the_knocker_only() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::new();
    let p = &ports.p;
    let (running, _) = start(dir.path(), &ports.file(&ports.web(), ""));

    assert!(opens_within("127.0.0.2", &ports.ssh(), p[0], LIMIT));
    assert!(
        served(&connect_from("127.0.0.2", loopback(p[1]))),
        "ssh's second port"
    );
    assert!(
        reset("127.0.0.2", p[2]) && reset("127.0.0.2", p[3]),
        "only ssh's ports"
    );
    assert!(
        reset("127.0.0.3", p[0]) && reset("127.0.0.3", p[1]),
        "the knocker only"
    );

    assert!(opens_within("127.0.0.4", &ports.web(), p[2], LIMIT));
    assert!(reset("127.0.0.4", p[0]) && reset("127.0.0.4", p[1]) && reset("127.0.0.4", p[3]));

    assert!(opens_within("127.0.0.17", &ports.lan(), p[3], LIMIT));
    assert!(reset("127.0.0.17", p[0]) && reset("127.0.0.17", p[2]));

    // Outside the allow list: the right sequence never opens.
    knock("127.0.0.5", &ports.lan());
    knock("127.0.0.5", &ports.lan());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        reset("127.0.0.5", p[3]),
        "a source outside allow opened lan"
    );
    running.stop().unwrap();
}

#[test]
fn reload_changes_a_sequence_and_adds_a_door_keeping_grants_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::new();
    let (k, p) = (&ports.k, &ports.p);
    let (running, path) = start(dir.path(), &ports.file(&ports.web(), ""));
    // An open grant on web, a source halfway through ssh.
    assert!(opens_within("127.0.0.2", &ports.web(), p[2], LIMIT));
    knock("127.0.0.3", &ports.ssh()[..2]);

    // An invalid file first: nothing changes.
    std::fs::write(&path, "[[door]]\nname = \"ssh\"\nsequence = []\n").unwrap();
    running.reload.blocking_send(()).unwrap();
    // A second request is taken only once the first is handled.
    running.reload.blocking_send(()).unwrap();

    // web's sequence changes; "mail" (k6 -> ssh's first port) is added.
    let new_web = [k[3], k[0]];
    let mail = format!(
        "\n[[door]]\nname = \"mail\"\nsequence = [{}]\nwindow = \"10s\"\naccess = \"1m\"\nlockout = \"1s\"\nprotected = [\"tcp/{}\"]\n",
        k[6], p[0]
    );
    std::fs::write(&path, ports.file(&new_web, &mail)).unwrap();
    running.reload.blocking_send(()).unwrap();
    running.reload.blocking_send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    knock_from("127.0.0.3", k[2]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        served(&connect_from("127.0.0.3", loopback(p[0]))),
        "the half-done source on the unchanged door lost its progress"
    );
    assert!(
        served(&connect_from("127.0.0.2", loopback(p[2]))),
        "the open grant stays"
    );
    // web answers only its new sequence.
    knock("127.0.0.6", &ports.web());
    std::thread::sleep(Duration::from_millis(300));
    assert!(reset("127.0.0.6", p[2]), "web's old sequence still opens");
    assert!(opens_within("127.0.0.7", &new_web, p[2], LIMIT));
    // The new door works.
    assert!(opens_within("127.0.0.8", &[k[6]], p[0], LIMIT));
    assert!(reset("127.0.0.8", p[1]), "mail opens only its own port");
    running.stop().unwrap();
}
