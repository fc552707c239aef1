//! Helpers shared by the commands: running programs (bounded in time, reaped on drop),
//! the workspace root and cargo, `jq`, signals, free ports, and the testkit's HTTP GET
//! and webhook sink on loopback. It uses no other module of the xtask; every module may
//! use it.

use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What every step returns: its error is a message for the console.
pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (this crate's parent).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// `cargo` (the one running this xtask), in the workspace root.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command to completion, echoing it, and fails if it fails.
pub(crate) fn run(mut cmd: Command) -> Result {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    let start = Instant::now();
    let status = cmd.status().map_err(|e| format!("{shown}: {e}"))?;
    eprintln!("xtask: ({:.1} s)", start.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Runs one benchmark target of the `piko-obs-tests` package (`cargo bench --bench NAME`).
pub(crate) fn cargo_bench(name: &str) -> Result {
    let mut cmd = cargo();
    cmd.args(["bench", "--locked", "-p", "piko-obs-tests", "--bench", name]);
    run(cmd)
}

/// Builds programs of `package` (`piko-obs-tests`, or `piko-obs-testkit` for the
/// receivers) with the `bench` profile, as `cargo bench` builds them (optimised, in
/// `target/release/<bin>`), so the benchmarks' build is reused.
pub(crate) fn build_release_bins(package: &str, bins: &[&str]) -> Result {
    let mut cmd = cargo();
    cmd.args(["build", "--profile", "bench", "--locked", "-p", package]);
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    run(cmd)
}

/// Waits for `child` at most `limit`, killing it after.
pub(crate) fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "process {} did not finish within {limit:?}",
                child.id()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `tool ARGS` with `input` on its stdin, waiting at most `bound`: its exit
/// status, stdout and stderr, read while it runs (so a large output cannot stall it).
/// `package` is the Debian package to install when the tool is missing.
pub(crate) fn pipe_through(
    tool: &str,
    args: &[&str],
    input: &[u8],
    bound: Duration,
    package: &str,
) -> Result<(std::process::ExitStatus, Vec<u8>, String)> {
    use std::io::Read as _;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{tool}: {e} (install Debian's {package})"))?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    let written = child.stdin.take().ok_or("stdin")?.write_all(input);
    let status = wait_bounded(&mut child, bound)?;
    written.map_err(|e| format!("{tool}: {e}"))?;
    Ok((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

pub(crate) fn jq(filter: &str, input: &[u8]) -> Result {
    let (status, _, err) = pipe_through(
        "jq",
        &["-e", "-s", filter],
        input,
        Duration::from_secs(30),
        "jq",
    )?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "jq -e '{filter}' rejected the output {status}: {err}"
        ))
    }
}

/// Sends `signal` (`TERM`, `USR1`, ...) to process `pid`.
pub(crate) fn signal(pid: u32, signal: &str) -> Result {
    let mut kill = Command::new("kill");
    kill.args([format!("-{signal}"), pid.to_string()]);
    run(kill)
}

/// `GET path` on `addr` (`IP:PORT`) with the testkit's one HTTP GET, waiting up to 15 s
/// for each read (a loaded service, a large `/metrics`): (status code, body).
pub(crate) fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    piko_obs_testkit::http::http_get_within(sock, path, &[], Duration::from_secs(15))
        .map(|r| (r.status, r.body))
        .map_err(|e| format!("GET {path} on {addr}: {e}"))
}

/// A webhook sink (the testkit's) on a free loopback port, answering 200 to every
/// request; `Sink::url(path)` is the address to give the service.
pub(crate) fn webhook_sink() -> Result<piko_obs_testkit::sink::Sink> {
    piko_obs_testkit::sink::Sink::try_on("127.0.0.1:0", piko_obs_testkit::sink::Reply::status(200))
        .map_err(|e| format!("webhook sink: {e}"))
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Kills a child process when dropped, so a failing check never leaves one behind.
pub(crate) struct Reaper(pub(crate) std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A receiver program of the tests, started with its stdin and stdout piped: it prints
/// `PREFIX=ADDR` first, receives until its stdin closes, then prints what arrived.
pub(crate) struct Receiver {
    pub(crate) process: Reaper,
    pub(crate) stdin: std::process::ChildStdin,
    pub(crate) out: BufReader<std::process::ChildStdout>,
    pub(crate) addr: String,
}

/// Starts the receiver program `bin` of the tests, built in `target/<profile>`, and reads
/// the `PREFIX=ADDR` it prints first.
pub(crate) fn start_receiver(profile: &str, bin: &str, prefix: &str) -> Result<Receiver> {
    let exe = root().join("target").join(profile).join(bin);
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{exe:?}: {e}"))?;
    let stdin = child.stdin.take().ok_or("stdin")?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let process = Reaper(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix(prefix)
        .and_then(|l| l.strip_prefix('='))
        .ok_or_else(|| format!("{bin}: expected {prefix}=ADDR, got {line:?}"))?
        .to_string();
    Ok(Receiver {
        process,
        stdin,
        out,
        addr,
    })
}
