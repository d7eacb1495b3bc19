//! Without CAP_NET_ADMIN, an explicit kernel backend refuses to start:
//! exit 2, one clear line, and the namespace's rules untouched.

use std::time::Duration;

use crate::util::netns::{Netns, privileged};
use crate::util::{bin, run};

#[test]
fn explicit_kernel_backends_without_net_admin_exit_2_with_one_clear_line() {
    let test = "explicit_kernel_backends_without_net_admin_exit_2_with_one_clear_line";
    if !privileged(test) {
        return;
    }
    if portknock::firewall::system::find_tool("setpriv").is_none() {
        assert!(std::env::var_os("CI").is_none(), "setpriv is missing in CI");
        eprintln!("\n*** SKIPPED {test}: setpriv missing ***\n");
        return;
    }
    let ns = Netns::new("nopriv");
    ns.add_foreign_rules();
    let before = ns.rules();
    for backend in ["iptables", "nftables"] {
        let mut cmd = ns.command("setpriv");
        cmd.args(["--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"])
            .arg(bin("knock-server"))
            .args(["--firewall", backend, "--bind", "127.0.0.1"]);
        let out = run(cmd, Duration::from_secs(10)).expect_code(2);
        assert_eq!(
            out.stderr,
            format!(
                "knock-server: error: {backend} backend needs CAP_NET_ADMIN: \
                 run as root, or use --firewall userspace\n"
            ),
            "{}",
            out.describe()
        );
        assert_eq!(out.stdout, "", "{}", out.describe());
        assert_eq!(ns.rules(), before, "{backend}: rules changed");
    }
}
