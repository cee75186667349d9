//! Runs Envoy as a child in the launcher's process group, forwards SIGINT
//! and SIGTERM to it, and makes sure neither process outlives its parent.

use crate::error::Error;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The last SIGINT/SIGTERM received, 0 when none is pending.
static PENDING: AtomicI32 = AtomicI32::new(0);

const POLL: Duration = Duration::from_millis(50);
/// How long Envoy gets to drain after a forwarded signal before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

extern "C" fn on_signal(sig: libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`PENDING`] instead of ending the launcher.
pub fn install_handlers() -> Result<(), Error> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action is fully initialised; the handler only stores
        // to an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(Error::runtime(format!(
                "cannot install a signal handler: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Asks the kernel for SIGTERM when our parent (a shell, make) dies, so a
/// killed parent still stops the launcher, which then stops Envoy.
pub fn die_with_parent() -> Result<(), Error> {
    // SAFETY: plain prctl call with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
    if rc != 0 {
        return Err(Error::runtime(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Starts `command`, waits for it, and returns the exit code to use:
/// the child's own, or 128 + signal when a signal ended it.
pub fn run(mut command: Command) -> Result<i32, Error> {
    // SAFETY: getpid is async-signal-safe and called before the fork.
    let launcher = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The launcher died before prctl took effect: do not start orphaned.
            if libc::getppid() != launcher {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .spawn()
        .map_err(|e| Error::runtime(format!("cannot start {program}: {e}")))?;
    loop {
        if let Some(status) = try_wait(&mut child)? {
            return Ok(exit_code(status));
        }
        let sig = PENDING.swap(0, Ordering::SeqCst);
        if sig != 0 {
            return stop(&mut child, sig);
        }
        std::thread::sleep(POLL);
    }
}

fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, Error> {
    child
        .try_wait()
        .map_err(|e| Error::runtime(format!("waiting for envoy: {e}")))
}

/// Forwards `sig`, then waits up to [`GRACE`] (or until a second signal)
/// before SIGKILL.
fn stop(child: &mut Child, sig: i32) -> Result<i32, Error> {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(pid, sig) };
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && PENDING.swap(0, Ordering::SeqCst) == 0 {
        if let Some(status) = try_wait(child)? {
            return Ok(exit_code(status));
        }
        std::thread::sleep(POLL);
    }
    eprintln!("attach: envoy did not stop in time; killing it");
    // An error here means it exited meanwhile; wait() reports how.
    let _ = child.kill();
    let status = child
        .wait()
        .map_err(|e| Error::runtime(format!("waiting for envoy: {e}")))?;
    Ok(exit_code(status))
}

pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_exit_code_is_passed_on() {
        let mut c = Command::new("sh");
        c.args(["-c", "exit 7"]);
        assert_eq!(run(c).unwrap(), 7);
        let mut c = Command::new("sh");
        c.args(["-c", "kill -9 $$"]);
        assert_eq!(run(c).unwrap(), 128 + 9);
    }

    #[test]
    fn missing_program_is_a_runtime_error() {
        let e = run(Command::new("/nonexistent/envoy")).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("/nonexistent/envoy"), "{e}");
    }
}
