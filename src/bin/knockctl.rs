//! knockctl: operates a running knock-server over its control socket.
//! See `knockctl --help`. All the work is in the library
//! (`portknock::control`); this file turns flags into one request, prints
//! the reply, and maps the outcome to the exit code (0 done, 1 the daemon
//! refused or could not be reached, 2 bad usage).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use portknock::cli::{EXIT_FAILURE, EXIT_USAGE};
use portknock::control::protocol::{parse_grant_duration, parse_target_port};
use portknock::control::{DEFAULT_SOCKET, WireRequest, client, render};

/// Operate a running knock-server: see who has access, grant, revoke,
/// flush, reload.
///
/// Talks to the daemon's control socket (knock-server --control-socket).
/// Allowed: root, the daemon's user, and members of its control-group;
/// every action is logged by the daemon with the caller's uid and pid.
#[derive(Debug, Parser)]
#[command(name = "knockctl", version, about, long_about)]
struct Args {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET, env = "KNOCKCTL_SOCKET")]
    socket: PathBuf,

    /// Print the daemon's JSON reply as is (one line), for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Version, uptime, firewall backend, capture source, doors, counters.
    Status,
    /// Open grants (IP, door, port, time left, origin: knock, spa,
    /// manual), and how many sources are in progress or locked out.
    List {
        /// Also list the locked-out sources.
        #[arg(long)]
        all: bool,
    },
    /// Open access for IP by hand: a door's ports (default: the first
    /// door's) or one port, for the door's access time or --for.
    Grant {
        /// The address to let in.
        ip: IpAddr,
        /// Open this door's protected ports.
        #[arg(long, conflicts_with = "port")]
        door: Option<String>,
        /// Open this protected port only (tcp/N, udp/N or N).
        #[arg(long, value_name = "tcp/N", value_parser = check_port)]
        port: Option<String>,
        /// How long (e.g. 60s, 5m, 1h; 1s to 24h).
        #[arg(long = "for", value_name = "DURATION", value_parser = check_duration)]
        duration: Option<String>,
    },
    /// Close IP's access now: on one door's ports, or everywhere.
    Revoke {
        /// Whose access.
        ip: IpAddr,
        /// Only this door's ports.
        #[arg(long)]
        door: Option<String>,
    },
    /// Revoke every grant (the firewall ends as right after start).
    Flush,
    /// Re-read the daemon's --config file (as SIGHUP does).
    Reload,
}

fn check_port(text: &str) -> Result<String, String> {
    parse_target_port(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

fn check_duration(text: &str) -> Result<String, String> {
    parse_grant_duration(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

fn request(command: Command) -> WireRequest {
    match command {
        Command::Status => WireRequest::new("status"),
        Command::List { all } => WireRequest {
            all,
            ..WireRequest::new("list")
        },
        Command::Grant {
            ip,
            door,
            port,
            duration,
        } => WireRequest {
            ip: Some(ip.to_string()),
            door,
            port,
            duration,
            ..WireRequest::new("grant")
        },
        Command::Revoke { ip, door } => WireRequest {
            ip: Some(ip.to_string()),
            door,
            ..WireRequest::new("revoke")
        },
        Command::Flush => WireRequest::new("flush"),
        Command::Reload => WireRequest::new("reload"),
    }
}

#[path = "shared/docs.rs"]
mod docs;

fn main() -> ExitCode {
    if let Some(code) = docs::generate(<Args as clap::CommandFactory>::command) {
        return code;
    }
    let args = Args::parse();
    let json = args.json;
    let (line, reply) = match client::ask(&args.socket, &request(args.command)) {
        Ok(answer) => answer,
        Err(err) => return portknock::cli::fail("knockctl", &err, EXIT_FAILURE),
    };
    let mut stdout = std::io::stdout().lock();
    if json {
        let _ = stdout.write_all(line.as_bytes());
    } else if reply.ok {
        let _ = stdout.write_all(render::render(&reply).as_bytes());
    }
    if !reply.ok {
        let why = reply.error.as_deref().unwrap_or("no reason given");
        let _ = writeln!(std::io::stderr(), "knockctl: the daemon refused: {why}");
        let usage =
            why.starts_with("invalid ") || why.starts_with("no door") || why.starts_with("port ");
        return ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE });
    }
    ExitCode::SUCCESS
}
