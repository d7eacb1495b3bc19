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

    /// A command that runs `program` inside this namespace
    /// (`ip netns exec`, which execs it: the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args` inside this namespace, panicking with its output if it fails.
    pub fn sh(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// The PIDs of the processes living in this namespace.
    pub fn pids(&self) -> Vec<u32> {
        sh(&["ip", "netns", "pids", &self.name])
            .split_whitespace()
            .map(|pid| pid.parse().expect("pid"))
            .collect()
    }

    /// Adds rules to INPUT that are not ours (iptables and ip6tables), so
    /// tests can show that our setup and teardown leave them alone.
    pub fn add_foreign_rules(&self) {
        self.sh(&[
            "iptables",
            "-A",
            "INPUT",
            "-s",
            "198.51.100.7",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "ACCEPT",
        ]);
        self.sh(&[
            "ip6tables",
            "-A",
            "INPUT",
            "-s",
            "2001:db8:ffff::7",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "ACCEPT",
        ]);
    }

    /// Every firewall rule of this namespace, as `iptables-save`,
    /// `ip6tables-save` and `nft list ruleset` print them, without the
    /// comments and counters that change from one run to the next.
    pub fn rules(&self) -> String {
        let mut all = String::new();
        for tool in [
            ["iptables-save"].as_slice(),
            &["ip6tables-save"],
            &["nft", "list", "ruleset"],
        ] {
            all.push_str(&format!("== {}\n", tool.join(" ")));
            for line in self.sh(tool).lines() {
                if line.starts_with('#') {
                    continue;
                }
                all.push_str(&strip_counters(line));
                all.push('\n');
            }
        }
        without_empty_raw(&all)
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

/// `[packets:bytes]` (iptables-save) and `packets N bytes M` (nft) zeroed.
fn strip_counters(line: &str) -> String {
    let mut out = Vec::new();
    let mut words = line.split(' ').peekable();
    while let Some(word) = words.next() {
        if word.starts_with('[') && word.ends_with(']') && word.contains(':') {
            out.push("[0:0]");
        } else if (word == "packets" || word == "bytes") && words.peek().is_some() {
            words.next();
            out.push(word);
            out.push("0");
        } else {
            out.push(word);
        }
    }
    out.join(" ")
}

/// `rules` without an empty iptables `raw` table: iptables' NFLOG capture
/// rule lives there, and the table stays (empty, built-in chains only)
/// once instantiated, in iptables-save and in nft's listing of it.
fn without_empty_raw(rules: &str) -> String {
    let mut out = rules.replace(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        "",
    );
    for family in ["ip", "ip6"] {
        for chains in [
            "\tchain PREROUTING {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t}\n",
            "\tchain PREROUTING {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t}\n\n\tchain OUTPUT {\n\t\ttype filter hook output priority raw; policy accept;\n\t}\n",
        ] {
            out = out.replace(&format!("table {family} raw {{\n{chains}}}\n"), "");
        }
    }
    out
}

/// A host and its clients on one LAN: the host namespace holds a bridge
/// with the host's addresses; each client namespace is joined to it by a
/// veth pair (`eth0` inside the client). Clients are separate namespaces,
/// so a client is one IPv4 and one IPv6 source, as on a real network.
pub struct Lan {
    /// The host (the server, or the "container").
    pub host: Netns,
    /// The clients, in the order given.
    pub clients: Vec<Netns>,
}

impl Lan {
    /// Builds `pk-<pid>-<tag>-h` with `host` addresses (`[v4, v6]`, /24 and
    /// /64) and one namespace `pk-<pid>-<tag>-cN` per entry of `clients`.
    pub fn new(tag: &str, host: [&str; 2], clients: &[[&str; 2]]) -> Lan {
        let host_ns = Netns::new(&format!("{tag}-h"));
        let h = host_ns.name.clone();
        sh(&["ip", "-n", &h, "link", "add", "br0", "type", "bridge"]);
        add_addrs(&h, "br0", host);
        let mut lan = Lan {
            host: host_ns,
            clients: Vec::new(),
        };
        for (index, addrs) in clients.iter().enumerate() {
            let client = Netns::new(&format!("{tag}-c{index}"));
            let port = format!("p{index}");
            sh(&[
                "ip",
                "-n",
                &h,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &client.name,
            ]);
            sh(&["ip", "-n", &h, "link", "set", &port, "master", "br0", "up"]);
            add_addrs(&client.name, "eth0", *addrs);
            sh(&["ip", "-n", &client.name, "link", "set", "eth0", "up"]);
            lan.clients.push(client);
        }
        sh(&["ip", "-n", &h, "link", "set", "br0", "up"]);
        lan.wait_reachable(host);
        lan
    }

    /// Waits (bounded) until every client reaches the host over both
    /// families: a TCP connect to a closed port is refused. The first IPv6
    /// neighbour solicitation on a fresh bridge is often lost, and packets
    /// queued meanwhile would all arrive at once later, 1 s late.
    fn wait_reachable(&self, host: [&str; 2]) {
        std::thread::scope(|scope| {
            for client in &self.clients {
                for ip in host {
                    scope.spawn(move || {
                        let to = SocketAddr::new(ip.parse().expect("host address"), 9);
                        for _ in 0..5 {
                            let result = client
                                .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)));
                            match result {
                                Ok(_) => return,
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                    return;
                                }
                                Err(_) => {}
                            }
                        }
                        panic!("{} cannot reach {to}", client.name);
                    });
                }
            }
        });
    }
}

/// Adds an IPv4 /24 and an IPv6 /64 (without duplicate address detection,
/// so it is usable at once) to `dev` in namespace `ns`.
fn add_addrs(ns: &str, dev: &str, [v4, v6]: [&str; 2]) {
    sh(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{v4}/24"),
        "dev",
        dev,
    ]);
    sh(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{v6}/64"),
        "dev",
        dev,
        "nodad",
    ]);
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
