//! The Debian package, installed by the real `dpkg` into a throwaway root
//! (`dpkg --root=DIR --force-script-chrootless`: the maintainer scripts
//! run with `DPKG_ROOT=DIR` and touch nothing outside it; never the
//! machine's own dpkg database or accounts). Checked: the files and their
//! modes, the conffile, the `portknock` user and the directories the
//! postinst made, that nothing enabled the service, the installed
//! `knock-server --version` and `--check-config` of the installed example,
//! the man pages rendered by `man -l`, and a purge.
//!
//! The package is `$PORTKNOCK_DEB`, else the newest
//! `target/debian/portknock_*.deb` (`scripts/build-deb.sh`; CI builds it
//! from its release build before the tests).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{Outcome, run};

const LIMIT: Duration = Duration::from_secs(120);
const BINARIES: [&str; 4] = [
    "knock-server",
    "knock-client",
    "protected-service",
    "knockctl",
];

/// The package to test, or a loud SKIPPED (a panic in CI).
fn package(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PORTKNOCK_DEB")
        .map(PathBuf::from)
        .or_else(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
            std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy();
                    name.starts_with("portknock_") && name.ends_with(".deb")
                })
                .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        });
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["dpkg", "man", "useradd"]
        .into_iter()
        .all(|t| portknock::firewall::system::find_tool(t).is_some());
    match (found, root && tools) {
        (Some(deb), true) => return Some(deb),
        (found, _) => {
            let why = format!("package: {found:?}, root: {root}, dpkg/man/useradd: {tools}");
            if std::env::var_os("CI").is_some() {
                panic!("{test}: cannot run in CI ({why})");
            }
            eprintln!(
                "\n*** SKIPPED {test}: needs scripts/build-deb.sh's package, root, dpkg, man-db ({why}) ***\n"
            );
        }
    }
    None
}

/// A root with just what dpkg and useradd need: a dpkg database and the
/// account files, holding root only.
fn throwaway_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc", "tmp"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    for (file, text) in [
        ("var/lib/dpkg/status", ""),
        ("var/lib/dpkg/available", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(r.join(file), text).unwrap();
    }
    std::fs::set_permissions(r.join("etc/shadow"), std::fs::Permissions::from_mode(0o640)).unwrap();
    root
}

fn dpkg(root: &Path, args: &[&str]) -> Outcome {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args);
    run(cmd, LIMIT).expect_code(0)
}

/// `(uid, gid, mode & 0o7777)` of `path`.
fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

/// The numeric id of `name` in the root's `etc/FILE`.
fn id_in(root: &Path, file: &str, name: &str) -> Option<u32> {
    std::fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
}

#[test]
fn the_deb_installs_into_a_throwaway_root_and_works_there() {
    let Some(deb) = package("the_deb_installs_into_a_throwaway_root_and_works_there") else {
        return;
    };
    let root = throwaway_root();
    let r = root.path();
    let install = dpkg(r, &["--install", deb.to_str().unwrap()]);
    assert!(
        install.stdout.contains("installed, not enabled"),
        "{}",
        install.describe()
    );

    // The files.
    for bin in BINARIES {
        let (uid, _, mode) = owner_mode(&r.join("usr/bin").join(bin));
        assert_eq!((uid, mode), (0, 0o755), "{bin}");
        let completions = [
            format!("usr/share/bash-completion/completions/{bin}"),
            format!("usr/share/zsh/vendor-completions/_{bin}"),
            format!("usr/share/fish/vendor_completions.d/{bin}.fish"),
        ];
        for file in completions {
            let text =
                std::fs::read_to_string(r.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(text.contains(bin), "{file}");
        }
    }
    let unit = std::fs::read_to_string(r.join("usr/lib/systemd/system/portknock.service")).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/portknock.service")
        )
        .unwrap()
    );
    let conffiles =
        std::fs::read_to_string(r.join("var/lib/dpkg/info/portknock.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/portknock/portknock.toml");

    // The postinst's user and directories; the service neither enabled
    // nor started (no wants link, and nothing ran systemctl: DPKG_ROOT).
    let uid = id_in(r, "passwd", "portknock").expect("user portknock");
    let gid = id_in(r, "group", "portknock").expect("group portknock");
    assert!(uid > 0 && uid < 1000, "a system uid: {uid}");
    assert_eq!(owner_mode(&r.join("etc/portknock")), (0, gid, 0o750));
    assert_eq!(
        owner_mode(&r.join("etc/portknock/portknock.toml")),
        (0, gid, 0o640)
    );
    assert_eq!(owner_mode(&r.join("var/lib/portknock")), (0, gid, 0o770));
    assert!(
        !r.join("etc/systemd/system/multi-user.target.wants")
            .exists()
    );

    // The installed programs.
    let server = r.join("usr/bin/knock-server");
    let mut version = Command::new(&server);
    version.arg("--version");
    let out = run(version, LIMIT).expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        format!("knock-server {}", env!("CARGO_PKG_VERSION"))
    );
    let mut check = Command::new(&server);
    check
        .arg("--check-config")
        .arg("--config")
        .arg(r.join("etc/portknock/portknock.toml"));
    let out = run(check, LIMIT).expect_code(0);
    assert!(out.stdout.contains("[[door]]"), "{}", out.describe());

    // The man pages render.
    for bin in BINARIES {
        let page = r.join(format!("usr/share/man/man1/{bin}.1.gz"));
        let mut man = Command::new("man");
        man.arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80");
        let out = run(man, LIMIT).expect_code(0);
        assert!(
            out.stdout.contains("NAME") && out.stdout.contains("SYNOPSIS"),
            "{}",
            out.describe()
        );
        assert!(out.stdout.contains(bin), "{}", out.describe());
        assert!(out.stderr.trim().is_empty(), "{}", out.describe());
    }
    let out = {
        let mut man = Command::new("man");
        man.arg("-l")
            .arg(r.join("usr/share/man/man1/knock-server.1.gz"))
            .env("MANPAGER", "cat");
        run(man, LIMIT)
    };
    assert!(out.stdout.contains("--check-config"), "{}", out.describe());

    // A purge removes the files, the state and the configuration.
    dpkg(r, &["--purge", "portknock"]);
    assert!(!server.exists());
    assert!(!r.join("var/lib/portknock").exists());
    assert!(!r.join("etc/portknock").exists());
}
