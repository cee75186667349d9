//! Runs Envoy (and the A2A service) as children in the launcher's process
//! group, forwards SIGINT and SIGTERM to them, starts the service again when
//! it exits, and makes sure no process outlives its parent.

use crate::error::Error;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The last SIGINT/SIGTERM received, 0 when none is pending.
static PENDING: AtomicI32 = AtomicI32::new(0);

const POLL: Duration = Duration::from_millis(50);
/// How long the children get to drain after a forwarded signal before SIGKILL.
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

/// Restart delays of a child kept running ([`Group::keep_running`]): the
/// first after [`RESTART_FIRST`], each next one twice as long up to
/// [`RESTART_MAX`], and the first again once the child had stayed up for
/// [`RESTART_STABLE`]. A child that keeps failing at start is retried
/// without busying the machine; one that crashed once comes back at once.
const RESTART_FIRST: Duration = Duration::from_millis(200);
const RESTART_MAX: Duration = Duration::from_secs(10);
const RESTART_STABLE: Duration = Duration::from_secs(30);

/// The launcher's children, all in its process group: each gets SIGTERM
/// when the launcher dies, and signals the launcher receives are passed on
/// to every one of them. Dropping the group stops whatever still runs.
#[derive(Default)]
pub struct Group {
    children: Vec<Member>,
}

struct Member {
    name: String,
    /// Kept to start the child again.
    command: Command,
    /// `None` while a restart is pending.
    child: Option<Child>,
    started: Instant,
    /// Set for a child that is restarted when it exits.
    restart: Option<Backoff>,
}

struct Backoff {
    /// The delay before the next restart.
    delay: Duration,
    /// When the pending restart is due.
    due: Option<Instant>,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            delay: RESTART_FIRST,
            due: None,
        }
    }

    /// Schedules a restart for a child that ran for `uptime`; the delay.
    fn schedule(&mut self, uptime: Duration, now: Instant) -> Duration {
        if uptime >= RESTART_STABLE {
            self.delay = RESTART_FIRST;
        }
        let delay = self.delay;
        self.delay = (delay * 2).min(RESTART_MAX);
        self.due = Some(now + delay);
        delay
    }
}

/// How [`Group::wait_ready`] (or [`Group::watch`]) ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    Yes,
    /// The group stopped (a child exited or a signal came); the launcher
    /// exits with this status.
    Stopped(i32),
}

impl Group {
    pub fn new() -> Group {
        Group::default()
    }

    /// Starts `command` as the child called `name`.
    pub fn spawn(&mut self, name: &str, mut command: Command) -> Result<(), Error> {
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
                // The signals the launcher passes on must reach the child
                // even when the launcher was started with them ignored (a
                // shell's background job ignores SIGINT), since an ignored
                // signal stays ignored across exec.
                for sig in [libc::SIGINT, libc::SIGTERM] {
                    if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = start(&mut command)?;
        self.children.push(Member {
            name: name.to_string(),
            command,
            child: Some(child),
            started: Instant::now(),
            restart: None,
        });
        Ok(())
    }

    /// From now on the child called `name` is started again whenever it
    /// exits, with backoff, while the others go on: the companion service
    /// crashing must not take Envoy down with it. Called once the child is
    /// ready, so that one failing at start still stops the launcher.
    pub fn keep_running(&mut self, name: &str) {
        for member in self.children.iter_mut().filter(|m| m.name == name) {
            member.restart = Some(Backoff::new());
        }
    }

    /// Waits until `ready()` holds, watching the children meanwhile: one that
    /// exits, a signal, or `timeout` stops the whole group.
    pub fn wait_ready(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl FnMut() -> bool,
    ) -> Result<Ready, Error> {
        if let Some(outcome) = self.watch(timeout, ready)? {
            return Ok(outcome);
        }
        eprintln!("attach: {what} not ready after {timeout:?}; stopping");
        self.stop(libc::SIGTERM)?;
        Ok(Ready::Stopped(1))
    }

    /// Supervises until `ready()` holds or the group stops, as
    /// [`Group::wait_ready`]; `None` when `timeout` passed first, with the
    /// children left running.
    pub fn watch(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<Option<Ready>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.step()? {
                return Ok(Some(Ready::Stopped(code)));
            }
            if ready() {
                return Ok(Some(Ready::Yes));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Supervises until a child that is not kept running exits or a signal
    /// comes, and returns the exit code to use: with one child, its own
    /// (128 + signal when a signal ended it); with several, a child that
    /// exits on its own stops the others and the code is never 0.
    pub fn run(mut self) -> Result<i32, Error> {
        loop {
            if let Some(code) = self.step()? {
                return Ok(code);
            }
            std::thread::sleep(POLL);
        }
    }

    /// One look at the pending signal and the children; `Some(code)` once
    /// the group has stopped.
    fn step(&mut self) -> Result<Option<i32>, Error> {
        self.step_after(PENDING.swap(0, Ordering::SeqCst))
    }

    /// [`Self::step`] once signal `sig` (0: none) has come. The signal is
    /// looked at first: a Ctrl-C reaches the children from the terminal
    /// too, and a child that exits because of it is not restarted.
    fn step_after(&mut self, sig: i32) -> Result<Option<i32>, Error> {
        if sig != 0 {
            let codes = self.stop(sig)?;
            return Ok(Some(codes.into_iter().find(|c| *c != 0).unwrap_or(0)));
        }
        let now = Instant::now();
        for i in 0..self.children.len() {
            let member = &mut self.children[i];
            let Some(child) = &mut member.child else {
                member.restart_if_due(now);
                continue;
            };
            let Some(status) = try_wait(&member.name, child)? else {
                continue;
            };
            if let Some(backoff) = &mut member.restart {
                member.child = None;
                let delay = backoff.schedule(member.started.elapsed(), now);
                eprintln!(
                    "attach: {} exited ({status}); restarting it in {delay:?}",
                    member.name
                );
                continue;
            }
            let code = exit_code(status);
            let name = self.children.remove(i).name;
            if self.children.is_empty() {
                return Ok(Some(code));
            }
            eprintln!("attach: {name} exited ({status}); stopping the others");
            self.stop(libc::SIGTERM)?;
            return Ok(Some(if code == 0 { 1 } else { code }));
        }
        Ok(None)
    }

    /// Forwards `sig` to every running child, then waits up to [`GRACE`]
    /// (or until a second signal) before SIGKILL; the exit codes in start
    /// order. A child waiting to be restarted is simply not started again.
    fn stop(&mut self, sig: i32) -> Result<Vec<i32>, Error> {
        let mut children: Vec<(String, Child)> = std::mem::take(&mut self.children)
            .into_iter()
            .filter_map(|m| Some((m.name, m.child?)))
            .collect();
        for (_, child) in &children {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
        let mut codes: Vec<Option<i32>> = vec![None; children.len()];
        let deadline = Instant::now() + GRACE;
        loop {
            for (i, (name, child)) in children.iter_mut().enumerate() {
                if codes[i].is_none() {
                    codes[i] = try_wait(name, child)?.map(exit_code);
                }
            }
            if codes.iter().all(Option::is_some)
                || Instant::now() >= deadline
                || PENDING.swap(0, Ordering::SeqCst) != 0
            {
                break;
            }
            std::thread::sleep(POLL);
        }
        let mut out = Vec::with_capacity(children.len());
        for (i, (name, child)) in children.iter_mut().enumerate() {
            if let Some(code) = codes[i] {
                out.push(code);
                continue;
            }
            eprintln!("attach: {name} did not stop in time; killing it");
            // An error here means it exited meanwhile; wait() reports how.
            let _ = child.kill();
            let status = child
                .wait()
                .map_err(|e| Error::runtime(format!("waiting for {name}: {e}")))?;
            out.push(exit_code(status));
        }
        Ok(out)
    }
}

impl Member {
    /// Starts the child again once its restart is due; a start that fails
    /// is retried later like an exit.
    fn restart_if_due(&mut self, now: Instant) {
        let Some(backoff) = &mut self.restart else {
            return;
        };
        if backoff.due.is_some_and(|due| due > now) {
            return;
        }
        backoff.due = None;
        self.started = now;
        match start(&mut self.command) {
            Ok(child) => {
                eprintln!("attach: {} restarted (pid {})", self.name, child.id());
                self.child = Some(child);
            }
            Err(e) => {
                let delay = backoff.schedule(Duration::ZERO, now);
                eprintln!("attach: {e}; trying again in {delay:?}");
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.children.iter().any(|m| m.child.is_some()) {
            let _ = self.stop(libc::SIGTERM);
        }
    }
}

/// Starts `command`, waits for it, and returns the exit code to use:
/// the child's own, or 128 + signal when a signal ended it.
#[cfg(test)]
pub fn run(command: Command) -> Result<i32, Error> {
    let mut group = Group::new();
    group.spawn("envoy", command)?;
    group.run()
}

fn start(command: &mut Command) -> Result<Child, Error> {
    command.spawn().map_err(|e| {
        let program = command.get_program().to_string_lossy();
        Error::runtime(format!("cannot start {program}: {e}"))
    })
}

fn try_wait(name: &str, child: &mut Child) -> Result<Option<ExitStatus>, Error> {
    child
        .try_wait()
        .map_err(|e| Error::runtime(format!("waiting for {name}: {e}")))
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

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn one_child_exiting_stops_the_other_and_fails() {
        for (script, want) in [("exit 0", 1), ("exit 3", 3)] {
            let mut g = Group::new();
            g.spawn("service", sh("exec sleep 30")).unwrap();
            let sleeper = g.children[0].child.as_ref().unwrap().id() as i32;
            g.spawn("envoy", sh(script)).unwrap();
            let started = Instant::now();
            assert_eq!(g.run().unwrap(), want, "{script}");
            assert!(
                started.elapsed() < GRACE,
                "the sleeper was not stopped by SIGTERM"
            );
            // SAFETY: probing a pid with signal 0.
            let gone = unsafe { libc::kill(sleeper, 0) } != 0;
            assert!(gone, "the other child still runs");
        }
    }

    #[test]
    fn wait_ready_sees_readiness_and_early_exits() {
        let mut g = Group::new();
        g.spawn("service", sh("exec sleep 30")).unwrap();
        let mut polls = 0;
        let r = g
            .wait_ready("service", Duration::from_secs(5), || {
                polls += 1;
                polls > 2
            })
            .unwrap();
        assert_eq!(r, Ready::Yes);
        drop(g);

        let mut g = Group::new();
        g.spawn("service", sh("exit 2")).unwrap();
        let r = g
            .wait_ready("service", Duration::from_secs(5), || false)
            .unwrap();
        assert_eq!(r, Ready::Stopped(2));

        let mut g = Group::new();
        g.spawn("service", sh("exec sleep 30")).unwrap();
        let r = g
            .wait_ready("service", Duration::from_millis(200), || false)
            .unwrap();
        assert_eq!(r, Ready::Stopped(1));
        assert!(g.children.is_empty());
    }

    #[test]
    fn watch_leaves_the_group_running_when_time_is_up() {
        let mut g = Group::new();
        g.spawn("envoy", sh("exec sleep 30")).unwrap();
        let r = g.watch(Duration::from_millis(200), || false).unwrap();
        assert_eq!(r, None);
        let pid = pid_of(&g, "envoy").expect("still supervised");
        // SAFETY: probing a pid with signal 0.
        assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "the child was stopped");
        let r = g.watch(Duration::from_secs(5), || true).unwrap();
        assert_eq!(r, Some(Ready::Yes));
    }

    #[test]
    fn restart_delays_double_and_reset_after_a_stable_run() {
        let mut b = Backoff::new();
        let now = Instant::now();
        let delays: Vec<u64> = (0..9)
            .map(|_| b.schedule(Duration::from_secs(1), now).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.due, Some(now + RESTART_MAX));
        assert_eq!(b.schedule(RESTART_STABLE, now), RESTART_FIRST);
        assert_eq!(b.schedule(Duration::ZERO, now), RESTART_FIRST * 2);
    }

    fn pid_of(g: &Group, name: &str) -> Option<i32> {
        let m = g.children.iter().find(|m| m.name == name)?;
        Some(m.child.as_ref()?.id() as i32)
    }

    /// Steps the group until `done` holds or `timeout` passes.
    fn step_until(g: &mut Group, timeout: Duration, mut done: impl FnMut(&Group) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(g) && Instant::now() < deadline {
            assert_eq!(g.step().unwrap(), None, "the group stopped");
            std::thread::sleep(POLL);
        }
    }

    #[test]
    fn a_child_kept_running_comes_back_and_the_others_stay() {
        let mut g = Group::new();
        g.spawn("service", sh("exec sleep 30")).unwrap();
        g.keep_running("service");
        g.spawn("envoy", sh("exec sleep 30")).unwrap();
        let envoy = pid_of(&g, "envoy").unwrap();
        for _ in 0..2 {
            let first = pid_of(&g, "service").unwrap();
            // SAFETY: killing our own child.
            unsafe { libc::kill(first, libc::SIGKILL) };
            step_until(&mut g, Duration::from_secs(5), |g| {
                pid_of(g, "service").is_some_and(|p| p != first)
            });
            let second = pid_of(&g, "service").expect("the service was restarted");
            assert_ne!(second, first);
            assert_eq!(pid_of(&g, "envoy"), Some(envoy), "envoy was touched");
        }
        // Envoy exiting still stops everything.
        let service = pid_of(&g, "service").unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(envoy, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        let code = loop {
            if let Some(code) = g.step().unwrap() {
                break code;
            }
            assert!(
                Instant::now() < deadline,
                "envoy's exit did not stop the group"
            );
            std::thread::sleep(POLL);
        };
        assert_eq!(code, 128 + libc::SIGTERM);
        // SAFETY: probing a pid with signal 0.
        let gone = unsafe { libc::kill(service, 0) } != 0;
        assert!(gone, "the service outlived envoy");
    }

    #[test]
    fn a_signal_stops_the_group_after_a_child_exited_from_it() {
        let mut g = Group::new();
        g.spawn("service", sh("exec sleep 30")).unwrap();
        g.keep_running("service");
        g.spawn("envoy", sh("exec sleep 30")).unwrap();
        let service = pid_of(&g, "service").unwrap();
        // As from a terminal's Ctrl-C: the child has the signal before the
        // launcher looks.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(service, libc::SIGINT) };
        let deadline = Instant::now() + GRACE;
        let exited = || {
            std::fs::read_to_string(format!("/proc/{service}/stat")).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        while !exited() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert!(exited(), "the child ignored the signal");
        let code = g.step_after(libc::SIGINT).unwrap();
        assert!(code.is_some(), "the signal did not stop the group");
        assert!(g.children.is_empty(), "a child is still supervised");
    }

    #[test]
    fn a_restart_that_cannot_start_is_retried() {
        let dir = std::env::temp_dir().join(format!("attach-restart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut service = sh("exec sleep 30");
        service.current_dir(&dir);
        let mut g = Group::new();
        g.spawn("service", service).unwrap();
        g.keep_running("service");
        g.spawn("envoy", sh("exec sleep 30")).unwrap();
        // Without its working folder the service cannot start again.
        std::fs::remove_dir(&dir).unwrap();
        let first = pid_of(&g, "service").unwrap();
        // SAFETY: killing our own child.
        unsafe { libc::kill(first, libc::SIGKILL) };
        // Failed starts after 0.2 s and 0.4 s more; the next waits 0.8 s.
        step_until(&mut g, Duration::from_secs(1), |_| false);
        assert_eq!(pid_of(&g, "service"), None);
        assert_eq!(
            g.children[0].restart.as_ref().map(|b| b.delay),
            Some(RESTART_FIRST * 8)
        );
        std::fs::create_dir(&dir).unwrap();
        step_until(&mut g, Duration::from_secs(5), |g| {
            pid_of(g, "service").is_some()
        });
        assert!(pid_of(&g, "service").is_some(), "not started again");
        drop(g);
        std::fs::remove_dir(&dir).unwrap();
    }
}
