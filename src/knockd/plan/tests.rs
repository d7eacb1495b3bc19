use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::knockd::parse;

fn planned(text: &str, options: PlanOptions) -> Result<Vec<Planned>, ConfError> {
    plan(&parse(Path::new("/k.conf"), text)?, options)
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/knockd")
        .join(name)
}

const NATIVE: &str = "[ssh]\nsequence = 1:udp,2:udp\nseq_timeout = 7\nstart_command = /sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\ncmd_timeout = 15\nstop_command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n";

#[test]
fn debian_default_and_man_example_1_plan_as_command_doors() {
    for name in ["debian-knockd.conf", "man-example1.conf"] {
        let file = crate::knockd::load(&data(name)).unwrap();
        let doors = plan(&file, PlanOptions::default()).unwrap();
        assert!(
            doors
                .iter()
                .all(|d| matches!(d.service, Service::Commands { .. }))
        );
        assert!(
            doors.iter().all(|d| d.lockout.is_zero()),
            "lockout off by default"
        );
    }
}

#[test]
fn flags_a_syn_does_not_satisfy_are_refused_at_their_line() {
    for (name, line, flags) in [
        ("man-example2.conf", 7, "syn,ack"),
        ("man-example3.conf", 7, "fin,!ack"),
    ] {
        let file = crate::knockd::load(&data(name)).unwrap();
        let err = plan(&file, PlanOptions::default()).unwrap_err();
        assert_eq!(err.line, line, "{err}");
        assert!(err.message.contains(flags), "{err}");
    }
    // UDP-only doors ignore TCPFlags, as knockd does.
    assert!(
        planned(
            "[d]\nsequence = 1:udp\ntcpflags = fin\n",
            PlanOptions::default()
        )
        .is_ok()
    );
    assert!(
        planned(
            "[d]\nsequence = 1\ntcpflags = syn,!ack\n",
            PlanOptions::default()
        )
        .is_ok()
    );
}

#[test]
fn target_is_refused_until_capture() {
    let err = planned(
        "[d]\nsequence = 1\ntarget = 192.0.2.9\n",
        PlanOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.line, 3);
    assert!(err.message.contains("Target"), "{err}");
}

#[test]
fn shell_lines_are_refused_unless_the_door_or_the_flag_allows_them() {
    let text = "[d]\nsequence = 1\ncommand = echo %IP% >> /tmp/log\n";
    let err = planned(text, PlanOptions::default()).unwrap_err();
    assert_eq!(err.line, 3);
    assert!(
        err.to_string()
            .starts_with("/k.conf:3: door 'd': Start_Command: needs a shell: '>>'"),
        "{err}"
    );
    let allowed = PlanOptions {
        allow_shell: true,
        ..Default::default()
    };
    assert!(planned(text, allowed).is_ok());
    assert!(
        planned(
            &format!("{text}allow_shell = yes\n"),
            PlanOptions::default()
        )
        .is_ok()
    );
    // The stop command is checked too.
    let err = planned(
        "[d]\nsequence = 1\nstop_command = a; b\n",
        PlanOptions::default(),
    )
    .unwrap_err();
    assert!(err.message.contains("Stop_Command"), "{err}");
}

#[test]
fn ipv6_commands_fall_back_to_ipv4_ones_and_an_empty_one_runs_nothing() {
    let doors = planned("[d]\nsequence = 1\ncommand = /bin/true %IP%\nstop_command = /bin/false\nstart_command_6 =\n", PlanOptions::default()).unwrap();
    let Service::Commands { v4, v6 } = &doors[0].service else {
        panic!()
    };
    assert!(v4.start.is_some() && v6.start.is_none());
    assert_eq!(v4.stop, v6.stop);
}

#[test]
fn native_translates_the_plain_iptables_twin_pair() {
    let options = PlanOptions {
        native: true,
        ..Default::default()
    };
    let doors = planned(NATIVE, options).unwrap();
    let Service::Native(door) = &doors[0].service else {
        panic!("not translated: {:?}", doors[0].not_native)
    };
    assert_eq!(door.protected()[0].to_string(), "tcp/22");
    assert_eq!(door.timing().access, Duration::from_secs(15));
    assert_eq!(door.timing().window, Duration::from_secs(7));
    // Without the flag it runs its commands.
    let doors = planned(NATIVE, PlanOptions::default()).unwrap();
    assert!(matches!(doors[0].service, Service::Commands { .. }));
}

#[test]
fn native_leaves_other_doors_to_their_commands_and_says_why() {
    let options = PlanOptions {
        native: true,
        ..Default::default()
    };
    let cases = [
        (
            NATIVE.replace("--dport 22 -j ACCEPT\ncmd", "--dport 23 -j ACCEPT\ncmd"),
            "not the -D twin",
        ),
        (
            NATIVE.replace("stop_command", "#stop_command"),
            "no Stop_Command",
        ),
        (
            NATIVE.replace(
                "-p tcp --dport 22 -j ACCEPT\ncmd",
                "-p tcp --syn -j ACCEPT\ncmd",
            ),
            "Start_Command is not",
        ),
        (
            NATIVE.replace("[ssh]", "[open ssh]"),
            "not a portknock door name",
        ),
        (
            format!("{NATIVE}start_command_6 = /bin/true\n"),
            "ip6tables twins",
        ),
    ];
    for (text, why) in cases {
        let doors = planned(&text, options).unwrap();
        assert!(
            matches!(doors[0].service, Service::Commands { .. }),
            "{text}"
        );
        let reason = doors[0].not_native.clone().unwrap();
        assert!(reason.contains(why), "{reason}");
    }
    let with_v6 = format!(
        "{NATIVE}start_command_6 = /sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\nstop_command_6 = ip6tables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n"
    );
    assert!(matches!(
        planned(&with_v6, options).unwrap()[0].service,
        Service::Native(_)
    ));
}

#[test]
fn lockout_comes_from_the_door_or_the_flag() {
    let flag = PlanOptions {
        lockout: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    assert_eq!(
        planned("[d]\nsequence = 1\n", flag).unwrap()[0].lockout,
        Duration::from_secs(3)
    );
    assert_eq!(
        planned("[d]\nsequence = 1\nlockout = 9\n", flag).unwrap()[0].lockout,
        Duration::from_secs(9)
    );
}
