//! The fault shim: `faultfs.c`, compiled with gcc into the run's directory when a run needs it,
//! and preloaded (`LD_PRELOAD`) into every process of every machine through its agent, which
//! passes its environment on to the controller and data node it starts. Each machine has a
//! control file the shim maps; [`Control::set`] rewrites it in place to arm or disarm a fault in
//! the running processes (and in any the agent restarts meanwhile).
//!
//! A library preloaded into a binary we build is the only fault injection this VM offers for
//! disks and clocks: no dm-flakey, no `FAULT_INJECTION`, no `faketime` (see the notes' "What
//! the project's VMs have"). A FUSE layer would need a file system implementation for EIO only.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

const SOURCE: &str = include_str!("faultfs.c");
/// `struct control` in faultfs.c.
const CONTROL_LEN: usize = 1024;
const ROLE_AT: usize = 16;
const ROLE_LEN: usize = 32;
const PREFIX_AT: usize = ROLE_AT + ROLE_LEN;

/// The shim, built, and a control file per machine.
pub struct Shim {
    library: PathBuf,
    controls: Vec<Control>,
}

/// The faults one machine's processes are to show.
#[derive(Default, Debug, PartialEq)]
pub struct Faults {
    /// Calls on files under a directory fail with EIO.
    pub eio: Option<Eio>,
    /// CLOCK_REALTIME of the processes of this role (`controller`, `datanode`, `agent`) is
    /// this much ahead. (The shim also takes a negative offset; only ahead is used: a clock
    /// ahead is what makes time-based guards expire early, and undoing it jumps it back.)
    pub clock_ahead: Option<(&'static str, Duration)>,
}

/// Which calls on files under `under` fail with EIO: fsync and fdatasync, and with `writes`
/// write, pwrite and writev too.
#[derive(Debug, PartialEq)]
pub struct Eio {
    pub under: PathBuf,
    pub writes: bool,
}

/// One machine's control file.
#[derive(Clone, Debug)]
pub struct Control {
    path: PathBuf,
}

impl Shim {
    /// Compiles the shim into `dir` and creates a disarmed control file for each of
    /// `machines` machines.
    pub fn build(dir: &Path, machines: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let source = dir.join("faultfs.c");
        std::fs::write(&source, SOURCE)?;
        let library = dir.join("faultfs.so");
        let out = Command::new("gcc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .context("cannot run gcc to build the fault shim (install gcc)")?;
        if !out.status.success() {
            bail!(
                "gcc could not build the fault shim {}: {}",
                source.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let controls = (1..=machines)
            .map(|i| {
                let control = Control {
                    path: dir.join(format!("control-m{i}")),
                };
                control.set(&Faults::default())?;
                Ok(control)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { library, controls })
    }

    /// The environment machine `i`'s agent (1-based) is started with.
    pub fn env(&self, i: usize) -> anyhow::Result<[(&'static str, &Path); 2]> {
        Ok([
            ("LD_PRELOAD", &self.library),
            ("SHOAL_CHAOS_CONTROL", &self.control(i)?.path),
        ])
    }

    /// Fails unless process `pid` has the shim loaded: a fault armed for a process without it
    /// would silently do nothing.
    pub fn check_loaded(&self, pid: u32) -> anyhow::Result<()> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .with_context(|| format!("cannot read the mappings of pid {pid}"))?;
        let library = self.library.to_string_lossy();
        if !maps.lines().any(|l| l.ends_with(&*library)) {
            bail!("pid {pid} does not have the fault shim {library} loaded");
        }
        Ok(())
    }

    /// Machine `i`'s control file (1-based).
    pub fn control(&self, i: usize) -> anyhow::Result<&Control> {
        self.controls
            .get(i.wrapping_sub(1))
            .with_context(|| format!("the fault shim has no machine {i}"))
    }
}

impl Control {
    /// Arms `faults` (and disarms any other) in the machine's processes.
    pub fn set(&self, faults: &Faults) -> anyhow::Result<()> {
        let bytes = encode(faults)?;
        // Written in place at offset 0, never truncated: the processes have the file mapped.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .with_context(|| format!("cannot open the shim's control {}", self.path.display()))?;
        file.write_all_at(&bytes, 0)
            .with_context(|| format!("cannot write the shim's control {}", self.path.display()))
    }
}

fn encode(faults: &Faults) -> anyhow::Result<[u8; CONTROL_LEN]> {
    let mut b = [0u8; CONTROL_LEN];
    if let Some((role, ahead)) = faults.clock_ahead {
        let ns = i64::try_from(ahead.as_nanos()).context("clock offset too large")?;
        b[0..8].copy_from_slice(&ns.to_le_bytes());
        put_str(&mut b[ROLE_AT..PREFIX_AT], role)?;
    }
    if let Some(Eio { under: dir, writes }) = &faults.eio {
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&u32::from(*writes).to_le_bytes());
        let dir = dir
            .to_str()
            .with_context(|| format!("{} is not UTF-8", dir.display()))?;
        // A trailing slash: /x/node1 must not match /x/node10.
        put_str(
            &mut b[PREFIX_AT..],
            &format!("{}/", dir.trim_end_matches('/')),
        )?;
    }
    Ok(b)
}

/// `s` and a NUL into `field`.
fn put_str(field: &mut [u8], s: &str) -> anyhow::Result<()> {
    if s.len() >= field.len() {
        bail!(
            "`{s}` does not fit the shim's control ({} bytes)",
            field.len()
        );
    }
    field[..s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_control_file_has_the_layout_of_the_c_struct() {
        assert_eq!(encode(&Faults::default()).unwrap(), [0u8; CONTROL_LEN]);
        let b = encode(&Faults {
            eio: Some(Eio {
                under: "/run/node1".into(),
                writes: true,
            }),
            clock_ahead: Some(("controller", Duration::from_secs(300))),
        })
        .unwrap();
        assert_eq!(
            i64::from_le_bytes(b[0..8].try_into().unwrap()),
            300_000_000_000
        );
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 1);
        assert_eq!(&b[ROLE_AT..ROLE_AT + 11], b"controller\0");
        assert_eq!(&b[PREFIX_AT..PREFIX_AT + 12], b"/run/node1/\0");
        let long = "x".repeat(CONTROL_LEN);
        assert!(
            encode(&Faults {
                eio: Some(Eio {
                    under: long.into(),
                    writes: false
                }),
                clock_ahead: None
            })
            .is_err()
        );
    }
}
