//! Replies as text for people: `knockctl` prints these unless `--json`.
//! Plain aligned columns, one row per grant, so `grep` and `awk` work too.

use std::fmt::Write;

use super::protocol::{GrantList, Reply, Status};

/// The text of a successful `reply` (errors are the caller's).
pub fn render(reply: &Reply) -> String {
    if let Some(status) = &reply.status {
        return render_status(status);
    }
    if let Some(list) = &reply.list {
        return render_list(list);
    }
    match &reply.done {
        Some(done) => format!("{}\n", done.message),
        None => "ok\n".to_string(),
    }
}

fn render_status(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "version   {}", s.version);
    let _ = writeln!(out, "uptime    {}s", s.uptime_secs);
    let _ = writeln!(out, "backend   {}", s.backend);
    let _ = writeln!(out, "capture   {}", s.capture);
    let _ = writeln!(out, "grants    {}", s.grants);
    for door in &s.doors {
        let _ = writeln!(
            out,
            "door      {} ports {:?} access {}s",
            door.name, door.ports, door.access_secs
        );
    }
    for (name, value) in &s.counters {
        let _ = writeln!(out, "counter   {name} {value}");
    }
    out
}

fn render_list(list: &GrantList) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<16} {:>5} {:>10} ORIGIN",
        "IP", "DOOR", "PORT", "LEFT"
    );
    for row in &list.grants {
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:>5} {:>9.1}s {}",
            row.ip.to_string(),
            row.door.as_deref().unwrap_or("-"),
            row.port,
            row.left_secs,
            row.origin
        );
    }
    let _ = writeln!(
        out,
        "{} grants open; {} sources tracked, {} locked out",
        list.grants.len(),
        list.tracked,
        list.locked_out
    );
    if let Some(lockouts) = &list.lockouts {
        let _ = writeln!(out, "{:<40} {:>10}", "LOCKED OUT", "LEFT");
        for row in lockouts {
            let _ = writeln!(out, "{:<40} {:>9.1}s", row.ip.to_string(), row.left_secs);
        }
    }
    out
}
