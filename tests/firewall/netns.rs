//! Network namespaces for kernel tests: the machine's own rules are never
//! touched. A test creates named namespaces (`ip netns add`, unique per pid
//! and test), runs code on a thread that has `setns`-ed into one (commands
//! it spawns inherit that namespace), and the guard deletes them on drop.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::time::Duration;

/// Whether kernel tests can run here. Without root or the tools: a loud
/// SKIPPED line, or a panic when `CI` is set (CI must never skip them).
pub fn privileged(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = [
        "ip",
        "iptables-restore",
        "ip6tables-restore",
        "iptables-save",
        "nft",
    ]
    .into_iter()
    .filter(|tool| portknock::firewall::system::find_tool(tool).is_none())
    .collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = format!("root: {root}, missing tools: {missing:?}");
    if std::env::var_os("CI").is_some() {
        panic!("{test}: kernel firewall tests cannot run in CI ({why})");
    }
    eprintln!("\n*** SKIPPED {test}: needs root and ip/iptables/nft ({why}) ***\n");
    false
}

/// Runs a command, panicking with its command line, stdout and stderr if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = output(args);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output, whatever its status.
pub fn output(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", args.join(" ")))
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Its name, unique per process and test.
    pub name: String,
}

impl Netns {
    /// Creates `pk-<pid>-<tag>` with loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("pk-{}-{tag}", std::process::id());
        let _ = output(&["ip", "netns", "del", &name]);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread inside this namespace: sockets it opens and
    /// commands it spawns live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).expect("open netns");
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The inode of this namespace, to compare with `/proc/PID/ns/net`.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("netns file")
            .ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = output(&["ip", "netns", "del", &self.name]);
    }
}

/// A server namespace and a client namespace joined by a veth pair:
/// server 192.0.2.1 / 2001:db8::1, client 192.0.2.2 and 192.0.2.3 /
/// 2001:db8::2 and 2001:db8::3.
pub struct Topology {
    /// Where the firewall and the listener live.
    pub server: Netns,
    /// Where the clients connect from.
    pub client: Netns,
}

impl Topology {
    /// Builds the two namespaces and the link.
    pub fn new(tag: &str) -> Topology {
        let server = Netns::new(&format!("{tag}-s"));
        let client = Netns::new(&format!("{tag}-c"));
        sh(&[
            "ip",
            "-n",
            &server.name,
            "link",
            "add",
            "veth0",
            "type",
            "veth",
            "peer",
            "name",
            "veth1",
            "netns",
            &client.name,
        ]);
        for (ns, dev, addrs) in [
            (
                &server,
                "veth0",
                ["192.0.2.1/24", "2001:db8::1/64"].as_slice(),
            ),
            (
                &client,
                "veth1",
                [
                    "192.0.2.2/24",
                    "192.0.2.3/24",
                    "2001:db8::2/64",
                    "2001:db8::3/64",
                ]
                .as_slice(),
            ),
        ] {
            for addr in addrs {
                let mut args = vec!["ip", "-n", &ns.name, "addr", "add", addr, "dev", dev];
                if addr.contains(':') {
                    args.push("nodad");
                }
                sh(&args);
            }
            sh(&["ip", "-n", &ns.name, "link", "set", dev, "up"]);
        }
        Topology { server, client }
    }

    /// Binds listeners on `port` for IPv4 and IPv6 in the server namespace.
    pub fn listen(&self, port: u16) -> (TcpListener, TcpListener) {
        self.server.run(|| {
            let v4 = TcpListener::bind(("192.0.2.1", port)).expect("bind v4");
            let v6 = TcpListener::bind(("2001:db8::1", port)).expect("bind v6");
            (v4, v6)
        })
    }

    /// Connects from `from` (an address of the client namespace) to `to`,
    /// giving up after `timeout`.
    pub fn connect(
        &self,
        from: &str,
        to: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<TcpStream> {
        let from: IpAddr = from.parse().expect("client address");
        self.client.run(|| {
            let domain = socket2::Domain::for_address(to);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::new(from, 0).into())?;
            socket.connect_timeout(&to.into(), timeout)?;
            Ok(socket.into())
        })
    }
}
